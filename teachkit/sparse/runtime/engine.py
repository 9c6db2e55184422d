"""The polymorphic engine: dense prefill, sparse decode from flash through the neuron cache.

* **Prefill is dense.** With a prompt of T tokens nearly every FFN neuron fires for at least
  one token, so a predictor would select everything. The engine streams each layer's FFN from
  flash in large sequential chunks (``prefill_chunk`` neurons at a time) and multiplies the
  whole prompt at once: ``H = act(X W₁ᵀ)`` (T × chunk), ``out += H W₂`` (BLAS, batched).
* **Decode is sparse.** Per layer: a predictor picks the active neurons, the segmented cache
  says which are in memory (hot clusters, cold neurons) and which must be read, and the
  cluster pipeline computes them while the misses are read (kernel AIO, or ``pread`` threads)
  and landed by its I/O thread.

With ``lookahead=True``, while a layer waits for its reads the engine guesses the next layer's
neurons from this layer's input (``predictor.lookahead(layer, x_prev)`` if the predictor has
it, else ``predictor(layer, x_prev)``); once the layer is done it reads the guessed neurons
that are not in memory, while the next layer's attention runs (see
:mod:`teachkit.sparse.runtime.pipeline`). It never changes the output; whether it
is faster depends on how many of its guesses are wrong (each is a wasted read) and on how busy
the disk already is. The benchmark measures it (``+look-ahead``).

The memory budget covers everything the engine holds: the fixed region (embeddings,
attention, norms), the predictor (its ``nbytes``), the hot and cold regions and their
bookkeeping tables, the I/O staging buffers, the prefill buffers (sized for ``max_prompt``
rows) and the model's KV cache (``kv_bytes``). It is checked once, when the engine is built
(see ``SegmentedCache``); nothing grows afterwards (the trace and the per-token history are
rings of fixed length, outside the budget: under 2 MiB together). The one exception is declared: an
:class:`OraclePredictor` (``oracle = True``) holds the full first matrix outside the budget,
and :meth:`SparseFFN.stats` reports its bytes as ``outside_budget``.

A predictor is any callable ``predictor(layer, x) -> neuron ids`` with an ``nbytes``
attribute. Its ids are checked (integers in range) and deduplicated: a repeated id would
otherwise be computed twice.

``SparseFFN`` is the decode FFN (what the baselines replace); ``NumpyGPT`` runs the trained
GPT of ``teachkit.toy.model`` in numpy with any FFN backend, for text generation.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..flash.aio import join_within
from ..flash.format import FlashFile
from ..flash.reader import FlashReader, FlashReadError
from ..flash.unit_reads import UnitReads
from .cache import CacheConfig, SegmentedCache
from .pipeline import ClusterPipeline, PipelineConfig, PipelineTimeout
from .trace import Trace

__all__ = ["EngineConfig", "SparseFFN", "engine_memory", "OraclePredictor", "hot_clusters_from_freq",
           "plan_regions"]


@dataclass
class EngineConfig:
    budget: int                    # bytes for every weight and buffer the engine holds
    hot_neurons: int = 0           # hot neurons per layer (grouped into clusters)
    hot_share: float = 1.0         # hot clusters kept = hot_share * all hot clusters (LRU beyond)
    cluster_size: int = 32
    schedule: str = "cluster"
    read_unit: str = "bundle"
    io_depth: int = 16             # reads in flight (at least one cluster's worth), one I/O thread
    timeout: float = 10.0
    aio: str = "auto"              # "kernel" (Linux AIO), "threads" (pread threads) or "auto"
    prefill_chunk: int = 256       # neurons per sequential prefill read
    max_prompt: int = 64           # prompt rows the prefill buffers are sized (and budgeted) for
    lookahead: bool = False        # guess layer l+1 from layer l's input while l waits; read the guess when l is done
    check_reads: bool = False      # crc32 of every bundle read (a table of 4 B per neuron, in the budget)


def hot_clusters_from_freq(freq: np.ndarray, hot_neurons: int, cluster_size: int) -> list:
    """Per layer: the ``hot_neurons`` most frequent neurons, in clusters of ``cluster_size``.

    Clusters follow frequency rank (the hottest together); members are sorted by id so that
    neighbours in the file are read together.
    """
    out = []
    for f in np.atleast_2d(freq):
        order = np.argsort(-f, kind="stable")[:hot_neurons]
        out.append([np.sort(order[a:a + cluster_size]).astype(np.int64)
                    for a in range(0, len(order), cluster_size)])
    return out


def plan_regions(spec, budget: int, fixed_bytes: int, other_bytes: int, hot_neurons: int,
                 cluster_size: int, hot_share: float = 1.0) -> tuple[int, int]:
    """(hot cluster slots, cold neuron slots) that fit the budget after fixed and other buffers.

    A slot costs what the cache allocates for it (:meth:`SegmentedCache.slot_bytes`: its rows and
    its entries in the LRU tables); ``other_bytes`` holds the rest, the tables' fixed part included.
    """
    hot_cost, cold_cost = SegmentedCache.slot_bytes(CacheConfig.for_spec(spec, cluster_size))
    free = budget - fixed_bytes - other_bytes
    clusters = -(-hot_neurons // cluster_size) * spec.n_layers
    hot_slots = int(round(clusters * hot_share))
    hot_slots = max(0, min(hot_slots, free // hot_cost))
    cold = (free - hot_slots * hot_cost) // cold_cost
    if cold < 0:
        raise ValueError(f"budget {budget / 2**20:.3f} MiB does not even hold the fixed region "
                         f"({fixed_bytes / 2**20:.3f} MiB) and buffers ({other_bytes / 2**20:.3f} MiB)")
    return hot_slots, int(cold)


def engine_memory(spec, cfg: EngineConfig, held_bytes: int, gated: bool, n_hot_clusters: int | None = None) -> dict:
    """Where an engine's budget goes: buffers, tables, and the hot/cold slots that fit after them.

    ``held_bytes``: what the engine holds besides its own buffers (fixed region, predictor,
    KV cache). The planner calls this too, so plan and engine agree to the byte. Each cost is
    stated by what allocates it: the decode reads' staging rows, AIO and job tables
    (:meth:`UnitReads.nbytes_for`), the prefill reader's staging (:meth:`FlashReader.staging_nbytes`),
    the crc32 table (:meth:`FlashFile.unit_crcs_nbytes`), the prefill's arrays
    (:meth:`SparseFFN.prefill_nbytes`), the cache's tables and slots (:meth:`SegmentedCache.table_bytes`,
    :meth:`SegmentedCache.slot_bytes`).
    """
    staging = UnitReads.nbytes_for(spec, cfg, cfg.cluster_size) + FlashReader.staging_nbytes(spec, cfg.prefill_chunk)
    staging += FlashFile.unit_crcs_nbytes(spec) if cfg.check_reads else 0
    prefill = SparseFFN.prefill_nbytes(spec, cfg, gated)
    if n_hot_clusters is None:
        n_hot_clusters = -(-cfg.hot_neurons // cfg.cluster_size)
    tables = SegmentedCache.table_bytes(CacheConfig.for_spec(spec, cfg.cluster_size), max(1, n_hot_clusters))
    hot_slots, cold_slots = plan_regions(spec, cfg.budget, held_bytes, staging + prefill + tables,
                                         n_hot_clusters * cfg.cluster_size, cfg.cluster_size, cfg.hot_share)
    return {"staging": staging, "prefill": prefill, "tables": tables, "hot_slots": hot_slots, "cold_slots": cold_slots}


class OraclePredictor:
    """The exact active set, from full FFN weights in RAM (outside the budget: an oracle).

    With it the sparse engine computes exactly the dense FFN: the neurons it skips have h = 0.
    Its ``nbytes`` are reported by the engine as ``outside_budget`` (``oracle = True``).
    """

    oracle = True

    def __init__(self, bundles: list, gated: bool):
        self.first = [np.ascontiguousarray(b[:, 0]) for b in bundles]
        self.nbytes = sum(a.nbytes for a in self.first)

    def __call__(self, layer: int, x: np.ndarray) -> np.ndarray:
        return np.flatnonzero(self.first[layer] @ x > 0).astype(np.int64)


class _BoundedIO:
    """One daemon thread that runs reads; the caller waits at most ``timeout`` s for each."""

    def __init__(self, timeout: float, name: str):
        self.timeout, self.jobs = timeout, queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=name)
        self.thread.start()
        self.stuck: list[str] = []

    def _loop(self):
        while (job := self.jobs.get()) is not None:
            fn, box, done = job
            try:
                box.append((fn(), None))
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                box.append((None, err))
            done.set()

    def call(self, fn, what: str):
        box, done = [], threading.Event()
        self.jobs.put((fn, box, done))
        if not done.wait(self.timeout):
            raise PipelineTimeout(f"{what}: no read completed within {self.timeout} s; the I/O thread is stuck")
        value, err = box[0]
        if isinstance(err, FlashReadError):
            raise err
        if err is not None:
            raise FlashReadError(f"{what} failed: {err!r}") from err
        return value

    def close(self, timeout: float = 2.0):
        self.jobs.put(None)
        self.stuck = join_within([self.thread], timeout, "closing the prefill I/O thread")


def _nbytes_of_predictor(predictor) -> int:
    n = getattr(predictor, "nbytes", None)
    if n is None or int(n) < 0:
        raise TypeError("the predictor must say how much memory it holds: give it an `nbytes` attribute "
                        "(the engine counts it against the budget)")
    return int(n)


class SparseFFN:
    """The decode FFN: predictor -> segmented cache -> cluster pipeline -> output.

    ``kv_bytes``: the KV cache the model keeps alongside (``NumpyGPT.kv_cache_bytes()``),
    counted against the same budget.
    """

    def __init__(self, flash_path, cfg: EngineConfig, predictor, gated: bool, fixed: dict | None = None,
                 freq: np.ndarray | None = None, expect=None, fault=None, trace: Trace | None = None,
                 verify: bool = True, kv_bytes: int = 0):
        self.flash = FlashFile(flash_path, expect=expect, verify=verify)
        spec = self.flash.spec
        self.cfg, self.spec, self.predictor, self.gated = cfg, spec, predictor, bool(gated)
        if spec.layout != "bundled":
            raise ValueError("SparseFFN needs a bundled file")
        if cfg.max_prompt < 1 or kv_bytes < 0:
            raise ValueError("max_prompt must be positive and kv_bytes non-negative")
        fixed = dict(fixed or {})
        fixed_bytes = sum(a.nbytes for a in fixed.values())
        pred_bytes = _nbytes_of_predictor(predictor)
        self.outside_budget = pred_bytes if getattr(predictor, "oracle", False) else 0
        self.kv_bytes = int(kv_bytes)
        hot = hot_clusters_from_freq(freq, cfg.hot_neurons, cfg.cluster_size) if (freq is not None and cfg.hot_neurons) \
            else [[] for _ in range(spec.n_layers)]
        held = fixed_bytes + self.kv_bytes + (pred_bytes - self.outside_budget)
        mem = engine_memory(spec, cfg, held, gated, max(len(c) for c in hot))
        ccfg = CacheConfig.for_spec(spec, cfg.cluster_size, mem["hot_slots"], mem["cold_slots"])
        other = held - fixed_bytes + mem["staging"] + mem["prefill"]
        self.cache = SegmentedCache(ccfg, cfg.budget, fixed=fixed, hot_clusters=hot, extra_bytes=other)
        self.trace = trace if trace is not None else Trace()
        self.pipe = ClusterPipeline(self.flash, self.cache,
                                    PipelineConfig(cfg.schedule, cfg.read_unit, cfg.cluster_size, cfg.io_depth,
                                                   cfg.timeout, cfg.aio, cfg.check_reads), gated, self.trace, fault=fault)
        self.prefill_reader = FlashReader(self.flash, cfg.prefill_chunk, fault=fault, check=cfg.check_reads)
        self.prefill_io = _BoundedIO(cfg.timeout, "flash-prefill-io")
        self.tokens = 0
        self.stuck: list[str] = []                    # threads close() had to leave in a read (none, normally)

    def close(self) -> None:
        """Stop every thread, waiting at most a few seconds; ``stuck`` names any left in a read."""
        self.pipe.close()
        self.prefill_io.close()
        if not self.prefill_io.stuck:                 # a stuck prefill read still uses the reader's buffer
            self.prefill_reader.close()
        self.stuck = self.pipe.stuck + self.prefill_io.stuck

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def active_ids(self, layer: int, x: np.ndarray, predict=None) -> np.ndarray:
        """The predictor's choice, checked: sorted, distinct int64 ids in ``[0, n_neurons)``."""
        ids = np.asarray((predict or self.predictor)(layer, x))
        if ids.ndim != 1 or not (ids.dtype.kind in "iu" or ids.size == 0):
            raise ValueError(f"layer {layer}: the predictor must return a 1-D array of integer neuron ids, "
                             f"got shape {ids.shape} dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():        # not already sorted and distinct
            ids = np.unique(ids)
        n = self.spec.n_neurons
        if ids.size and (ids[0] < 0 or ids[-1] >= n):
            raise ValueError(f"layer {layer}: the predictor returned ids in [{ids[0]}, {ids[-1]}], "
                             f"outside 0..{n - 1}")
        return ids

    def __call__(self, layer: int, x: np.ndarray) -> np.ndarray:
        """FFN output of ``layer`` for one token's input ``x`` (float32, length d)."""
        if self.pipe.failed is not None:
            raise RuntimeError(f"the pipeline stopped after an error: {self.pipe.failed!r}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != (self.spec.d,):
            raise ValueError(f"x must have shape ({self.spec.d},), got {x.shape}")
        t0 = time.perf_counter()
        active = self.active_ids(layer, x)
        self.trace.add("compute", "predict", layer, -1, t0, time.perf_counter())
        self.pipe.settle(layer)                       # the look-ahead's reads land before this lookup
        plan = None
        try:
            plan = self.cache.split_active(layer, active)
        except BaseException as err:        # a lookup that failed half-way leaves slots without data
            self.cache.forget_all()
            self.pipe.stop(layer, None, err)
            raise
        out = np.zeros(self.spec.d, dtype=np.float32)
        if not (self.cfg.lookahead and layer + 1 < self.spec.n_layers):
            return self.pipe.run_layer(layer, x, plan, out)
        guess, read = self._look_ahead(layer + 1, x)
        return self.pipe.run_layer(layer, x, plan, out, when_idle=guess, when_done=read)

    def _look_ahead(self, layer: int, x_prev: np.ndarray):
        """Two hooks for the pipeline: make the guess for ``layer`` while the compute thread would
        only wait for the current layer's reads; read it once the current layer is done (so the
        guessed reads do not delay the current layer's own)."""
        picked = []

        def guess():
            picked.append(self._guess(layer, x_prev))

        def read():
            if not picked:                      # the layer never waited: guess now
                guess()
            self.pipe.prefetch(layer, *picked[0])
        return guess, read

    def _guess(self, layer: int, x_prev: np.ndarray):
        """Guess ``layer``'s active neurons from the previous layer's input; give the ones not in
        memory cold slots. Returns ``(neurons, slots)`` to read.

        The residual stream changes little from one layer to the next, so ``layer``'s predictor
        applied to the previous layer's input finds much of ``layer``'s active set (Deja Vu's
        look-ahead; notebook 14 measures how much on the trained LM). The predictor may offer
        ``lookahead(layer, x_prev)``; else its ordinary call is used. At most one batch of reads
        (the pipeline's staging rows, ``io_depth``), so they can all be in flight at once.
        """
        t0 = time.perf_counter()
        guess = self.active_ids(layer, x_prev, getattr(self.predictor, "lookahead", self.predictor))
        neurons, slots = self.cache.prefetch_cold(layer, guess, limit=self.pipe.io.n_rows)
        self.trace.add("compute", "lookahead", layer, -1, t0, time.perf_counter())
        return neurons, slots

    @property
    def bytes_read(self) -> int:
        return self.pipe.bytes_read + self.prefill_reader.bytes_read

    @property
    def n_reads(self) -> int:
        return self.pipe.n_reads + self.prefill_reader.n_reads

    def end_token(self) -> dict:
        self.tokens += 1
        return self.cache.end_token()

    @staticmethod
    def prefill_nbytes(spec, cfg: EngineConfig, gated: bool) -> int:
        """Bytes of the float32 arrays :meth:`dense_layer` makes for a prompt of ``cfg.max_prompt``
        rows. Per row: per chunk neuron its pre-activation and activation (and, gated, the
        gate's product: 3 values, else 2), and two of ``d`` (the chunk's output and the running
        sum). For an int8 file, also the chunk dequantised (one chunk at a time)."""
        dequant = cfg.prefill_chunk * spec.n_mats * spec.d * 4 if spec.dtype == "int8" else 0
        return cfg.max_prompt * 4 * (cfg.prefill_chunk * (3 if gated else 2) + 2 * spec.d) + dequant

    def dense_layer(self, layer: int, X: np.ndarray, act) -> np.ndarray:
        """Prefill: the dense FFN of ``layer`` for all rows of ``X``, streamed from flash in chunks.

        Each chunk is read by the prefill I/O thread; a read that fails or hangs stops the
        engine with an error after ``cfg.timeout`` s.
        """
        if self.pipe.failed is not None:
            raise RuntimeError(f"the pipeline stopped after an error: {self.pipe.failed!r}")
        spec, n, cs = self.spec, self.spec.n_neurons, self.cfg.prefill_chunk
        if X.shape[0] > self.cfg.max_prompt:
            raise ValueError(f"prefill of {X.shape[0]} rows, but the budget holds buffers for max_prompt = "
                             f"{self.cfg.max_prompt}; raise EngineConfig.max_prompt")
        out = np.zeros((X.shape[0], spec.d), dtype=np.float32)
        try:
            for a in range(0, n, cs):
                ids = np.arange(a, min(n, a + cs), dtype=np.int64)
                t0 = time.perf_counter()
                raw = self.prefill_io.call(lambda ids=ids: self.prefill_reader.read(layer, ids), f"prefill read of layer {layer}")
                dec = self.flash.decode(raw)
                B = dec if spec.dtype == "float32" else (dec[0].astype(np.float32) * dec[1][:, :, None])
                H = act(X @ B[:, 0].T)
                if self.gated:
                    H = H * (X @ B[:, 1].T)
                out += H @ B[:, -1]
                self.trace.add("compute", "prefill", layer, a // cs, t0, time.perf_counter())
        except BaseException as err:
            self.pipe.stop(layer, None, err)
            raise
        return out

    def stats(self) -> dict:
        """Hit rates, and bytes read by decode (``bytes_read``, misses only) and by prefill, separately."""
        hr = self.cache.hit_rates()
        return {"hit_rate_hot": hr["hot"], "hit_rate_cold": hr["cold"], "bytes_read": self.pipe.bytes_read,
                "prefill_bytes_read": self.prefill_reader.bytes_read,
                "n_reads": self.pipe.n_reads, "tokens": self.tokens, "regions": self.cache.region_bytes(),
                "outside_budget": self.outside_budget}

