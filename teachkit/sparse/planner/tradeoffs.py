"""What the hands-on widgets of notebooks 12-14 compute: the engine's trade-offs as pure functions.

- :func:`split_hit_rate` / :func:`hit_rate_over_splits` (12): a budget of cached neuron rows split
  between a hot region (each layer's most frequent neurons, pinned) and a cold LRU, replayed on
  activation traces with :func:`teachkit.sparse.runtime.cache.simulate_hit_rate`.
- :func:`pipeline_makespans` / :func:`makespan_over_ratios` (13): one layer's makespan under the
  serial, matrix-level and cluster-level schedules, from stage times (``stage_times`` reads them
  from an engine ``Trace``). One I/O lane reads the missing clusters one after another; one
  compute lane does the in-memory work and each read cluster's compute. With ``g`` the gate's
  share of a neuron's work (``gate_share``, one of its three rows):

  serial:  Σread + in-memory + Σcompute                        (compute starts when every read has landed)
  matrix:  max(g·in-memory, Σread) + (1 − g)·in-memory + Σcompute
           (the in-memory gates overlap the reads; a barrier at the end of the gate matrix, then
           every up/down, the in-memory ones included, as the engine's ``matrix`` schedule does)
  cluster: two clocks, io += read_i; comp = max(comp, io) + compute_i, from comp = in-memory
           (the in-memory work, fused, overlaps the reads; each cluster as soon as it has landed)

  No schedule beats ``max(in-memory + Σcompute, Σread)``: overlap saves at most the smaller lane,
  so it pays most when compute and I/O take similar time. :func:`pipeline_schedule` lays the
  same model out as trace events, to draw as a (simulated) Gantt chart.
- :func:`budget_sweep_table` (14): the stored benchmark's memory-budget sweep, measured tokens/s
  beside the planner's prediction for the same budget.
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime.cache import simulate_hit_rate
from ..runtime.trace import CLUSTER_COMPUTE_STAGES, READ_STAGES, TraceEvent

__all__ = ["split_hit_rate", "hit_rate_over_splits", "stage_times", "pipeline_makespans",
           "makespan_over_ratios", "pipeline_schedule", "GATE_SHARE", "budget_sweep_table"]

GATE_SHARE = 1 / 3      # the gate is one of a neuron's three rows (gate, up, down)
COMPUTE_STAGES = CLUSTER_COMPUTE_STAGES | {"gate_compute"}     # every stage that computes on neurons


def _neuron_frequencies(traces: list, n_neurons: int) -> np.ndarray:
    freq = np.zeros((len(traces[0]), n_neurons), dtype=np.int64)
    for token in traces:
        for layer, active in enumerate(token):
            np.add.at(freq[layer], np.asarray(active, dtype=np.int64), 1)
    return freq


def split_hit_rate(traces: list, n_neurons: int, total_slots: int, hot_share: float, warmup: int = 0) -> dict:
    """Hit rate of ``total_slots`` cached rows, ``hot_share`` of them pinned hot (evenly per layer)."""
    if not traces or not traces[0]:
        raise ValueError("traces must hold at least one token with at least one layer")
    if not 0.0 <= float(hot_share) <= 1.0:
        raise ValueError(f"hot_share must be in [0, 1], got {hot_share!r}")
    n_layers = len(traces[0])
    if int(total_slots) < 1 or int(total_slots) > n_layers * n_neurons:
        raise ValueError(f"total_slots must be in [1, {n_layers * n_neurons}], got {total_slots!r}")
    hot_per_layer = min(n_neurons, int(round(hot_share * total_slots / n_layers)))
    cold_slots = max(1, int(total_slots) - hot_per_layer * n_layers)
    freq = _neuron_frequencies(traces, n_neurons)
    hot_sets = [np.argsort(-f, kind="stable")[:hot_per_layer] for f in freq]
    rate = simulate_hit_rate(traces, n_neurons, cold_slots, hot_sets, warmup=warmup)
    return {"hit_rate": rate, "hot_per_layer": hot_per_layer, "cold_slots": cold_slots}


def hit_rate_over_splits(traces: list, n_neurons: int, total_slots: int, shares, warmup: int = 0) -> dict:
    """:func:`split_hit_rate` for each hot share; arrays ``share`` and ``hit_rate``."""
    shares = np.asarray(shares, dtype=np.float64)
    rates = [split_hit_rate(traces, n_neurons, total_slots, s, warmup)["hit_rate"] for s in shares]
    return {"share": shares, "hit_rate": np.array(rates)}


def stage_times(events, layer: int) -> dict:
    """One layer's stage times (ms) from ``Trace.events``, in the makespan model's terms.

    Reads overlap in flight, so a read's own duration is not what the single I/O lane of the
    model spends on it. ``read_ms[i]`` is the time from the previous landing (the first: from the
    first submit) to the i-th landing: the lane's total is the burst's wall time, and a burst
    that lands all at once shows as one long read and near-zero others. ``compute_ms[i]`` is the
    compute (gate and up/down) of the cluster that landed i-th, shared among its reads if it had
    more than one (split reads); ``in_memory_ms`` is the compute of every cluster that was not
    read (the in-memory batches).
    """
    layer_events = [TraceEvent(*e) for e in events if e[2] == layer]
    reads = sorted((e for e in layer_events if e.stage in READ_STAGES), key=lambda e: e.t1)
    clock = min((e.t0 for e in reads), default=0.0)
    read_ms = []
    for e in reads:
        read_ms.append(1e3 * max(0.0, e.t1 - clock))
        clock = max(clock, e.t1)
    per_cluster: dict[int, float] = {}
    in_memory = 0.0
    n_reads = {c: sum(1 for e in reads if e.cluster == c) for c in {e.cluster for e in reads}}
    for e in layer_events:
        if e.lane.startswith("compute") and e.stage in COMPUTE_STAGES:
            if e.cluster in n_reads:
                per_cluster[e.cluster] = per_cluster.get(e.cluster, 0.0) + 1e3 * e.seconds
            else:
                in_memory += 1e3 * e.seconds
    compute_ms = [per_cluster.get(e.cluster, 0.0) / n_reads[e.cluster] for e in reads]
    return {"read_ms": read_ms, "compute_ms": compute_ms, "in_memory_ms": in_memory}


def _times(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be a 1-D array of non-negative finite times")
    return arr


def _checked(read_ms, compute_ms, in_memory_ms, gate_share):
    reads, comps = _times("read_ms", read_ms), _times("compute_ms", compute_ms)
    if len(reads) != len(comps):
        raise ValueError(f"one compute time per read: {len(reads)} reads, {len(comps)} computes")
    in_memory = float(in_memory_ms)
    if not math.isfinite(in_memory) or in_memory < 0:
        raise ValueError(f"in_memory_ms must be a non-negative finite time, got {in_memory_ms!r}")
    if not 0.0 <= float(gate_share) <= 1.0:
        raise ValueError(f"gate_share must be in [0, 1], got {gate_share!r}")
    return reads, comps, in_memory, float(gate_share)


def pipeline_makespans(read_ms, compute_ms, in_memory_ms: float = 0.0, gate_share: float = GATE_SHARE) -> dict:
    """Makespan of one layer under each schedule, and the bound no schedule beats (module docstring)."""
    reads, comps, in_memory, g = _checked(read_ms, compute_ms, in_memory_ms, gate_share)
    io_end, comp_end = 0.0, in_memory
    for r, c in zip(reads, comps):
        io_end += r
        comp_end = max(comp_end, io_end) + c
    total_read, total_compute = float(reads.sum()), in_memory + float(comps.sum())
    matrix = max(g * in_memory, total_read) + (1.0 - g) * in_memory + float(comps.sum())
    return {"serial": total_read + total_compute, "matrix": matrix,
            "cluster": float(comp_end), "bound": max(total_read, total_compute),
            "io_ms": total_read, "compute_ms": total_compute}


def pipeline_schedule(read_ms, compute_ms, in_memory_ms: float = 0.0, schedule: str = "cluster",
                      gate_share: float = GATE_SHARE, layer: int = 0) -> list[TraceEvent]:
    """The model's schedule of one layer as trace events (seconds), to draw with ``viz.plot_gantt``.

    SIMULATED, not measured: one I/O lane (``io``) reads cluster ``i`` from the (i-1)-th landing
    to the i-th; the compute lane does what the module docstring's formula for ``schedule``
    ("matrix" or "cluster") says, in that order, with ``wait`` where it has nothing to do. In-memory
    work is cluster -1; a read cluster's gate and up/down split its compute by ``gate_share``. The
    last event ends at ``pipeline_makespans(...)[schedule]``.
    """
    if schedule not in ("matrix", "cluster"):
        raise ValueError(f"schedule must be 'matrix' or 'cluster', got {schedule!r}")
    reads, comps, in_memory, g = _checked(read_ms, compute_ms, in_memory_ms, gate_share)
    ms = 1e-3
    events, landed, io_end = [], [], 0.0
    for i, r in enumerate(reads.tolist()):
        events.append(TraceEvent("io", "bundle_read", layer, i, io_end * ms, (io_end + r) * ms))
        io_end += r
        landed.append(io_end)
    clock = 0.0

    def run(stage, cluster, seconds, ready=0.0):
        nonlocal clock
        if ready > clock:
            events.append(TraceEvent("compute", "wait", layer, -1, clock * ms, ready * ms))
            clock = ready
        if seconds > 0:
            events.append(TraceEvent("compute", stage, layer, cluster, clock * ms, (clock + seconds) * ms))
            clock += seconds

    if schedule == "cluster":
        run("fused_compute", -1, in_memory)
        for i, c in enumerate(comps.tolist()):
            run("gate_compute", i, g * c, landed[i])
            run("updown_compute", i, (1.0 - g) * c)
    else:
        run("gate_compute", -1, g * in_memory)
        barrier = landed[-1] if landed else 0.0
        for i, c in enumerate(comps.tolist()):
            run("gate_compute", i, g * c, barrier)
        run("updown_compute", -1, (1.0 - g) * in_memory, barrier)
        for i, c in enumerate(comps.tolist()):
            run("updown_compute", i, (1.0 - g) * c)
    return events


def makespan_over_ratios(read_ms, compute_ms, in_memory_ms: float, ratios, gate_share: float = GATE_SHARE) -> dict:
    """Makespans with every compute time scaled so that total compute / total I/O = each ratio."""
    base = pipeline_makespans(read_ms, compute_ms, in_memory_ms, gate_share)
    if base["io_ms"] <= 0 or base["compute_ms"] <= 0:
        raise ValueError("the stage times need some I/O and some compute to scale their ratio")
    rows = {k: [] for k in ("serial", "matrix", "cluster", "bound")}
    ratios = np.asarray(ratios, dtype=np.float64)
    for ratio in ratios:
        scale = ratio * base["io_ms"] / base["compute_ms"]
        m = pipeline_makespans(read_ms, np.asarray(compute_ms, dtype=np.float64) * scale, in_memory_ms * scale,
                               gate_share)
        for k in rows:
            rows[k].append(m[k])
    return {"ratio": ratios, "io_ms": base["io_ms"], **{k: np.array(v) for k, v in rows.items()}}


def budget_sweep_table(bench: dict) -> dict:
    """The stored budget sweep, sorted by budget: ``budget_over_ffn``, ``tok_s`` (measured),
    ``predicted_tok_s`` (planner), ``hit_rate`` and the chosen plan's ``hot_neurons``/``cold_slots``."""
    sweep = bench.get("budget_sweep") if isinstance(bench, dict) else None
    if not sweep:
        raise ValueError("the benchmark has no budget_sweep: run `make bench`")
    rows = sorted(sweep, key=lambda r: r["budget_over_ffn"])
    return {"budget_over_ffn": np.array([r["budget_over_ffn"] for r in rows], dtype=np.float64),
            "tok_s": np.array([r["tok_s"] for r in rows], dtype=np.float64),
            "predicted_tok_s": np.array([r["predicted_tok_s"] for r in rows], dtype=np.float64),
            "hit_rate": np.array([r.get("hit_rate", float("nan")) for r in rows], dtype=np.float64),
            "hot_neurons": np.array([r["plan"]["hot_neurons"] for r in rows]),
            "cold_slots": np.array([r["plan"]["cold_slots"] for r in rows])}
