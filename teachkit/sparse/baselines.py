"""The engines the sparse engine is compared with, all behind the same ``ffn(layer, x)`` call.

* :class:`DenseRAM`: every weight in RAM, three BLAS matvecs per layer (no budget: a reference).
* :class:`DenseMmap`: llama.cpp style. The file is ``mmap``-ed and the OS pages weights in on
  demand. The budget is enforced the way a memory-limited page cache would: pages of the
  least recently used layers are dropped (``madvise``/``fadvise`` DONTNEED) once more than
  ``budget`` bytes are resident. With layers visited in a cycle, LRU keeps nothing useful.
* :class:`DenseStream`: the *tuned* dense streaming baseline. As many neurons of every layer
  as the budget allows are pinned in RAM; the rest are streamed in >= 4 MiB sequential reads,
  two in flight, into a ring of chunk buffers, overlapped with BLAS compute on the chunks
  before (FlexGen / LLM-in-a-flash "hybrid" style).
* :class:`NoCacheSparse`: predictor + sparse compute, but every active neuron is read from
  flash every token (ablation rungs "sparse from flash", and "+bundle" with a bundled file).

Reads: ``io_threads`` blocking-``pread`` threads (LLM in a flash's own method: parallel reads
from many threads), or with ``io_depth`` the engine's own I/O, one thread keeping ``io_depth``
reads in flight with kernel AIO (:mod:`teachkit.sparse.aio`).
* :class:`LLMFlash`: LLM in a flash: predictor, row-column bundling, a *window* of the
  neurons used by the last ``window`` tokens kept in RAM, misses read then computed (no
  pipeline, no hot region). Compute uses K's fused kernel, on both cores (``parallel``) when
  that is faster on this machine, since nothing else runs during its compute.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict

import numpy as np

from . import kernels as K
from .cache import LRUTable
from .flash import FlashFile
from .iobench import FlashReader, FlashReadError, aligned_buffer

__all__ = ["DenseRAM", "DenseMmap", "DenseStream", "NoCacheSparse", "LLMFlash", "dense_bundle_ffn"]


def dense_bundle_ffn(B, x, gated: bool, out=None):
    """Dense FFN over bundles ``B`` (k, n_mats, d) (or a neuron range of them), BLAS matvecs."""
    h = B[:, 0] @ x
    h = np.maximum(h, 0.0)
    if gated:
        h *= B[:, 1] @ x
    y = h @ B[:, -1]
    if out is None:
        return y
    out += y
    return out


def _dequant(dec):
    return dec if not isinstance(dec, tuple) else dec[0].astype(np.float32) * dec[1][:, :, None]


class _ParallelReads:
    """``io_threads`` readers, each with its own staging buffer, reading parts of a request at once."""

    def __init__(self, flash, io_threads: int, max_units: int):
        from concurrent.futures import ThreadPoolExecutor

        self.flash = flash
        self.readers = [FlashReader(flash, max_units) for _ in range(io_threads)]
        self.pool = ThreadPoolExecutor(io_threads) if io_threads > 1 else None
        self.staging_bytes = sum(r.staging.nbytes for r in self.readers)

    def read(self, layer, ids, sink, mat: int = 0):
        """Read units ``ids`` and call ``sink(positions, decoded)`` for each part (in the reader's thread)."""
        n, k = len(self.readers), len(ids)
        cap = self.readers[0].max_units
        parts = [np.arange(a, min(k, a + cap)) for a in range(0, k, cap)]

        def work(i):
            r = self.readers[i]
            for pos in parts[i::n]:
                sink(pos, self.flash.decode(r.read(layer, ids[pos], mat=mat)))

        if self.pool is None:
            work(0)
        else:
            for f in [self.pool.submit(work, i) for i in range(n)]:
                f.result()

    @property
    def bytes_read(self):
        return sum(r.bytes_read for r in self.readers)

    @property
    def n_reads(self):
        return sum(r.n_reads for r in self.readers)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()
        for r in self.readers:
            r.close()


class _BatchReads:
    """:class:`_ParallelReads`' interface on one thread: ``depth`` reads in flight (kernel AIO),
    the same I/O the sparse engine's pipeline uses, so an ablation step changes one thing only."""

    def __init__(self, flash, depth: int, kind: str = "auto"):
        from .aio import open_async_reads

        self.flash, self.depth = flash, int(depth)
        self.reader = FlashReader(flash, self.depth)
        self.aio = open_async_reads(self.reader.fd, self.depth, kind)
        self.staging_bytes = self.reader.staging.nbytes
        self.timeout = 10.0

    def read(self, layer, ids, sink, mat: int = 0):
        stride = self.flash.spec.stride
        for a in range(0, len(ids), self.depth):
            pos = np.arange(a, min(len(ids), a + self.depth))
            rows = np.arange(len(pos))
            addr, off, length = self.reader.addresses(layer, ids[pos], 0, stride, rows, mat=mat)
            self.aio.submit(addr, off, length, rows)
            got = 0
            while got < len(pos):
                tags, res = self.aio.reap(len(pos) - got, self.timeout)
                if not len(tags):
                    raise FlashReadError(f"no read of layer {layer} completed within {self.timeout} s")
                if (res != stride).any():
                    raise FlashReadError(f"reading layer {layer} failed: result {int(res[res != stride][0])} of {stride} B")
                got += len(tags)
            self.reader.completed(off, length)
            sink(pos, self.flash.decode(self.reader.staging[:len(pos)]))

    @property
    def bytes_read(self):
        return self.reader.bytes_read

    @property
    def n_reads(self):
        return self.reader.n_reads

    def close(self):
        self.aio.close()
        self.reader.close()


def _reads(flash, io_threads: int, io_depth: int | None):
    return _BatchReads(flash, io_depth) if io_depth else _ParallelReads(flash, io_threads, 16)


class _Backend:
    gated: bool
    bytes_read = 0
    n_reads = 0

    def end_token(self):
        return {}

    def close(self):
        pass

    def stats(self) -> dict:
        return {"bytes_read": self.bytes_read}


class DenseRAM(_Backend):
    def __init__(self, bundles: list, gated: bool):
        self.B, self.gated = bundles, gated
        self.resident_bytes = sum(b.nbytes for b in bundles)

    def __call__(self, layer, x):
        return dense_bundle_ffn(self.B[layer], x, self.gated)


def read_ahead_bytes(path, default: int = 128 << 10) -> int:
    """The kernel's readahead window for the device holding ``path`` (sysfs), else ``default``."""
    st = os.stat(path)
    dev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for q in (f"{dev}/queue/read_ahead_kb", f"{dev}/../queue/read_ahead_kb"):
        try:
            with open(q) as f:
                return int(f.read()) << 10
        except (OSError, ValueError):
            continue
    return default


class DenseMmap(_Backend):
    """llama.cpp-style: ``mmap`` the file and let page faults (with the kernel's readahead) load it.

    ``budget``: bytes of FFN pages that may stay resident (the rest of the budget is fixed
    weights). The file is used in chunks; before a chunk is touched, the least recently used
    chunks are dropped (``madvise``/``fadvise`` DONTNEED) until the chunk, plus room for the
    kernel's readahead past its end, fits: the resident FFN bytes stay within ``budget``
    (``peak_resident`` records the largest accounted total), as under a page cache limited to
    the budget. Layers are visited in a cycle, so LRU keeps nothing that is needed soon.

    The kernel's readahead is left on (as for llama.cpp): without it page faults read 4 KiB at
    a time and mmap is ~10x slower. Readahead in flight can briefly hold up to about two
    windows more than the accounted pages; that errs in the baseline's favour (more memory).
    """

    def __init__(self, flash_path, budget: int, gated: bool):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("DenseMmap reads a float32 bundled file")
        self.gated, self.budget = gated, int(budget)
        self.reserve = min(2 * read_ahead_bytes(self.flash.path), self.budget // 4)
        self.chunk = min(s.n_neurons, ((self.budget - self.reserve) // 4 - 2 * mmap.PAGESIZE) // s.stride)
        if self.chunk < 1:
            raise ValueError(f"DenseMmap needs a budget of at least 4 bundles + readahead, got {budget} B")
        self.fd = os.open(self.flash.path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.mm = mmap.mmap(self.fd, 0, prot=mmap.PROT_READ)
        raw = np.frombuffer(self.mm, dtype=np.uint8, offset=self.flash.data_offset)
        self.units = raw.reshape(s.n_layers, s.n_neurons, s.stride)
        self.resident: OrderedDict[tuple, int] = OrderedDict()    # (layer, first neuron) -> bytes, LRU order
        self.peak_resident = 0

    def _pages(self, layer, a, n):
        """Page-aligned (start, length) covering neurons [a, a + n) of ``layer``."""
        P = mmap.PAGESIZE
        off = self.flash.offset(layer, a)
        lo = off // P * P
        return lo, -(-(off + n * self.flash.spec.stride) // P) * P - lo

    def _evict(self, key):
        lo, n = self._pages(key[0], key[1], min(self.chunk, self.flash.spec.n_neurons - key[1]))
        self.mm.madvise(mmap.MADV_DONTNEED, lo, n)
        os.posix_fadvise(self.fd, lo, n, os.POSIX_FADV_DONTNEED)

    def __call__(self, layer, x):
        s = self.flash.spec
        out = np.zeros(s.d, np.float32)
        for a in range(0, s.n_neurons, self.chunk):
            n = min(self.chunk, s.n_neurons - a)
            need = self._pages(layer, a, n)[1]
            self.resident.pop((layer, a), None)
            while self.resident and sum(self.resident.values()) + need + self.reserve > self.budget:
                self._evict(self.resident.popitem(last=False)[0])
            self.resident[layer, a] = need
            self.peak_resident = max(self.peak_resident, sum(self.resident.values()) + self.reserve)
            B = self.units[layer, a:a + n, :s.bundle_bytes].view(np.float32).reshape(n, s.n_mats, s.d)
            dense_bundle_ffn(B, x, self.gated, out)
        return out

    def close(self):
        units = self.units
        self.units = None
        del units
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


class DenseStream(_Backend):
    """The tuned dense streaming baseline: pin what fits, stream the rest in large reads, QD >= 2.

    The first P neurons of every layer are pinned in RAM (P as large as the budget allows after
    the ring of buffers). The rest is streamed in chunks of ``chunk_bytes`` (4 MiB: large
    sequential reads run at the disk's sequential bandwidth; smaller only if the ring would
    take more than a quarter of the budget) by ``io_threads`` reader threads,
    so ``io_threads`` reads are in flight; chunk k goes to ring buffer ``k % ring``, and the
    compute consumes chunks in order (BLAS on the chunk, in place: no copy). Use it on a file
    without padding (``stride == bundle_bytes``) so every byte read is a weight.
    """

    def __init__(self, flash_path, budget: int, gated: bool, chunk_bytes: int = 4 << 20, io_threads: int = 2,
                 ring: int | None = None, timeout: float = 30.0):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.dtype != "float32" or s.layout != "bundled":
            raise ValueError("DenseStream reads a float32 bundled file")
        self.gated, self.timeout = gated, timeout
        self.qd = max(1, int(io_threads))
        ring = max(self.qd + 1, int(ring or 0))
        self.ring = -(-ring // self.qd) * self.qd        # a multiple of qd: slot k % ring always has one reader
        chunk_bytes = min(int(chunk_bytes), budget // (4 * self.ring))     # the ring takes <= 1/4 of the budget
        self.chunk = max(1, min(s.n_neurons, chunk_bytes // s.stride))
        self.ring_bytes = self.ring * self.chunk * s.stride
        per_neuron = s.n_layers * s.n_mats * s.d * 4
        self.n_pin = int(max(0, min(s.n_neurons, (budget - self.ring_bytes) // per_neuron)))
        if budget < self.ring_bytes:
            raise ValueError(f"budget {budget} B does not hold the stream's ring of {self.ring_bytes} B")
        self.pinned = [np.ascontiguousarray(_dequant(self.flash.read_layer(l))[:self.n_pin])
                       for l in range(s.n_layers)]
        self.resident_bytes = sum(b.nbytes for b in self.pinned) + self.ring_bytes
        self.jobs = [(l, a) for l in range(s.n_layers) for a in range(self.n_pin, s.n_neurons, self.chunk)]
        self.readers = [FlashReader(self.flash, 1, direct=None) for _ in range(self.qd)]
        self.buffers = [aligned_buffer(self.chunk * s.stride).reshape(self.chunk, s.stride) for _ in range(self.ring)]
        self.free = [threading.Event() for _ in range(self.ring)]
        self.ready = [threading.Event() for _ in range(self.ring)]
        self.meta = [None] * self.ring
        for e in self.free:
            e.set()
        self.seq, self.stop = 0, False
        self.threads = [threading.Thread(target=self._io, args=(j,), daemon=True, name=f"stream-io-{j}")
                        for j in range(self.qd)]
        if self.jobs:
            for t in self.threads:
                t.start()

    def _io(self, j):
        """Reader j handles chunks j, j + qd, j + 2 qd, ... of an endless cycle over the streamed part."""
        s, r, k = self.flash.spec, self.readers[j], j
        while not self.stop:
            i = k % self.ring
            while not self.free[i].wait(0.1):
                if self.stop:
                    return
            self.free[i].clear()
            layer, a = self.jobs[k % len(self.jobs)]
            n = min(self.chunk, s.n_neurons - a)
            try:
                r._pread([memoryview(self.buffers[i].reshape(-1))[:n * s.stride]], self.flash.offset(layer, a))
                self.meta[i] = (layer, a, n, None)
            except Exception as err:  # noqa: BLE001 - handed to the compute thread
                self.meta[i] = (layer, a, 0, err)
                self.ready[i].set()
                return
            self.ready[i].set()
            k += self.qd

    def __call__(self, layer, x):
        s = self.flash.spec
        out = dense_bundle_ffn(self.pinned[layer], x, self.gated) if self.n_pin else np.zeros(s.d, np.float32)
        done = self.n_pin
        while done < s.n_neurons:
            i = self.seq % self.ring
            if not self.ready[i].wait(self.timeout):
                raise TimeoutError(f"streaming read stalled for {self.timeout} s")
            self.ready[i].clear()
            got_layer, a, n, err = self.meta[i]
            if err is not None:
                raise err
            if got_layer != layer:
                raise RuntimeError(f"stream out of order: expected layer {layer}, got {got_layer}")
            B = self.buffers[i][:n, :s.bundle_bytes].view(np.float32).reshape(n, s.n_mats, s.d)
            dense_bundle_ffn(B, x, self.gated, out)
            self.free[i].set()
            self.seq += 1
            done += n
        return out

    @property
    def bytes_read(self):
        return sum(r.bytes_read for r in self.readers)

    @property
    def n_reads(self):
        return sum(r.n_reads for r in self.readers)

    def close(self):
        self.stop = True
        for t in self.threads:
            if t.is_alive():
                t.join(timeout=self.timeout)
        for r in self.readers:
            r.close()


class NoCacheSparse(_Backend):
    """Read every predicted neuron every token (bundled: one read each; matrix: one per matrix)."""

    def __init__(self, flash_path, predictor, gated: bool, max_active: int, io_threads: int = 1,
                 io_depth: int | None = None):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        self.predictor, self.gated = predictor, gated
        self.io = _reads(self.flash, io_threads, io_depth)
        self.bundles = np.zeros((max_active, s.n_mats, s.d), dtype=np.float32)
        self.resident_bytes = self.io.staging_bytes + self.bundles.nbytes

    def __call__(self, layer, x):
        s = self.flash.spec
        idx = self.predictor(layer, x)
        k = len(idx)
        if s.layout == "bundled":
            def sink(pos, dec):
                self.bundles[pos] = _dequant(dec)
            self.io.read(layer, idx, sink)
        else:
            for m in range(s.n_mats):
                def sink(pos, dec, m=m):
                    self.bundles[pos, m] = _dequant(dec)[:, 0]
                self.io.read(layer, idx, sink, mat=m)
        out = np.zeros(s.d, dtype=np.float32)
        return K.sparse_ffn_bundled(self.bundles, np.arange(k, dtype=np.int64), x, out, self.gated, parallel=False)

    @property
    def bytes_read(self):
        return self.io.bytes_read

    @property
    def n_reads(self):
        return self.io.n_reads

    def close(self):
        self.io.close()


class LLMFlash(_Backend):
    """Windowed neuron cache (last ``window`` tokens), bundled reads, read-then-compute."""

    def __init__(self, flash_path, predictor, gated: bool, budget: int, window: int = 5, parallel: bool = False,
                 io_threads: int = 1, io_depth: int | None = None):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("LLMFlash reads a float32 bundled file")
        self.predictor, self.gated, self.window, self.parallel = predictor, gated, int(window), bool(parallel)
        self.io = _reads(self.flash, io_threads, io_depth)
        slots = (budget - self.io.staging_bytes) // (s.n_mats * s.d * 4)
        if slots <= 0:
            raise ValueError("budget too small for the LLM-in-a-flash window")
        self.table = LRUTable(int(slots), s.n_layers * s.n_neurons, "window")
        self.W = np.zeros((int(slots), s.n_mats, s.d), dtype=np.float32)
        self.resident_bytes = self.W.nbytes + self.io.staging_bytes
        self.token = 0
        self.hits = self.misses = 0

    def __call__(self, layer, x):
        s = self.flash.spec
        idx = self.predictor(layer, x)
        slots, miss = self.table.lookup(layer * s.n_neurons + idx, step=self.token + 1)
        self.hits += int((~miss).sum())
        self.misses += int(miss.sum())
        m_slots = slots[miss]

        def sink(pos, dec):
            self.W[m_slots[pos]] = dec
        self.io.read(layer, idx[miss], sink)               # read all misses first ...
        out = np.zeros(s.d, dtype=np.float32)             # ... then compute
        return K.sparse_ffn_bundled(self.W, slots, x, out, self.gated, parallel=self.parallel)

    def end_token(self):
        """Drop neurons not used in the last ``window`` tokens (the window slides)."""
        self.token += 1
        t = self.table
        old = (t.key_of >= 0) & (t.stamp <= self.token - self.window)
        t.slot_of[t.key_of[old]] = -1
        t.key_of[old] = -1
        return {}

    @property
    def bytes_read(self):
        return self.io.bytes_read

    @property
    def n_reads(self):
        return self.io.n_reads

    def close(self):
        self.io.close()

    def stats(self):
        n = self.hits + self.misses
        return {"bytes_read": self.bytes_read, "hit_rate": self.hits / n if n else float("nan")}
