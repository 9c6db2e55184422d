"""The neuron-cluster pipeline: reads in flight while the compute thread works, and no matrix barrier.

One FFN layer at decode time is a set of *clusters* (work units of up to ``cluster_size``
active neurons). A cluster is either already in memory (hot region, or a cold-cache hit) or
must be read from flash (a miss). Each cluster goes through PowerInfer-2's stages
(arXiv:2406.06282v3, §4.3)::

    predict -> gate_read -> gate_compute -> updown_read -> updown_compute

What each compute stage does, and why the FFN splits in two there, is in
:mod:`teachkit.sparse.compute.stages`. With ``read_unit="bundle"`` a miss is one read of the whole
bundle (``bundle_read``); with ``read_unit="split"`` the gate part is read first and up/down
only for neurons whose gate fired (PowerInfer-2's two-phase loading, v3 §4.4). Three schedules:

* ``"serial"``: read every miss, then compute everything in one fused pass per region on both
  cores (LLM in a flash: I/O time + compute time).
* ``"matrix"``: compute in-memory clusters while reads are in flight, but finish *all* of the
  gate matrix before any up/down work (a barrier per matrix: the matrix-level pipeline, v3 Fig. 6-a).
* ``"cluster"``: no barrier. The compute thread takes any ready work: an arrived cluster's
  gate, an in-memory cluster's up/down (the *next* matrix), ... (the neuron-cluster-level pipeline,
  v3 Fig. 6-b).

**Reads.** :class:`~teachkit.sparse.flash.unit_reads.UnitReads` puts a layer's misses in flight
from the compute thread, as many as its staging rows hold, in one request: with kernel AIO
one ``io_submit``, or two when the batch is large (the first cluster alone, so the disk starts
sooner); with ``pread`` threads, a queue they take reads from. Its one I/O thread lands each
cluster as its last read completes and submits the clusters that did not fit as rows come
free; the compute thread meanwhile runs what is in memory.

**The GIL hand-off.** The numba kernels and the AIO system calls release the GIL, but the
Python code around them needs it. A thread that wants the GIL may wait a full *switch
interval* (``sys.getswitchinterval()``, 5 ms by default) while the other thread runs Python
code: a 5 ms stall per hand-off, longer than a whole layer. The pipeline therefore lowers the
interval to 0.2 ms (a process-wide setting), and keeps hand-offs rare: none before the reads
are in flight, one per landed cluster after.

Every stage is recorded in a :class:`Trace` (lane, stage, layer, cluster, t0, t1), the compute
thread handing a layer's reads to the kernel included (``submit``: between the cache lookup and
the first compute, it is time the compute thread does not compute). A failed read is
re-raised in the compute thread; a read that never completes raises :class:`PipelineTimeout`
after ``timeout`` seconds: the pipeline never hangs. *Any* exception
inside a layer (a read error, Ctrl-C, a bug in a kernel) stops the pipeline for good and
forgets the cache slots that layer was filling, so no later token computes with bytes that
never arrived.

**Look-ahead** (optional, the engine's ``lookahead``). While the compute thread waits for a
layer's reads, the engine may guess the next layer's neurons from this layer's input; once
the layer is done it reads (:meth:`prefetch`) the ones not in memory, while the next
layer's attention and predictor run, and
:meth:`settle` waits for every one of them before that layer's cache lookup (so a lookup never
sees a slot whose bytes are still on their way). The guess only decides what is *read*; the
real predictor still decides what is computed, so the output does not change.

Limits: without the look-ahead the I/O thread idles while the predictor (and, in a model,
attention) runs, since it cannot know what to read before the prediction; and work already
in memory runs as one batch per region rather than cluster by cluster.
"""

from __future__ import annotations

import queue
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

# gate_compute and friends are called through this module's namespace (tests patch them here)
from ..compute.stages import fused_compute, gate_compute, updown_compute
from ..flash.reader import FlashReadError
from ..flash.unit_reads import UnitReads
from .lookup import LayerPlan
from .trace import Trace

__all__ = ["PipelineConfig", "ClusterPipeline", "PipelineTimeout", "WorkUnit"]

SWITCH_INTERVAL = 2e-4
AHEAD_UID = 1_000_000          # look-ahead units are numbered from here (trace cluster ids)


class PipelineTimeout(TimeoutError):
    """No read completed within the pipeline's timeout: the I/O thread is stuck."""


@dataclass
class PipelineConfig:
    schedule: str = "cluster"     # "cluster", "matrix" or "serial"
    read_unit: str = "bundle"     # "bundle" (one read per neuron) or "split" (gate, then up/down)
    cluster_size: int = 32
    io_depth: int = 16            # reads in flight (at least one cluster's worth), one I/O thread
    timeout: float = 10.0
    aio: str = "auto"             # "kernel" (Linux AIO), "threads" (pread threads) or "auto"
    check_reads: bool = False     # crc32 of every bundle read against the file's (read_unit="bundle")

    def __post_init__(self):
        if self.schedule not in ("cluster", "matrix", "serial"):
            raise ValueError(f"schedule must be 'cluster', 'matrix' or 'serial', got {self.schedule!r}")
        if self.read_unit not in ("bundle", "split"):
            raise ValueError(f"read_unit must be 'bundle' or 'split', got {self.read_unit!r}")
        if self.cluster_size < 1 or self.io_depth < 1 or self.timeout <= 0:
            raise ValueError("cluster_size, io_depth and timeout must be positive")


class WorkUnit:
    """One cluster of work: rows of region weights ``W`` to compute; ``neurons`` to read into
    ``read_rows`` (None: already in memory). ``g`` holds its gate values between the two stages."""

    __slots__ = ("uid", "W", "rows", "neurons", "read_rows", "g", "split", "layer")

    def __init__(self, uid, W, rows, neurons=None, read_rows=None):
        self.uid, self.W, self.rows = uid, W, np.ascontiguousarray(rows, dtype=np.int64)
        self.neurons, self.read_rows = neurons, read_rows
        self.g = np.empty(len(rows), dtype=np.float32)
        self.split = False
        self.layer = -1


class ClusterPipeline:
    """Runs FFN layers from a :class:`~teachkit.sparse.runtime.cache.SegmentedCache` and a flash file."""

    def __init__(self, flash, cache, cfg: PipelineConfig, gated: bool, trace: Trace | None = None, fault=None):
        self.flash, self.cache, self.cfg, self.gated = flash, cache, cfg, bool(gated)
        self.spec = flash.spec
        if self.spec.layout != "bundled":
            raise ValueError("the pipeline reads bundled files; write the file with layout='bundled'")
        if cfg.read_unit == "split" and self.spec.dtype != "float32":
            raise ValueError("read_unit='split' needs a float32 file (int8 bundles are read whole)")
        self.trace = trace if trace is not None else Trace()
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)           # see "The GIL hand-off" above
        self.done: queue.Queue = queue.Queue()
        self.failed: BaseException | None = None
        self.ahead: dict = {}                 # look-ahead units still in flight: uid -> unit
        self._ahead_uid = 0
        self.io = UnitReads(flash, cache, cfg, self.trace, self.done, fault)

    # ---- the read side (teachkit.sparse.flash.unit_reads) -----------------------------------
    @property
    def reader(self):
        return self.io.reader

    @property
    def aio(self):
        return self.io.aio

    @property
    def bytes_read(self) -> int:
        return self.io.reader.bytes_read

    @property
    def n_reads(self) -> int:
        return self.io.reader.n_reads

    def close(self) -> None:
        self.io.close()

    @property
    def stuck(self) -> list:
        """Threads left running by :meth:`close` because a read never returned."""
        return self.io.stuck

    # ---- the compute thread -----------------------------------------------------------
    def _units(self, layer: int, plan: LayerPlan):
        """Turn a cache lookup into work units: in-memory ones and ones to read.

        Everything already in memory is ready at once, so it forms one unit per region (hot,
        cold): fewer kernel calls, fewer GIL hand-offs. Misses are cut into clusters of at most
        ``cluster_size`` neurons; a hot miss is its whole hot cluster. Each is computed as soon
        as its last read lands.
        """
        cs, cache = self.cfg.cluster_size, self.cache
        to_read, uid = [], 2
        hot_cs, hot_rows = cache.cfg.cluster_size, plan.hot_rows
        for k in np.flatnonzero(plan.hot_miss).tolist():
            c, slot = int(plan.hot_clusters[k]), int(plan.hot_slots[k])
            members = cache.cluster_members(layer, c)
            to_read.append(WorkUnit(uid, cache.hot_w, hot_rows[k], members, slot * hot_cs + np.arange(len(members))))
            uid += 1
        neurons, slots, miss = plan.cold_neurons, plan.cold_slots, plan.cold_miss
        ready = [u for u in (WorkUnit(0, cache.hot_w, plan.hot_rows_all[~plan.hot_rows_miss]),
                             WorkUnit(1, cache.cold_w, slots[~miss])) if len(u.rows)]
        n_sel, s_sel = neurons[miss], slots[miss]
        for a in range(0, len(n_sel), cs):
            s = np.ascontiguousarray(s_sel[a:a + cs])
            to_read.append(WorkUnit(uid, cache.cold_w, s, np.ascontiguousarray(n_sel[a:a + cs]), s))
            uid += 1
        return ready, to_read

    def _wait(self, layer: int, block: bool = True):
        """Next completed read ``(unit, part)`` of this layer; ``None`` if ``block`` is off and none is ready.

        Look-ahead reads that land meanwhile are booked (:meth:`_next`) and waited past.
        """
        t0 = time.perf_counter()
        while True:
            got = self._next(layer, block)
            if got is None or got[1] != "ahead":
                break
        if block:
            self.trace.add("compute", "wait", layer, -1, t0, time.perf_counter())
        return got

    def _next(self, layer: int, block: bool):
        """One item from the ``done`` queue; raises the read's error, or a timeout."""
        try:
            unit, part, err = self.done.get(timeout=self.cfg.timeout) if block else self.done.get_nowait()
        except queue.Empty:
            if not block:
                return None
            self.failed = PipelineTimeout(f"no flash read completed within {self.cfg.timeout} s (layer {layer}); "
                                          "the I/O thread is stuck")
            raise self.failed from None
        if err is not None:
            if not isinstance(err, FlashReadError):
                wrapped = FlashReadError(f"reading layer {layer} failed: {err!r}")
                wrapped.__cause__, err = err, wrapped
            self.failed = err
            raise self.failed
        if part == "ahead":
            self.ahead.pop(unit.uid, None)
        return unit, part

    # ---- look-ahead: reads for the next layer, started during this one --------------------
    def prefetch(self, layer: int, neurons: np.ndarray, slots: np.ndarray) -> None:
        """Read cold ``neurons`` of ``layer`` into cold ``slots`` (from ``SegmentedCache.prefetch_cold``).

        The engine calls it when the current layer is done, so these reads share the disk with no
        other read of this token; :meth:`settle` waits for them before ``layer``'s own lookup.
        """
        if not len(neurons):
            return
        if len(neurons) > self.io.n_rows:                  # one unit must fit the rows in flight, or it never starts
            raise ValueError(f"at most {self.io.n_rows} look-ahead reads at once, got {len(neurons)}")
        slots = np.ascontiguousarray(slots)           # one unit: the I/O thread wakes once, not per cluster
        u = WorkUnit(AHEAD_UID + self._ahead_uid, self.cache.cold_w, slots, np.ascontiguousarray(neurons), slots)
        u.layer = layer
        self._ahead_uid = (self._ahead_uid + 1) % AHEAD_UID
        self.ahead[u.uid] = u
        self.io.request([(u, "ahead", layer)])

    def settle(self, layer: int) -> None:
        """Wait until every look-ahead read is in memory (called before a layer's cache lookup)."""
        if self.failed is not None:
            raise RuntimeError(f"the pipeline stopped after an error: {self.failed!r}")
        if not self.ahead:
            return
        t0 = time.perf_counter()
        try:
            while self.ahead:
                got = self._next(layer, block=True)
                if got[1] != "ahead":
                    raise RuntimeError("a read landed after its layer had finished")
        except BaseException as err:
            self.stop(layer, None, err)
            raise
        self.trace.add("compute", "wait", layer, -1, t0, time.perf_counter())

    def _gate(self, layer, u, x):
        t0 = time.perf_counter()
        gate_compute(u.W, u.rows, x, u.g)
        self.trace.add("compute", "gate_compute", layer, u.uid, t0, time.perf_counter())

    def _updown(self, layer, u, x, out):
        t0 = time.perf_counter()
        updown_compute(u.W, u.rows, x, u.g, self.gated, out)
        self.trace.add("compute", "updown_compute", layer, u.uid, t0, time.perf_counter())

    def _after_gate_read(self, u, layer) -> bool:
        """Split mode: keep only neurons whose gate fired; ask for their up/down. True if a read was queued."""
        fired = u.g > 0
        dead = u.neurons[~fired]
        if len(dead):
            self.cache.invalidate_cold(layer, dead)       # half-read bundles must not stay cached
        u.rows, u.neurons, u.read_rows, u.g = u.rows[fired], u.neurons[fired], u.read_rows[fired], u.g[fired]
        if len(u.rows):
            self.io.request([(u, "updown", layer)])
            return True
        return False

    def run_layer(self, layer: int, x: np.ndarray, plan: LayerPlan, out: np.ndarray, when_done=None,
                  when_idle=None) -> np.ndarray:
        """Add layer ``layer``'s FFN output for input ``x`` to ``out``, reading misses from flash.

        ``when_idle()`` runs the first time the compute thread would only wait for reads (at the
        start for the barrier schedules); ``when_done()`` once this layer's reads have landed
        and its compute is done. The engine's look-ahead guesses in the first and reads in the
        second, so its reads have the disk to themselves.
        """
        if self.failed is not None:
            raise RuntimeError(f"the pipeline stopped after an error: {self.failed!r}")
        try:
            ready, to_read = self._units(layer, plan)
            for u in to_read:                             # hot clusters are always read whole
                u.split = self.cfg.read_unit == "split" and u.W is self.cache.cold_w
            if to_read:                                   # the whole layer's reads in one request
                self.io.request([(u, "gate" if u.split else "bundle", layer) for u in to_read])
            if self.cfg.schedule == "cluster":
                self._run_cluster(layer, x, out, ready, len(to_read), when_idle)
            else:
                if when_idle is not None:
                    when_idle()
                self._run_barrier(layer, x, out, ready, to_read, self.cfg.schedule == "serial")
            if when_done is not None:
                when_done()
        except BaseException as err:                      # read error, Ctrl-C, a kernel or predictor bug
            self.stop(layer, plan, err)
            raise
        return out

    def stop(self, layer: int, plan: LayerPlan | None, err: BaseException) -> None:
        """Mark the pipeline failed and forget the slots this layer was filling.

        Reads still in flight (or never issued) would leave slots that *say* their neuron is
        in memory while they hold stale bytes: the next token would compute garbage silently.
        """
        if self.failed is None:
            self.failed = err
        if plan is not None:
            self.cache.invalidate_plan(layer, plan)
        for u in list(self.ahead.values()):              # look-ahead reads that may never land
            self.cache.invalidate_cold(u.layer, u.neurons)
        self.ahead.clear()

    def _run_cluster(self, layer, x, out, ready, outstanding, idle=None):
        """No barrier: arrived clusters first (to keep the I/O thread busy), else any ready work.

        ``idle()`` runs once, the first time the compute thread has nothing to do but wait.
        """
        work = deque(("fused", u, False) for u in ready)

        def arrive(unit, part):
            work.appendleft(("updown", unit, True) if part == "updown" else ("gate", unit, True))

        while work or outstanding:
            while outstanding:
                got = self._wait(layer, block=False)
                if got is None:
                    break
                outstanding -= 1
                arrive(*got)
            if not work:
                if idle is not None:
                    idle, run_idle = None, idle
                    run_idle()
                    continue
                arrive(*self._wait(layer))
                outstanding -= 1
                continue
            stage, u, fresh = work.popleft()
            if stage == "updown":
                self._updown(layer, u, x, out)
            elif stage == "fused":
                t0 = time.perf_counter()
                fused_compute(u.W, u.rows, x, out, self.gated)
                self.trace.add("compute", "fused_compute", layer, u.uid, t0, time.perf_counter())
            else:
                self._gate(layer, u, x)
                if fresh and u.split:
                    outstanding += self._after_gate_read(u, layer)
                else:
                    work.append(("updown", u, False))

    def _run_barrier(self, layer, x, out, ready, to_read, serial):
        """``serial``: all reads, then all compute. Else a barrier after each matrix."""
        if serial:
            for _ in to_read:
                self._wait(layer)
            if not any(u.split for u in to_read):      # everything is in memory now: one fused pass per region
                for W in {id(u.W): u.W for u in ready + to_read}.values():
                    rows = np.concatenate([u.rows for u in ready + to_read if u.W is W])
                    t0 = time.perf_counter()
                    fused_compute(W, rows, x, out, self.gated)
                    self.trace.add("compute", "fused_compute", layer, -1, t0, time.perf_counter())
                return
        for u in ready:
            self._gate(layer, u, x)
        if not serial:
            for _ in to_read:
                self._wait(layer)
        for u in to_read:
            self._gate(layer, u, x)
        pending = [u for u in to_read if u.split and self._after_gate_read(u, layer)]
        if serial:
            for _ in pending:
                self._wait(layer)
        for u in ready:
            self._updown(layer, u, x, out)
        if not serial:
            for _ in pending:
                self._wait(layer)
        for u in to_read:
            if len(u.rows):
                self._updown(layer, u, x, out)
