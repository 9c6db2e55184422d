"""The offline planner: profile the machine and the model, then choose the engine's plan.

**Inputs** (PowerInfer-2, arXiv:2406.06282v3, §5): the machine (:class:`MachineProfile`: memory bandwidth, random-read
bandwidth by read size and queue depth, the time of a burst of reads, the speed of the stage and
fused kernels, the fixed costs per work unit and per layer), the model (:class:`ModelProfile`:
activation frequencies; the cache hit rate against cache size, measured by *replaying* recorded
activation traces through the very LRU tables the engine uses) and the user's limit (the memory
budget).

**Decisions**: hot neurons per layer H, hot/cold split of the cache, cluster size c, read unit
(whole bundle, or gate then up/down), reads in flight (``io_depth``).

**Cost model** (per layer, batch 1; a token is L layers in a row)::

    n_act      = mean active neurons per layer              (from the traces)
    h(H, C)    = hit rate with H hot neurons pinned and C cold slots   (trace replay)
    n_miss     = n_act · (1 - h)
    t_pre      = B_fixed / (L · BW_mem) + c_layer   attention + predictor: nothing can be read before
                                                them; c_layer = bookkeeping per layer, calibrated
                                                on one all-in-memory run
    t_submit   = s_call · min(1, n_miss) + s_read · min(n_miss, QD)   handing the layer's reads to the
                                                kernel, on the compute thread, before it computes
                                                anything (the I/O thread submits what does not fit
                                                in QD); twice that for read_unit "split"
    t_io       = a · ⌈n_miss / QD⌉ + b · n_miss    a batch of reads submitted at once (burst profile:
                                                a = a burst's fixed cost, b = time per extra read);
                 twice that for read_unit "split" (gate reads, then up/down reads: two bursts);
                 without a burst profile:  n_miss · unit_bytes / BW_rand(unit_bytes, QD)
    QD         = max(io_depth, c)                 the engine stages at least one whole cluster
    t_mem      = n_act · h · bundle / BW_fused + 2 c_unit      in-memory work, fused, both cores
    t_tail     = n_miss · bundle / BW_kernel + n_units · c_unit  arrived clusters (n_units of them)
    pipelined: t_layer = t_pre + t_submit + max(t_mem + t_tail, t_io + t_tail / n_units)
    serial:    t_layer = t_pre + t_submit + t_io + n_act · bundle / BW_kernel + (n_units + 2) · c_unit
    tok/s = 1 / (L · t_layer)

with the constraint fixed + buffers + tables + H·L·bundle + C·bundle <= budget and C >= the largest
per-layer cold active set (else a layer cannot be cached at all). The reads of a layer cannot
start before its predictor has run, so ``t_pre`` is never hidden: that per-layer chain is why
measured speed stays far below ``1/max(t_mem, t_io)`` summed over a token. In the pipelined
schedule a layer ends when both lanes are done: the compute lane (in-memory work, then each
cluster as it lands) and the I/O lane (plus the compute of the last cluster to land). The plan
is the grid point with the highest predicted tok/s; :func:`explain` prints it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..runtime.cache import simulate_hit_rate
from ..runtime.engine import EngineConfig, engine_memory
from .io_profile import interpolate_bw

__all__ = ["MachineProfile", "ModelProfile", "Plan", "profile_model", "predict", "choose_plan", "explain",
           "kernel_bandwidth", "unit_overhead", "calibrate_layer_overhead", "submit_time", "fit_submit_cost"]


@dataclass(frozen=True)
class MachineProfile:
    """What the cost model knows of the machine: measured once, read by every plan it prices."""
    io: dict                       # profile_reads: random-read B/s by size and queue depth, + "burst" (a, b) if timed
    bw_mem: float                  # B/s streaming RAM-resident weights (attention, predictor), best thread count
    bw_kernel: float               # B/s of the one-core stage kernels on a table as large as the cache
    bw_fused: float | None = None  # B/s of the fused kernel on every core; None: the same as bw_kernel
    unit_overhead: float = 30e-6   # s of fixed cost per work unit: kernel calls, trace records, hand-offs
    layer_overhead: float = 0.0    # s per layer the terms leave out (calibrate_layer_overhead); 0 until fitted
    submit_call: float = 0.0       # s per submit of a layer's reads, on top of each read (fit_submit_cost); 0 until fitted
    submit_read: float = 0.0       # s per read handed to the kernel in that submit (fit_submit_cost); 0 until fitted


@dataclass
class ModelProfile:
    n_layers: int
    n_neurons: int
    freq: np.ndarray           # (L, n) activation frequency of each neuron
    mean_active: float         # mean active neurons per layer and token
    max_active: int            # largest active set of any layer and token
    traces: list               # per token, per layer: active neuron ids


def profile_model(traces: list, n_neurons: int) -> ModelProfile:
    """Activation statistics of recorded traces ``traces[token][layer] -> ids``."""
    if not traces or not traces[0]:
        raise ValueError("profile_model needs at least one token with one layer of activations")
    L = len(traces[0])
    freq = np.zeros((L, n_neurons))
    for tok in traces:
        for l, ids in enumerate(tok):
            freq[l, ids] += 1
    freq /= len(traces)
    sizes = [len(ids) for tok in traces for ids in tok]
    return ModelProfile(L, n_neurons, freq, float(np.mean(sizes)), int(max(sizes)), traces)


def kernel_bandwidth(d: int = 1024, n: int = 4096, n_act: int = 400, repeats: int = 20, seed: int = 0,
                     table_bytes: int | None = None, fused: bool = False) -> float:
    """Bytes/s of the pipeline's stage kernels, gathering ``n_act`` random rows of a bundle table.

    The engine's kernels read rows of its cache regions, so pass ``table_bytes`` = the size of
    those regions (about the budget): a table that fits in the CPU caches measures the caches,
    which is right only if the engine's regions fit too. ``fused``: the one-pass kernel on
    every core that the cluster schedule runs on in-memory work (``fused_compute``).
    """
    from ..compute.stages import fused_compute, gate_compute, updown_compute

    rng = np.random.default_rng(seed)
    n = max(n, int(table_bytes or 0) // (3 * d * 4))
    W = np.full((n, 3, d), 0.01, dtype=np.float32)
    x = rng.standard_normal(d, dtype=np.float32)
    out = np.zeros(d, np.float32)
    times = []
    for r in range(repeats + 1):
        rows = np.sort(rng.choice(n, n_act, replace=False)).astype(np.int64)
        g = np.empty(n_act, np.float32)
        t0 = time.perf_counter()
        if fused:
            fused_compute(W, rows, x, out, True)
        else:
            gate_compute(W, rows, x, g)
            g[:] = 1.0
            updown_compute(W, rows, x, g, True, out)
        if r:
            times.append(time.perf_counter() - t0)
    return n_act * 3 * d * 4 / float(np.median(times))


def unit_overhead(d: int = 1024, k: int = 64, repeats: int = 7) -> float:
    """Seconds of fixed cost per work unit (cluster): kernel calls, trace records, bookkeeping.

    Measured as (k units of 1 row - 1 unit of k rows) / k, with the pipeline's own calls and
    one hand-off per unit to another thread and back through queues (as a read request and its
    completion travel), so the GIL hand-offs are in it.
    """
    import queue
    import sys
    import threading

    from ..compute.stages import gate_compute, updown_compute
    from ..runtime.pipeline import SWITCH_INTERVAL, WorkUnit
    from ..runtime.trace import Trace

    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    W = np.full((k, 3, d), 0.01, dtype=np.float32)
    x = np.ones(d, np.float32)
    out = np.zeros(d, np.float32)
    tr = Trace()
    requests, done = queue.Queue(), queue.Queue()

    def echo():
        while (u := requests.get()) is not None:
            done.put(u)

    worker = threading.Thread(target=echo, daemon=True)
    worker.start()

    def run(units):
        t0 = time.perf_counter()
        for u in units:
            requests.put(u)
        for _ in units:
            u = done.get()
            t1 = time.perf_counter()
            gate_compute(u.W, u.rows, x, u.g)
            tr.add("compute", "gate_compute", 0, u.uid, t1, time.perf_counter())
            t1 = time.perf_counter()
            updown_compute(u.W, u.rows, x, u.g, True, out)
            tr.add("compute", "updown_compute", 0, u.uid, t1, time.perf_counter())
        return time.perf_counter() - t0

    many, one = [], []
    for _ in range(repeats + 1):
        many.append(run([WorkUnit(i, W, np.array([i])) for i in range(k)]))
        one.append(run([WorkUnit(0, W, np.arange(k))]))
        tr.clear()
    requests.put(None)
    return max(0.0, (float(np.median(many[1:])) - float(np.median(one[1:]))) / (k - 1))


@dataclass
class Plan:
    hot_neurons: int
    cluster_size: int
    read_unit: str
    io_depth: int
    cold_slots: int
    hot_slots: int
    hit_rate: float
    predicted_tok_s: float
    terms: dict


def predict(spec, mp: ModelProfile, machine: MachineProfile, fixed_bytes: int, hot_neurons: int,
            cold_slots: int, cluster_size: int, read_unit: str, pipelined: bool = True, io_depth: int = 1,
            hit_rate: float | None = None) -> dict:
    """The cost model above for one plan; returns every term (seconds per token) and the tok/s.

    ``fixed_bytes``: what is read every token (attention, norms, embeddings, predictor);
    ``hit_rate``: the cache's, if known (else replayed from the traces).
    ``machine.io["burst"]`` (from :func:`~teachkit.sparse.planner.io_profile.burst_profile`), when present,
    times a layer's reads as one batch.
    """
    bundle = spec.bundle_bytes
    L = mp.n_layers
    io_profile, bw_mem, bw_kernel = machine.io, machine.bw_mem, machine.bw_kernel
    bw_fused = machine.bw_fused or bw_kernel
    unit_overhead = machine.unit_overhead
    if hit_rate is None:
        hot_sets = [np.argsort(-f, kind="stable")[:hot_neurons] for f in mp.freq]
        hit_rate = simulate_hit_rate(mp.traces, mp.n_neurons, cold_slots, hot_sets, warmup=len(mp.traces) // 3)
    n_act = mp.mean_active
    n_miss = n_act * (1 - hit_rate)
    qd = max(io_depth, cluster_size)              # the engine stages at least one whole cluster
    small = min(int(k) for k in io_profile["random"])

    def read_time(size):                          # below the smallest measured size a read costs one op
        size = max(size, small)
        return size / interpolate_bw(io_profile, size, qd)

    if read_unit == "bundle":
        t_read = read_time(spec.stride)
    else:
        t_read = read_time(spec.d * 4) + read_time(bundle - spec.d * 4)
    burst = io_profile.get("burst")
    waves = np.ceil(n_miss / qd)
    if burst and n_miss > 0:                      # split: two bursts, gate then up/down, one after the other
        t_io = (burst["a"] * waves + burst["b"] * n_miss) * (1 if read_unit == "bundle" else 2)
    else:
        t_io = n_miss * t_read
    n_units = max(1.0, float(np.ceil(n_miss / cluster_size)))
    t_pre = fixed_bytes / bw_mem / L + machine.layer_overhead
    t_sub = submit_time(machine, n_miss, qd, read_unit)
    if pipelined:
        t_mem = n_act * hit_rate * bundle / bw_fused + 2 * unit_overhead
        t_tail = n_miss * bundle / bw_kernel + n_units * unit_overhead
        t_comp = t_mem + t_tail
        t_layer = t_pre + t_sub + max(t_comp, t_io + t_tail / n_units)
    else:
        t_comp = n_act * bundle / bw_kernel + (n_units + 2) * unit_overhead
        t_layer = t_pre + t_sub + t_io + t_comp
    total = L * t_layer
    return {"hit_rate": float(hit_rate), "t_fixed": L * t_pre, "t_submit": L * t_sub, "t_compute": L * t_comp,
            "t_io": L * t_io, "t_token": total, "tok_s": 1.0 / total, "misses_per_token": L * n_miss, "t_read": t_read}


def submit_time(machine: MachineProfile, n_miss: float, qd: int, read_unit: str = "bundle") -> float:
    """Seconds the compute thread spends handing one layer's ``n_miss`` reads to the kernel.

    ``s_call · min(1, n_miss) + s_read · min(n_miss, qd)``: one submit per layer that reads
    anything, and each read that goes out at once (the staging rows hold ``qd``; the I/O thread
    submits the rest as rows come free, off the compute thread). Read unit ``"split"`` submits
    twice (gate reads, then up/down reads), as it waits for two bursts.
    """
    once = machine.submit_call * min(1.0, n_miss) + machine.submit_read * min(n_miss, qd)
    return once * (1 if read_unit == "bundle" else 2)


def fit_submit_cost(reads, seconds, qd: int) -> tuple[float, float]:
    """``(s_call, s_read)`` of :func:`submit_time` from measured submits: layer ``i`` submitted
    ``reads[i]`` reads (of which ``min(reads[i], qd)`` at once) in ``seconds[i]``.

    A Theil–Sen line (the median of the slopes between every two submits of different sizes,
    then the median intercept), so a few submits slowed by other programs do not move it.
    Both constants are clipped at 0; with one size only, the slope is 0.
    """
    k = np.minimum(np.asarray(reads, float), qd)
    s = np.asarray(seconds, float)
    keep = k > 0
    k, s = k[keep], s[keep]
    if not len(k):
        return 0.0, 0.0
    i, j = np.triu_indices(len(k), 1)
    apart = k[i] != k[j]
    slope = float(np.median((s[j] - s[i])[apart] / (k[j] - k[i])[apart])) if apart.any() else 0.0
    slope = max(0.0, slope)
    return max(0.0, float(np.median(s - slope * k))), slope


def choose_plan(spec, mp: ModelProfile, machine: MachineProfile, budget: int, fixed_bytes: int,
                extra_bytes: int, hot_fracs=(0.0, 0.05, 0.1, 0.2, 0.3), cluster_sizes=(16, 32, 64),
                read_units=("bundle", "split"), io_depth=(1, 2, 4), prefill_chunk: int = 64,
                max_prompt: int = 64) -> Plan:
    """Grid search of the cost model under the budget. Raises if nothing fits.

    A plan fits if the engine's own memory accounting leaves a cold region of at least
    ``mp.max_active`` slots (one layer's largest active set): a smaller one could not hold a
    layer's neurons while it computes. Near the smallest budgets this rule can leave no room
    for hot neurons at all.

    ``fixed_bytes``: what is read every token (attention, norms, embeddings, predictor);
    ``extra_bytes``: what else the engine holds (the KV cache). Staging, prefill buffers and
    cache tables are added as :func:`~teachkit.sparse.runtime.engine.engine_memory` counts them.
    """
    best, hits = None, {}
    for frac, cs, ru, qd in itertools.product(hot_fracs, cluster_sizes, read_units, io_depth):
        if ru == "split" and spec.dtype != "float32":
            continue
        H = int(round(frac * spec.n_neurons / cs)) * cs
        ecfg = EngineConfig(budget=budget, hot_neurons=H, cluster_size=cs, read_unit=ru, io_depth=qd,
                            prefill_chunk=prefill_chunk, max_prompt=max_prompt)
        try:                                       # the engine's own accounting: plan and engine agree
            cold = engine_memory(spec, ecfg, fixed_bytes + extra_bytes, spec.n_mats == 3)["cold_slots"]
        except ValueError:
            continue
        if cold < mp.max_active:                   # the cold region must hold one layer's active set
            continue
        if (H, cold) not in hits:
            hot_sets = [np.argsort(-f, kind="stable")[:H] for f in mp.freq]
            hits[H, cold] = simulate_hit_rate(mp.traces, mp.n_neurons, int(cold), hot_sets,
                                              warmup=len(mp.traces) // 3)
        terms = predict(spec, mp, machine, fixed_bytes, H, int(cold), cs, ru, io_depth=qd, hit_rate=hits[H, cold])
        plan = Plan(H, cs, ru, qd, int(cold), -(-H // cs) * spec.n_layers, terms["hit_rate"], terms["tok_s"], terms)
        if best is None or plan.predicted_tok_s > best.predicted_tok_s:
            best = plan
    if best is None:
        raise ValueError(f"no plan fits a budget of {budget / 2**20:.1f} MiB: the cold region cannot hold "
                         f"one layer's {mp.max_active} active neurons")
    return best


def calibrate_layer_overhead(time_token, tokens, model_token_s: float, n_layers: int) -> float:
    """Seconds per layer that the cost model leaves out, from one all-in-memory run.

    ``time_token(t)`` decodes token ``t`` with the planned engine given a budget that holds the
    whole FFN, returning seconds. The tokens are decoded twice: the first pass fills the cache,
    the second finds every neuron in memory (no read at all). Its median, minus
    ``model_token_s`` (what :func:`predict` says such a token costs, ``hit_rate=1``), spread
    over the layers, is the Python and bookkeeping time per layer: predictor call, cache
    lookup, work units, hand-offs. One constant, fitted where there is no I/O; the budgets
    with I/O then test the model.
    """
    for t in tokens:
        time_token(t)
    measured = float(np.median([time_token(t) for t in tokens]))
    return max(0.0, (measured - model_token_s) / n_layers)


def explain(plan: Plan) -> str:
    """The plan in words. Reads in flight are the engine's: its staging rows hold at least one
    cluster, so ``max(io_depth, cluster_size)`` reads go out at once, as the cost model prices them."""
    t = plan.terms
    return (f"plan: {plan.hot_neurons} hot neurons/layer in clusters of {plan.cluster_size} "
            f"({plan.hot_slots} hot clusters), {plan.cold_slots} cold slots, read unit '{plan.read_unit}', "
            f"{max(plan.io_depth, plan.cluster_size)} reads in flight (io_depth {plan.io_depth})\n"
            f"  replayed hit rate {plan.hit_rate:.3f}, {t['misses_per_token']:.0f} misses/token\n"
            f"  per token: attention + predictor + c_layer {t['t_fixed'] * 1e3:.2f} ms, submitting reads "
            f"{t.get('t_submit', 0.0) * 1e3:.2f} ms, compute {t['t_compute'] * 1e3:.2f} ms, I/O {t['t_io'] * 1e3:.2f} ms; "
            f"each layer takes the longer of its compute and its I/O (+ the last cluster's compute) "
            f"-> {t['t_token'] * 1e3:.2f} ms = {plan.predicted_tok_s:.1f} tok/s")


def plan_dict(plan: Plan) -> dict:
    d = asdict(plan)
    d["terms"] = {k: float(v) for k, v in plan.terms.items()}
    return d
