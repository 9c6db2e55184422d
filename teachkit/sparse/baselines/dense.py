"""The dense baselines: every neuron of every layer is used each token, sparse or not.

:class:`DenseRAM` holds all weights in RAM (a reference, no budget); :class:`DenseMmap` and
:class:`DenseStream` keep what fits in the budget and read the rest from flash every token,
llama.cpp style (``mmap`` and page faults) and tuned (large sequential reads, overlapped
with compute). The overview of all baselines is in :mod:`teachkit.sparse.baselines`.
This module also holds what every baseline shares: the :class:`Backend` interface and
:func:`as_float32`.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict

import numpy as np

from ..flash import platform_io
from ..flash.aio import join_within
from ..flash.format import FlashFile
from ..flash.reader import FlashReader, FlashReadError, aligned_buffer

__all__ = ["Backend", "DenseRAM", "DenseMmap", "DenseStream", "as_float32", "dense_bundle_ffn", "read_ahead_bytes"]


class Backend:
    """The interface every baseline offers, and how the benchmark drives it: ``engine(layer, x)``
    per layer, ``end_token()`` per token, then ``stats()`` and ``close()``. A subclass sets
    ``gated`` and defines ``__call__``; engines that read no flash keep the zero counters."""

    gated: bool
    bytes_read = 0
    n_reads = 0

    def end_token(self):
        return {}

    def close(self):
        pass

    def stats(self) -> dict:
        return {"bytes_read": self.bytes_read}


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


def as_float32(dec):
    """float32 weights of a decoded read (:meth:`~teachkit.sparse.flash.format.FlashFile.decode`):
    float32 reads as they are, int8 reads (decoded as ``(q, scales)``) scaled here."""
    return dec if not isinstance(dec, tuple) else dec[0].astype(np.float32) * dec[1][:, :, None]


class DenseRAM(Backend):
    def __init__(self, bundles: list, gated: bool):
        self.B, self.gated = bundles, gated
        self.resident_bytes = sum(b.nbytes for b in bundles)

    def __call__(self, layer, x):
        return dense_bundle_ffn(self.B[layer], x, self.gated)


def read_ahead_bytes(path, default: int = 128 << 10) -> int:
    """The kernel's readahead window for the device holding ``path`` (Linux sysfs), else ``default``."""
    return platform_io.read_ahead_bytes(path, default)


class DenseMmap(Backend):
    """llama.cpp-style: ``mmap`` the file and let page faults (with the kernel's readahead) load it.

    ``budget``: bytes of FFN pages that may stay resident (the rest of the budget is fixed
    weights). The file is used in chunks; before a chunk is touched, the least recently used
    chunks are dropped (``madvise``/``fadvise`` DONTNEED) until the chunk, plus room for the
    kernel's readahead past its end, fits: the resident FFN bytes stay within ``budget``
    (``peak_resident`` records the largest accounted total), as under a page cache limited to
    the budget. Layers are visited in a cycle, so LRU keeps nothing that is needed soon.

    The kernel's readahead is left on (as for llama.cpp): without it every page fault reads one
    4 KiB page, one disk access each, and mmap is many times slower. The accounting reserves
    room for two readahead windows, but at most a quarter of the budget; where the device's
    window is larger than that (``read_ahead_bytes``), pages read ahead stay cached beyond the
    accounted ones and can serve later faults, so mmap may read less per token than any engine
    that keeps to the budget. Both err in the baseline's favour (more memory).
    """

    def __init__(self, flash_path, budget: int, gated: bool, verify: bool = True):
        self.flash = FlashFile(flash_path, verify=verify)          # checked here, outside any timed token
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("DenseMmap reads a float32 bundled file")
        self.gated, self.budget = gated, int(budget)
        self.reserve = min(2 * read_ahead_bytes(self.flash.path), self.budget // 4)
        self.chunk = min(s.n_neurons, ((self.budget - self.reserve) // 4 - 2 * mmap.PAGESIZE) // s.stride)
        if self.chunk < 1:
            raise ValueError(f"DenseMmap needs a budget of at least 4 bundles + readahead, got {budget} B")
        self.fd = platform_io.open_read(self.flash.path)
        platform_io.drop_cache(self.fd)
        self.size = os.fstat(self.fd).st_size
        self.mm = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
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
        if hasattr(self.mm, "madvise"):                   # not on Windows: there the OS decides
            self.mm.madvise(mmap.MADV_DONTNEED, lo, n)
        platform_io.drop_cache(self.fd, lo, n)

    def __call__(self, layer, x):
        s = self.flash.spec
        out = np.zeros(s.d, np.float32)
        for a in range(0, s.n_neurons, self.chunk):
            n = min(self.chunk, s.n_neurons - a)
            self._check_size(layer)
            need = self._pages(layer, a, n)[1]
            self.resident.pop((layer, a), None)
            while self.resident and sum(self.resident.values()) + need + self.reserve > self.budget:
                self._evict(self.resident.popitem(last=False)[0])
            self.resident[layer, a] = need
            self.peak_resident = max(self.peak_resident, sum(self.resident.values()) + self.reserve)
            B = self.units[layer, a:a + n, :s.bundle_bytes].view(np.float32).reshape(n, s.n_mats, s.d)
            dense_bundle_ffn(B, x, self.gated, out)
        return out

    def _check_size(self, layer):
        """A page fault past the end of a truncated file kills the process (SIGBUS): check the size
        first (one ``fstat``), so truncation is an error. A truncation between this check and the
        touch can still fault; the window is one chunk's compute."""
        size = os.fstat(self.fd).st_size
        if size < self.size:
            raise FlashReadError(f"{self.flash.path.name} shrank from {self.size} to {size} B while mapped "
                                 f"(reading layer {layer}); the mmap engine stops here instead of faulting")

    def close(self):
        units = self.units
        self.units = None
        del units
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


class DenseStream(Backend):
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
                 ring: int | None = None, timeout: float = 30.0, verify: bool = True):
        self.flash = FlashFile(flash_path, verify=verify)          # checked here, outside any timed token
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
        self.pinned = [np.ascontiguousarray(as_float32(self.flash.read_layer(l))[:self.n_pin])
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

    def close(self, timeout: float = 5.0):
        self.stop = True
        self.stuck = join_within([t for t in self.threads if t.is_alive()], timeout, "closing the stream's readers")
        if not self.stuck:                              # a stuck read still writes into its ring buffer
            for r in self.readers:
                r.close()
