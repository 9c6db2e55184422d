"""The engines the sparse engine is compared with, all behind the same ``ffn(layer, x)`` call.

* :class:`DenseRAM`: every weight in RAM, three BLAS matvecs per layer (no budget: a reference).
* :class:`DenseMmap`: llama.cpp style. The file is ``mmap``-ed and the OS pages weights in on
  demand. The budget is enforced the way a memory-limited page cache would: pages of the
  least recently used layers are dropped (``madvise``/``fadvise`` DONTNEED) once more than
  ``budget`` bytes are resident. With layers visited in a cycle, LRU keeps nothing useful.
* :class:`DenseStream`: the *tuned* dense streaming baseline. As many neurons of every layer
  as the budget allows are pinned in RAM; the rest are streamed with large sequential O_DIRECT reads by
  an I/O thread into a ring of chunk buffers, overlapped with BLAS compute on the chunk
  before (FlexGen / LLM-in-a-flash "hybrid" style).
* :class:`NoCacheSparse`: predictor + sparse compute, but every active neuron is read from
  flash every token (ablation rungs "sparse from flash", and "+bundle" with a bundled file).
* :class:`LLMFlash`: LLM in a flash: predictor, row-column bundling, a *window* of the
  neurons used by the last ``window`` tokens kept in RAM, misses read then computed (no
  pipeline, no hot region). Compute uses K's fused kernel, on both cores (``parallel``) when
  that is faster on this machine, since nothing else runs during its compute.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections import OrderedDict

import numpy as np

from . import kernels as K
from .cache import LRUTable
from .flash import FlashFile
from .iobench import FlashReader, aligned_buffer

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


class DenseMmap(_Backend):
    """``budget``: bytes of FFN pages that may stay resident (the rest of the budget is fixed weights)."""

    def __init__(self, flash_path, budget: int, gated: bool):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("DenseMmap reads a float32 bundled file")
        self.gated, self.budget = gated, int(budget)
        self.fd = os.open(self.flash.path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.mm = mmap.mmap(self.fd, 0, prot=mmap.PROT_READ)
        raw = np.frombuffer(self.mm, dtype=np.uint8, offset=self.flash.data_offset)
        self.units = raw.reshape(s.n_layers, s.n_neurons, s.stride)
        self.resident: OrderedDict[int, int] = OrderedDict()      # layer -> bytes, LRU order

    def _evict(self, layer):
        s = self.flash.spec
        off = self.flash.offset(layer, 0)
        lead = off % mmap.PAGESIZE                          # madvise wants a page-aligned start
        self.mm.madvise(mmap.MADV_DONTNEED, off - lead, s.layer_bytes + lead)
        os.posix_fadvise(self.fd, off, s.layer_bytes, os.POSIX_FADV_DONTNEED)

    def __call__(self, layer, x):
        s = self.flash.spec
        B = self.units[layer][:, :s.bundle_bytes].view(np.float32).reshape(s.n_neurons, s.n_mats, s.d)
        y = dense_bundle_ffn(B, x, self.gated)
        self.resident[layer] = s.layer_bytes
        self.resident.move_to_end(layer)
        while sum(self.resident.values()) > self.budget:
            old, _ = self.resident.popitem(last=False)
            self._evict(old)
        return y

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
    """The first P neurons of every layer pinned in RAM, the rest streamed with O_DIRECT, ring-buffered.

    P is as large as the budget allows after the ring of ``ring`` chunk buffers. An I/O thread
    cycles over (layer, chunk) in decode order, ``ring`` chunks ahead of the compute.
    """

    def __init__(self, flash_path, budget: int, gated: bool, chunk_neurons: int = 256, ring: int = 3,
                 timeout: float = 30.0):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        self.gated, self.timeout, self.chunk = gated, timeout, int(chunk_neurons)
        self.ring_bytes = ring * self.chunk * s.stride
        per_neuron = s.n_layers * s.n_mats * s.d * 4
        self.n_pin = int(max(0, min(s.n_neurons, (budget - self.ring_bytes) // per_neuron)))
        self.pinned = [np.ascontiguousarray(_dequant(self.flash.read_layer(l))[:self.n_pin])
                       for l in range(s.n_layers)]
        self.resident_bytes = sum(b.nbytes for b in self.pinned) + self.ring_bytes
        self.reader = FlashReader(self.flash, self.chunk)
        self.buffers = [aligned_buffer(self.chunk * s.stride).reshape(self.chunk, s.stride) for _ in range(ring)]
        self.free: queue.Queue = queue.Queue()
        self.full: queue.Queue = queue.Queue()
        for b in self.buffers:
            self.free.put(b)
        self.stop = False
        self.thread = threading.Thread(target=self._io, daemon=True, name="stream-io")
        self.thread.start()

    def _io(self):
        s = self.flash.spec
        while not self.stop:                              # an endless cycle over the streamed part
            for layer in range(s.n_layers):
                for a in range(self.n_pin, s.n_neurons, self.chunk):
                    buf = self.free.get()
                    if buf is None:
                        return
                    ids = np.arange(a, min(s.n_neurons, a + self.chunk), dtype=np.int64)
                    try:
                        buf[:len(ids)] = self.reader.read(layer, ids)
                        self.full.put((layer, a, len(ids), buf, None))
                    except Exception as err:  # noqa: BLE001 - handed to the compute thread
                        self.full.put((layer, a, 0, buf, err))
                        return

    def __call__(self, layer, x):
        s = self.flash.spec
        out = dense_bundle_ffn(self.pinned[layer], x, self.gated) if self.n_pin else np.zeros(s.d, np.float32)
        done = self.n_pin
        while done < s.n_neurons:
            try:
                got_layer, a, n, buf, err = self.full.get(timeout=self.timeout)
            except queue.Empty:
                raise TimeoutError(f"streaming read stalled for {self.timeout} s") from None
            if err is not None:
                raise err
            if got_layer != layer:
                raise RuntimeError(f"stream out of order: expected layer {layer}, got {got_layer}")
            dense_bundle_ffn(_dequant(self.flash.decode(buf[:n])), x, self.gated, out)
            self.free.put(buf)
            done += n
        return out

    @property
    def bytes_read(self):
        return self.reader.bytes_read

    @property
    def n_reads(self):
        return self.reader.n_reads

    def close(self):
        self.stop = True
        self.free.put(None)                               # wakes the I/O thread if it waits for a buffer
        self.thread.join(timeout=self.timeout)
        self.reader.close()


class NoCacheSparse(_Backend):
    """Read every predicted neuron every token (bundled: one read each; matrix: one per matrix)."""

    def __init__(self, flash_path, predictor, gated: bool, max_active: int, io_threads: int = 1):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        self.predictor, self.gated = predictor, gated
        self.io = _ParallelReads(self.flash, io_threads, 64)
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
                 io_threads: int = 1):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("LLMFlash reads a float32 bundled file")
        self.predictor, self.gated, self.window, self.parallel = predictor, gated, int(window), bool(parallel)
        self.io = _ParallelReads(self.flash, io_threads, 64)
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
