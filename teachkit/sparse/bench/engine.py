"""Engine benchmark: the sparse flash engine against its baselines, in one run, same everything.

``run(quick, profile)`` is called by ``python -m teachkit.sparse.bench`` and its result goes
under the ``engine`` key; ``python -m teachkit.sparse.bench.engine [--quick] --json PATH``
runs it alone.

All engines get the same memory budget (FFN = 2x budget), the same tokens and the same
flash files, in a temp dir. The workload (SYNTHETIC, with **oracle active sets**) and the
timing are described in :mod:`teachkit.sparse.bench.workload`; the bounds, goals and records
the speeds are put beside in :mod:`teachkit.sparse.bench.report`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..baselines.dense import DenseMmap, DenseRAM, DenseStream, read_ahead_bytes
from ..baselines.sparse import LLMFlash, NoCacheSparse
from .report import (GOALS, goal_ceilings, goal_ratios, lookahead_quality, machine_record, measured_depths,
    physical_bounds, repeated, stream_figures)
from .workload import (TracePredictor, Workload, cold_hit_rate, disk_read_bytes, fused_parallel_is_faster,
    io_path_record, round_floats, run_backend, run_interleaved, time_token)
from ..runtime.cache import neuron_hit_rate
from ..flash import platform_io
from ..runtime.engine import EngineConfig, SparseFFN
from ..planner.io_profile import burst_profile, profile_reads
from ..planner.machine import measure_memory_bandwidth
from ..planner.plan import (MachineProfile, Plan, calibrate_layer_overhead, choose_plan, explain, fit_submit_cost,
    kernel_bandwidth, plan_dict, predict, unit_overhead)
from ..model.synthetic import LABEL, SyntheticConfig

__all__ = ["run", "Settings", "TracePredictor", "Workload", "run_backend", "disk_read_bytes"]


LLM_FLASH_THREADS = 32     # our baseline's pread threads: the paper's implementation reads over 32 threads (arXiv:2312.11514v3, §4.1)


# Layers share a residual stream (model.synthetic): with coupling c = 0.8, layer l+1's predictor
# applied to layer l's input finds about 0.64 of layer l+1's active neurons with precision about 0.64
# at d=1024, d_ff=4096 (c = 0.9: about 0.70/0.70). On the trained LM of notebook 14 the same look-ahead
# finds 0.54-0.83 recall and 0.11-0.85 precision by layer (means 0.69/0.53): c = 0.8 puts the
# synthetic stack inside that range.
LAYER_COUPLING = 0.8

KV_BYTES = 0               # the synthetic workload has no KV cache


@dataclass
class Settings:
    """One run of the engine benchmark: what it builds, how many tokens it decodes, where it writes."""
    cfg: SyntheticConfig           # the SYNTHETIC stack: shape, activity, layer coupling
    n_warm: int                    # tokens every engine decodes before the timed ones
    n_time: int                    # tokens timed
    n_profile: int                 # tokens of the held-out profiling run the planner learns from
    sweep: tuple                   # the budget sweep's budgets, as fractions of the FFN
    workdir: Path                  # where the flash files go
    quick: bool = False            # fewer reads per read size x queue depth in the I/O profile
    log: Callable = print          # where the progress lines go


def run(quick: bool = False, profile: dict | None = None, log=print, workdir=None, shape: dict | None = None,
        tokens: tuple | None = None, sweep=None) -> dict:
    """The engine section of the benchmark (see module docstring).

    ``profile`` may carry ``bandwidth_Bps`` ({threads: B/s}) and ``io`` (a :func:`profile_reads`
    result) measured already. ``shape``/``tokens``/``sweep`` shrink the run for a notebook:
    ``shape=dict(d=512, d_ff=2048, n_layers=4)``, ``tokens=(warm-up, timed, profiling)``.
    """
    shape = {"d": 1024, "d_ff": 4096, "n_layers": 4 if quick else 8, **(shape or {})}
    cfg = SyntheticConfig(activity=0.10, seed=0, layer_coupling=LAYER_COUPLING, **shape)
    n_warm, n_time, n_profile = tokens or ((6, 10, 64) if quick else (10, 24, 128))
    sweep = sweep or ((0.3, 0.5, 0.75) if quick else (0.3, 0.4, 0.5, 0.75, 1.0))
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="teachkit_engine_")) if own else Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(Settings(cfg, n_warm, n_time, n_profile, sweep, workdir, quick, log), profile or {})
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def calibrate(w: Workload, plan: Plan, machine: MachineProfile, n_tokens: int = 8) -> tuple[MachineProfile, list]:
    """The planner's two software costs, from one run of the planned engine with the whole FFN in memory.

    * **Submitting reads** (``submit_call``, ``submit_read``): on the first pass over ``n_tokens``
      tokens the cache is still filling, so layers read their misses; each layer's ``submit`` time
      (the engine's trace) beside its number of reads is fitted by
      :func:`~teachkit.sparse.planner.plan.fit_submit_cost`.
    * **Everything else per layer** (``layer_overhead``): the same tokens again, now nothing is
      read; what their median time exceeds the model's, per layer
      (:func:`~teachkit.sparse.planner.plan.calibrate_layer_overhead`).

    Returns ``machine`` with the three constants set, and the ``(reads, seconds)`` of each
    submit of the first pass.
    """
    spec = w.spec
    model = predict(spec, w.profile, replace(machine, layer_overhead=0.0), w.fixed_bytes, plan.hot_neurons, 0,
                    plan.cluster_size, plan.read_unit, io_depth=plan.io_depth, hit_rate=1.0)
    ecfg = EngineConfig(budget=w.fixed_bytes + spec.ffn_bytes + spec.ffn_bytes // 4, hot_neurons=plan.hot_neurons,
                        cluster_size=plan.cluster_size, read_unit=plan.read_unit, prefill_chunk=64,
                        io_depth=plan.io_depth)
    with SparseFFN(w.path, ecfg, w.predictor, gated=True, fixed=w.fixed, freq=w.profile.freq, verify=False) as eng:
        submits = _first_pass_submits(w, eng, range(n_tokens))
        c_layer = calibrate_layer_overhead(lambda t: time_token(w, eng, t), range(n_tokens), model["t_token"],
                                           spec.n_layers)
    s_call, s_read = fit_submit_cost(*zip(*submits), max(plan.io_depth, plan.cluster_size)) if submits else (0.0, 0.0)
    return replace(machine, layer_overhead=c_layer, submit_call=s_call, submit_read=s_read), submits


def _first_pass_submits(w: Workload, eng, tokens) -> list:
    """Decode ``tokens`` with :func:`time_token`; for each layer that read anything, the number
    of its reads and the seconds its ``submit`` took on the compute thread."""
    submits, reads_before = [], [eng.n_reads]

    def record(layer, t, y):                 # after each layer's FFN: its reads and submit, then a clean trace
        if eng.n_reads > reads_before[0]:
            submits.append((eng.n_reads - reads_before[0], eng.trace.busy("compute", {"submit"})))
        reads_before[0] = eng.n_reads
        eng.trace.clear()

    eng.trace.clear()
    for t in tokens:
        time_token(w, eng, t, check=record)
    return submits


def _run(s: Settings, profile: dict) -> dict:
    """Profile, plan, decode with every engine, then put the speeds beside their bounds and goals."""
    s.log(f"engine bench: building the {LABEL} workload in {s.workdir} ...")
    w = Workload(s.cfg, s.n_warm + s.n_time, s.n_profile, s.workdir)
    budget = w.spec.ffn_bytes // 2
    s.log(f"  FFN {w.spec.ffn_bytes / 2**20:.0f} MiB on flash, budget {budget / 2**20:.0f} MiB (fixed region "
          f"{w.fixed_bytes / 2**20:.0f} MiB), activity {w.profile.mean_active / w.spec.n_neurons:.3f}")
    machine, bw = profile_machine(s, w, profile, budget)
    plan, machine = plan_engine(s, w, machine, budget)
    flash_parallel = fused_parallel_is_faster(w)
    s.log(f"  LLM-in-a-flash compute on {'both cores' if flash_parallel else 'one core'} (the faster, measured)")
    results, sweep, ring = run_backends(s, w, machine, plan, budget, flash_parallel)
    bound = physical_bounds(w, machine, plan, results["+pipeline"], budget)
    stream_figures(results["dense_stream_tuned"], ring, machine.io, s.log)
    ratios = goal_ratios(results, bound, plan)
    res = {**setup_record(s, w, budget), **machine_record(machine, bw, flash_parallel),
           "planner": plan_dict(plan), "configs": results,
           "ablation": [{"step": k, "tok_s": results[k]["tok_s"]} for k in
                        ("sparse_flash", "+bundle", "+cache", "+pipeline(matrix)", "+pipeline")],
           "budget_sweep": sweep,
           "lookahead": {**lookahead_quality(w), "layer_coupling": s.cfg.layer_coupling},
           "bound": bound, "ratios": ratios,
           "goals": {k: {"goal": g, "measured": ratios[k], "met": bool(ratios[k] >= g)} for k, g in GOALS.items()},
           "load_avg_1min": platform_io.load_average(), "cpus": os.cpu_count()}
    res["ceilings"] = goal_ceilings(res)
    res["io_path"] = io_path_record(machine.io)          # which I/O ran, and whether t_io is a disk figure
    res["bound"]["t_io_is"] = res["io_path"]["bound_is"]
    return round_floats(res)


# --------------------------------------------------------------------------- profile
def profile_machine(s: Settings, w: Workload, profile: dict, budget: int) -> tuple[MachineProfile, dict]:
    """What the planner needs of this machine, measured on the workload's sizes and file.

    Memory bandwidth on 1 and 2 threads, random reads by size and queue depth on the bundled
    file and the time of a burst of them, the kernels' speeds on a table as large as ``budget``,
    the fixed cost of a work unit. What ``profile`` already holds is not measured again.
    Returns the machine profile (``layer_overhead`` not yet calibrated) and the memory
    bandwidth by thread count.
    """
    bw = {int(k): float(v) for k, v in (profile.get("bandwidth_Bps") or {}).items()}
    for threads in (1, 2):
        if threads not in bw:
            bw[threads] = measure_memory_bandwidth(threads, 512 << 20)
    bw_mem = max(bw[1], bw[2])    # what the machine streams at best: attention and predictor use both cores
    io = profile.get("io")
    if io is None:
        s.log("  profiling reads (O_DIRECT, random, by size x queue depth) on the bundled file ...")
        io = profile_reads(sizes=(4096, 16384, 65536, 1 << 20), qds=(1, 4, 8, 16, 32, 64, 128),
                           n_reads=48 if s.quick else 128, path=w.path)
    if "burst" not in io:
        io = {**io, "burst": burst_profile(w.spec.stride, w.path)}
    burst = io["burst"]
    s.log(f"  a burst of k reads of {w.spec.stride} B: " + ", ".join(f"{k}: {t * 1e3:.2f} ms" for k, t in
                                                               zip(burst["k"], burst["seconds"]))
          + f" -> {burst['a'] * 1e6:.0f} us + {burst['b'] * 1e6:.1f} us per read")
    d, n, n_act = s.cfg.d, s.cfg.d_ff, int(w.profile.mean_active)
    bw_kernel = kernel_bandwidth(d=d, n=n, n_act=n_act, table_bytes=budget)
    bw_fused = kernel_bandwidth(d=d, n=n, n_act=n_act, table_bytes=budget, fused=True)
    c_unit = unit_overhead(d)
    s.log(f"  sparse kernels on a {budget / 2**20:.0f} MiB table: stages {bw_kernel / 1e9:.1f} GB/s (one core), "
          f"fused {bw_fused / 1e9:.1f} GB/s (both cores); {c_unit * 1e6:.1f} us per work unit")
    return MachineProfile(io=io, bw_mem=bw_mem, bw_kernel=bw_kernel, bw_fused=bw_fused, unit_overhead=c_unit), bw


def plan_engine(s: Settings, w: Workload, machine: MachineProfile, budget: int) -> tuple[Plan, MachineProfile]:
    """The plan for ``budget``: chosen once, its engine run all in memory to calibrate the per-layer
    overhead and the cost of submitting reads (:func:`calibrate`), then chosen again with them.
    Returns the plan and the calibrated machine profile."""
    plan = choose_plan(w.spec, w.profile, machine, budget, w.fixed_bytes, KV_BYTES, io_depth=_depth_choices(machine))
    machine, _ = calibrate(w, plan, machine)
    s.log(f"  calibrated on an all-in-memory run: {machine.layer_overhead * 1e6:.0f} us per layer the cost model "
          f"leaves out; submitting a layer's reads {machine.submit_call * 1e6:.0f} us + "
          f"{machine.submit_read * 1e6:.1f} us per read")
    plan = choose_plan(w.spec, w.profile, machine, budget, w.fixed_bytes, KV_BYTES, io_depth=_depth_choices(machine))
    s.log("  " + explain(plan).replace("\n", "\n  "))
    return plan, machine


def _depth_choices(machine: MachineProfile) -> tuple:
    """Reads in flight the planner may choose: 1, 2 and every measured queue depth."""
    return tuple(sorted({1, 2} | set(measured_depths(machine.io))))


# --------------------------------------------------------------------------- backends
def _planned_engine(w: Workload, plan: Plan, budget: int, schedule: str = "cluster", lookahead: bool = False):
    ecfg = EngineConfig(budget=budget, hot_neurons=plan.hot_neurons, cluster_size=plan.cluster_size,
                        schedule=schedule, read_unit=plan.read_unit, prefill_chunk=64, io_depth=plan.io_depth,
                        lookahead=lookahead)
    return SparseFFN(w.path, ecfg, w.predictor, gated=True, fixed=w.fixed, freq=w.profile.freq, verify=False)


def _engine_factories(w: Workload, plan: Plan, budget: int, dense: DenseRAM, flash_parallel: bool) -> dict:
    """Every engine of the comparison, by name, as a function that builds it."""
    cache_budget = budget - w.fixed_bytes
    max_act = max(len(s) for ls in w.sets for s in ls)
    # the reads in flight the planned engine really runs (its staging rows hold a whole cluster):
    # the AIO baselines get as many, so an ablation step changes one thing only
    depth = max(plan.io_depth, plan.cluster_size)
    # order: the stream's ring refill overlaps dense_ram, which reads no disk; +look-ahead is measured
    # beside the ladder, not on it
    return {
        "dense_mmap": lambda: DenseMmap(w.dense_path, cache_budget, True),
        "dense_stream_tuned": lambda: DenseStream(w.dense_path, cache_budget, True, chunk_bytes=4 << 20,
                                                  io_threads=2),
        "dense_ram": lambda: dense,
        "llm_in_a_flash": lambda: LLMFlash(w.path, w.predictor, True, cache_budget, window=5,
                                           parallel=flash_parallel, io_threads=LLM_FLASH_THREADS),
        "llm_in_a_flash(aio)": lambda: LLMFlash(w.path, w.predictor, True, cache_budget, window=5,
                                                parallel=flash_parallel, io_depth=depth),
        "sparse_flash": lambda: NoCacheSparse(w.matrix_path, w.predictor, True, max_act, io_depth=depth),
        "+bundle": lambda: NoCacheSparse(w.path, w.predictor, True, max_act, io_depth=depth),
        "+cache": lambda: _planned_engine(w, plan, budget, "serial"),
        "+pipeline(matrix)": lambda: _planned_engine(w, plan, budget, "matrix"),
        "+pipeline": lambda: _planned_engine(w, plan, budget, "cluster"),
        "+look-ahead": lambda: _planned_engine(w, plan, budget, "cluster", lookahead=True),
    }


def _check_against(dense: DenseRAM, w: Workload):
    """A check of an engine's FFN outputs against ``dense``, and the list holding its worst relative error."""
    worst = [0.0]

    def check(l, t, y):
        ref = dense(l, w.X[l][t])
        worst[0] = max(worst[0], float(np.abs(y - ref).max() / (np.abs(ref).max() + 1e-30)))
    return check, worst


def _add_sweep(s: Settings, w: Workload, machine: MachineProfile, backends: dict) -> dict:
    """The planned engine at each budget of the sweep, added to ``backends`` as ``sweep_<fraction>``.
    Returns each fraction's plan, or why no plan fits it."""
    plans = {}
    for frac in s.sweep:
        b = int(w.spec.ffn_bytes * frac)
        try:
            p = choose_plan(w.spec, w.profile, machine, b, w.fixed_bytes, KV_BYTES, io_depth=_depth_choices(machine))
            backends[f"sweep_{frac}"] = _planned_engine(w, p, b)
            plans[frac] = p
        except ValueError as err:
            plans[frac] = str(err)
    return plans


def run_backends(s: Settings, w: Workload, machine: MachineProfile, plan: Plan, budget: int,
                 flash_parallel: bool) -> tuple[dict, list, int]:
    """Build every engine and the sweep's, decode the same tokens with all of them interleaved.

    Returns the engines' results by name, the budget sweep's, and the bytes the dense stream's
    ring refills between its own tokens (see :func:`stream_figures`).
    """
    dense = DenseRAM(w.stack.bundles, True)
    factories = _engine_factories(w, plan, budget, dense, flash_parallel)
    backends = {k: make() for k, make in factories.items()}
    checks, worst = {}, {}
    for name in backends:
        checks[name], worst[name] = _check_against(dense, w)
    sweep_plans = _add_sweep(s, w, machine, backends)
    s.log(f"  decoding {s.n_warm} warm-up + {s.n_time} timed tokens, the {len(backends)} engines interleaved ...")
    try:
        measured = run_interleaved(w, backends, s.n_warm, s.n_time, checks, s.log)
    finally:
        for bk in backends.values():
            bk.close()
    results = {name: _engine_result(s, name, measured[name], backends[name], worst[name][0]) for name in factories}
    sweep = _sweep_results(s, measured, backends, sweep_plans)
    return results, sweep, getattr(backends["dense_stream_tuned"], "ring_bytes", 0)


def _engine_result(s: Settings, name: str, r: dict, bk, worst: float) -> dict:
    """One engine's timing ``r`` with its error against dense, hit rates, resident bytes, look-ahead counts."""
    r["max_rel_err_vs_dense"] = worst
    st = bk.stats() if hasattr(bk, "stats") else {}
    r.update({k: v for k, v in st.items() if k.startswith("hit_rate")})
    r["resident_bytes"] = getattr(bk, "resident_bytes", None) or \
        (bk.cache.bytes_total if hasattr(bk, "cache") else None)
    r.update(budget_record(bk))
    if hasattr(bk, "cache"):
        hist = bk.cache.history[s.n_warm:]
        r["hit_rate_cold_timed"] = cold_hit_rate(hist)
        r["hit_rate_timed"] = neuron_hit_rate(hist)      # the replay's measure (a look-ahead's hits count)
        if bk.cfg.lookahead:
            r["prefetched_per_token"] = sum(h["prefetched"] for h in hist) / len(hist)
            r["prefetch_hits_per_token"] = sum(h["prefetch_hits"] for h in hist) / len(hist)
            r["prefetch_precision"] = r["prefetch_hits_per_token"] / max(1e-9, r["prefetched_per_token"])
    s.log(f"  {name:>20}: {r['tok_s']:7.2f} tok/s, {r['bytes_read_per_token'] / 2**20:7.2f} MiB read/token, "
          f"max rel err vs dense {worst:.1e}")
    return r


def budget_record(bk) -> dict:
    """Where a baseline's budget went, for the engines that split it: the dense stream's pinned
    neurons and ring of read buffers; the mmap engine's accounted pages, the room it keeps for
    the kernel's readahead and that readahead window; LLM in a flash's window of neurons and
    its readers' staging buffers; the planned engine's hot and cold regions and its buffers and
    tables (staging, prefill, cache tables; not the predictor or KV cache, which the workload's
    ``fixed_bytes`` holds), so that for it buffers + hot + cold <= budget - fixed_bytes."""
    if isinstance(bk, DenseStream):
        return {"pinned_bytes": sum(b.nbytes for b in bk.pinned), "ring_bytes": bk.ring_bytes}
    if isinstance(bk, DenseMmap):
        return {"budget_bytes": bk.budget, "readahead_reserve_bytes": bk.reserve,
                "read_ahead_bytes": read_ahead_bytes(bk.flash.path), "peak_accounted_bytes": bk.peak_resident}
    if isinstance(bk, LLMFlash):
        return {"window_bytes": bk.W.nbytes, "staging_bytes": bk.io.staging_bytes}
    if isinstance(bk, SparseFFN):
        regions = bk.cache.region_bytes()
        # the cache's "other" also holds the predictor and the KV cache, which Workload.fixed_bytes
        # already counts: only the engine's own buffers (staging, prefill) and its tables are left here
        held = bk.kv_bytes + bk.predictor.nbytes - bk.outside_budget
        return {"hot_bytes": regions["hot"], "cold_bytes": regions["cold"],
                "buffers_bytes": regions["tables"] + regions["other"] - held,
                "unused_bytes": regions["budget"] - bk.cache.bytes_total}     # less than one slot
    return {}


def _sweep_results(s: Settings, measured: dict, backends: dict, plans: dict) -> list:
    """Each budget of the sweep: measured speed and hit rates beside the plan's predictions."""
    sweep = []
    for frac, p in plans.items():
        if isinstance(p, str):
            sweep.append({"budget_over_ffn": frac, "error": p})
            continue
        r = measured[f"sweep_{frac}"]
        r["hit_rate_cold"] = cold_hit_rate(backends[f"sweep_{frac}"].cache.history[s.n_warm:])
        r["hit_rate"] = neuron_hit_rate(backends[f"sweep_{frac}"].cache.history[s.n_warm:])
        r["budget_over_ffn"] = frac
        r["predicted_tok_s"] = p.predicted_tok_s
        r["plan"] = {"hot_neurons": p.hot_neurons, "cold_slots": p.cold_slots, "io_depth": p.io_depth,
                     "read_unit": p.read_unit, "cluster_size": p.cluster_size, "replayed_hit_rate": p.hit_rate}
        sweep.append(r)
        s.log(f"  budget {frac:.2f} x FFN: {r['tok_s']:.2f} tok/s (predicted {p.predicted_tok_s:.1f}), "
              f"hit rate {r['hit_rate']:.3f} (replayed {p.hit_rate:.3f}), read unit {p.read_unit}")
    return sweep


# --------------------------------------------------------------------------- summary
def setup_record(s: Settings, w: Workload, budget: int) -> dict:
    """What was run: the workload's label and shapes, the budget, the tokens."""
    spec, ffn = w.spec, w.spec.ffn_bytes
    return {"label": f"{LABEL} LLaMA-shaped FFN stack + synthetic attention/predictor weights "
                     "(random, not a trained model)",
            "quick": s.quick, "shapes": {"n_layers": s.cfg.n_layers, "d": s.cfg.d, "d_ff": s.cfg.d_ff, "gated": True,
                                         "dtype": "float32", "bundle_bytes": spec.bundle_bytes},
            "ffn_bytes": ffn, "budget_bytes": budget, "ffn_over_budget": ffn / budget,
            "fixed_bytes": w.fixed_bytes, "activity": w.profile.mean_active / spec.n_neurons,
            "tokens": {"warmup": s.n_warm, "timed": s.n_time}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="engine benchmark (sparse flash engine vs baselines)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", required=True)
    ap.add_argument("--repeats", type=int, default=3, help="independent runs; ratios are their medians")
    ap.add_argument("--workdir", default=None, help="where the temporary weight files go (default: a temp dir)")
    args = ap.parse_args(argv)
    runs = []
    for i in range(args.repeats):
        print(f"=== run {i + 1} of {args.repeats}", flush=True)
        runs.append(run(args.quick, None, log=lambda s: print(s, flush=True), workdir=args.workdir))
    res = repeated(runs)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    for k, g in res["goals"].items():
        print(f"{k} = {g['measured']} (goal >= {g['goal']}: {'met' if g['met'] else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
