"""The sparse baselines: a predictor picks each layer's active neurons, only those are computed.

:class:`NoCacheSparse` reads every active neuron from flash every token (the first rungs of
the ablation); :class:`LLMFlash` is LLM in a flash (a window of recently used neurons in RAM,
misses read, then computed). Their reads go through ``io_threads`` blocking-``pread`` threads
(:class:`_ParallelReads`) or, with ``io_depth``, through one thread with that many reads in
flight (:class:`_BatchReads`). The overview of all baselines is in
:mod:`teachkit.sparse.baselines`.
"""

from __future__ import annotations

import numpy as np

from ..compute import kernels as K
from .dense import Backend, as_float32
from ..runtime.lru import LRUTable
from ..flash.format import FlashFile
from ..flash.aio import open_async_reads, read_batch
from ..flash.reader import FlashReader, FlashReadError

__all__ = ["NoCacheSparse", "LLMFlash"]


class _ParallelReads:
    """``io_threads`` readers, each with its own staging buffer, reading parts of a request at once."""

    def __init__(self, flash, io_threads: int, max_units: int):
        from concurrent.futures import ThreadPoolExecutor

        self.flash = flash
        self.readers = [FlashReader(flash, max_units) for _ in range(io_threads)]
        self.pool = ThreadPoolExecutor(io_threads) if io_threads > 1 else None
        self.staging_bytes = sum(r.staging.nbytes for r in self.readers)
        self.timeout = 10.0

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
            from concurrent.futures import TimeoutError as FutureTimeout

            for f in [self.pool.submit(work, i) for i in range(n)]:
                try:
                    f.result(timeout=self.timeout)
                except FutureTimeout:
                    raise FlashReadError(f"a read of layer {layer} did not complete within {self.timeout} s") from None

    @property
    def bytes_read(self):
        return sum(r.bytes_read for r in self.readers)

    @property
    def n_reads(self):
        return sum(r.n_reads for r in self.readers)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)      # a read stuck in the kernel is not waited for
        for r in self.readers:
            r.close()


class _BatchReads:
    """:class:`_ParallelReads`' interface on one thread: ``depth`` reads in flight (kernel AIO),
    the same I/O the sparse engine's pipeline uses, so an ablation step changes one thing only."""

    def __init__(self, flash, depth: int, kind: str = "auto"):
        self.flash, self.depth = flash, int(depth)
        self.reader = FlashReader(flash, self.depth)
        self.aio = open_async_reads(self.reader.fd, self.depth, kind, path=flash.path)
        self.staging_bytes = self.reader.staging.nbytes
        self.timeout = 10.0

    def read(self, layer, ids, sink, mat: int = 0):
        for a in range(0, len(ids), self.depth):
            pos = np.arange(a, min(len(ids), a + self.depth))
            addr, off, length = self.reader.addresses(layer, ids[pos], 0, self.flash.spec.stride,
                                                      np.arange(len(pos)), mat=mat)
            read_batch(self.aio, addr, off, length, self.timeout, f"reading layer {layer}")
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


class _ReadsBackend(Backend):
    """A baseline that reads flash through ``self.io`` (threads or batched AIO)."""

    io: "_ParallelReads | _BatchReads"

    @property
    def bytes_read(self):
        return self.io.bytes_read

    @property
    def n_reads(self):
        return self.io.n_reads

    def close(self):
        self.io.close()


class NoCacheSparse(_ReadsBackend):
    """Read every predicted neuron every token (bundled: one read each; matrix: one per matrix)."""

    def __init__(self, flash_path, predictor, gated: bool, max_active: int, io_threads: int = 1,
                 io_depth: int | None = None, verify: bool = True):
        self.flash = FlashFile(flash_path, verify=verify)          # checked here, outside any timed token
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
                self.bundles[pos] = as_float32(dec)
            self.io.read(layer, idx, sink)
        else:
            for m in range(s.n_mats):
                def sink(pos, dec, m=m):
                    self.bundles[pos, m] = as_float32(dec)[:, 0]
                self.io.read(layer, idx, sink, mat=m)
        out = np.zeros(s.d, dtype=np.float32)
        return K.sparse_ffn_bundled(self.bundles, np.arange(k, dtype=np.int64), x, out, self.gated, parallel=False)


class LLMFlash(_ReadsBackend):
    """Windowed neuron cache (last ``window`` tokens), bundled reads, read-then-compute."""

    def __init__(self, flash_path, predictor, gated: bool, budget: int, window: int = 5, parallel: bool = False,
                 io_threads: int = 1, io_depth: int | None = None, verify: bool = True):
        self.flash = FlashFile(flash_path, verify=verify)          # checked here, outside any timed token
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

    def stats(self):
        n = self.hits + self.misses
        return {"bytes_read": self.bytes_read, "hit_rate": self.hits / n if n else float("nan")}
