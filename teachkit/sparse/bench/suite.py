"""Benchmark: sparse FFN kernels against the dense numpy FFN and the machine's bandwidth.

    python -m teachkit.sparse.bench [--quick] --json PATH          (also run by ``make bench``)

One run measures, on SYNTHETIC FFN layers (random weights at d=4096, d_ff=11008; see
``teachkit.sparse.model.synthetic``):

* the memory read bandwidth on 1 and 2 threads (``machine.measure_memory_bandwidth``), before
  and between the kernel blocks; the best of these is the bound, so the fraction errs low;
* the dense numpy FFN (three BLAS matvecs over every weight);
* numpy gather (``B[idx]`` copies the active bundles, then matvecs);
* the numba kernels (gather_dot, down_axpy, fused bundles, int8 bundles) at several activity
  levels, on 1 and 2 threads.

Each timed call uses the next (layer, token) pair, so consecutive calls touch different
weights and different active sets, and before every timed call an untimed read of a buffer
twice the last-level cache (capped at 1 GiB) evicts what earlier calls left there: the CPU
cache cannot serve a call from the previous one (hot neurons would otherwise stay cached,
which a real 32-layer model with GBs of weights per token does not allow). Times are medians.
Two headline figures, both on the same weights in the same run:

    kernel_speedup_at_10pct   = t(dense numpy FFN) / t(fused sparse FFN, oracle active set)
    kernel_bandwidth_fraction = (bytes the fused kernel must touch / its time) / BW_mem

at the same thread count (``headline_threads``), from ``headline_rounds`` short rounds that
each time bandwidth, dense and sparse back to back: the speedup is the median of the per-round
ratios (dense and sparse under the same load); the fraction is the median achieved rate over the
best bandwidth measured anywhere in the run, so a busy moment can only lower it.

The oracle active set of a token is every neuron whose gate pre-activation is positive; the
synthetic layers fire about 10% of them.
The other activity levels use each token's top-k neurons by gate pre-activation; for levels
above the layer's own activity some of them have h = 0, the kernel skips their down rows, and
the byte count below says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compute import kernels as K
from ..compute.bundles import quantize_int8
from ..planner.machine import (CacheFlusher, blas_threads, machine_info, measure_memory_bandwidth,
    median_seconds, numba_threads)
from ..model.synthetic import LABEL, SyntheticConfig, SyntheticStack

__all__ = ["run", "Settings", "Rotor", "dense_ffn", "numpy_gather_ffn", "main"]

LEVELS = (0.025, 0.05, 0.10, 0.20, 0.40)
GOALS = {"kernel_speedup_at_10pct": 8.0, "kernel_bandwidth_fraction": 0.7}


def dense_ffn(B: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Dense gated FFN with numpy/BLAS on views of the bundle array (same bytes as the kernels)."""
    g, u = B[:, 0] @ x, B[:, 1] @ x
    return B[:, 2].T @ (np.maximum(g, 0) * u)


def numpy_gather_ffn(B: np.ndarray, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The sparse FFN in plain numpy: fancy indexing copies the active bundles first."""
    b = B[idx]
    h = np.maximum(b[:, 0] @ x, 0) * (b[:, 1] @ x)
    return h @ b[:, 2]


class Rotor:
    """Calls ``fn(layer, token)`` on the next (layer, token) pair each time it is called: the layer
    changes on every call, the token after every layer has had it."""

    def __init__(self, n_layers: int, n_tokens: int, fn):
        self.pairs = [(t % n_tokens, l) for t in range(n_tokens) for l in range(n_layers)]
        self.fn, self.i = fn, 0

    def __call__(self):
        t, l = self.pairs[self.i % len(self.pairs)]
        self.i += 1
        self.fn(l, t)


@dataclass
class Settings:
    """One run of the kernel benchmark (see :func:`run` for the defaults)."""
    threads: tuple                 # thread counts the kernel table is timed at
    headline_threads: int          # the thread count of the two headline figures
    n_tokens: int                  # tokens per layer: each timed call takes the next (layer, token) pair
    repeats: int                   # timed calls per median
    bw_bytes: int                  # the buffer memory bandwidth is measured on
    headline_rounds: int           # short rounds whose medians are the headline figures
    log: Callable = print          # where the progress lines go


@dataclass
class Layers:
    """The synthetic layers and what the timed calls read, per layer."""
    stack: SyntheticStack
    X: list                        # (n_tokens, d) hidden states
    pre: list                      # (n_tokens, d_ff) gate pre-activations
    oracle: list                   # per token: the neurons whose gate pre-activation is positive
    q8: list                       # the int8 bundles and their scales
    flat: list                     # (3 d_ff, d): row 3i+m = matrix m of neuron i
    out: np.ndarray                # (d,) the output every kernel adds into


def _time(s: Settings, layers: Layers, fn, repeats, flush):
    return median_seconds(Rotor(layers.stack.cfg.n_layers, s.n_tokens, fn), repeats=repeats, warmup=2,
                          before=flush)


def _topk_sets(pre: np.ndarray, k: int) -> list[np.ndarray]:
    return [np.sort(np.argpartition(-row, k - 1)[:k]).astype(np.int64) for row in pre]


def run(quick: bool = False, threads=(1, 2), headline_threads: int = 1, log=print,
        cfg: SyntheticConfig | None = None, n_tokens: int | None = None,
        repeats: int | None = None, bw_bytes: int | None = None,
        flush_bytes: int | None = None, headline_rounds: int = 5) -> dict:
    """Run the benchmark; return the JSON-ready result dict.

    The defaults are the benchmark sizes; the keyword overrides exist for a small smoke test.
    """
    if headline_threads not in threads:
        raise ValueError(f"headline_threads={headline_threads} is not among threads={threads}")
    cfg = cfg or SyntheticConfig(n_layers=2 if quick else 4)
    if not cfg.gated:
        raise ValueError("the benchmark times gated [gate|up|down] bundles: use gated=True")
    s = Settings(threads, headline_threads, n_tokens or (8 if quick else 16), repeats or (9 if quick else 21),
                 bw_bytes or ((512 << 20) if quick else (1 << 30)), headline_rounds, log)
    res = {"label": f"{LABEL} FFN layers (random weights, not a trained model)",
           "quick": quick, "machine": machine_info(), "started_utc": time.strftime(
               "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    log("measuring memory bandwidth ...")
    bw_runs = {t: [measure_memory_bandwidth(t, s.bw_bytes)] for t in threads}
    log("  " + ", ".join(f"{t} thread(s): {v[0] / 1e9:.1f} GB/s" for t, v in bw_runs.items()))
    layers = build_layers(s, cfg, res)
    flush = CacheFlusher(flush_bytes)
    res["cache_flush_MiB"] = flush.buf.nbytes >> 20
    res.update(check_oracle(s, layers))
    rows, dense_ms = kernel_table(s, layers, flush, bw_runs)
    # the bound uses the best bandwidth seen in the run, which keeps the fraction conservative
    bw = {t: max(v) for t, v in bw_runs.items()}
    res["bandwidth_GBps"] = {str(t): round(v / 1e9, 2) for t, v in bw.items()}
    res["bandwidth_runs_GBps"] = {str(t): [round(x / 1e9, 2) for x in v] for t, v in bw_runs.items()}
    for r in rows:
        r["bandwidth_fraction"] = round(r["bytes_touched"] / (r["median_ms"] / 1e3) / bw[r["threads"]], 3)
    res["dense_numpy_ffn_ms"] = dense_ms
    res["kernels"] = rows
    head = next(r for r in rows if r["kernel"] == "numba_fused_bundled"
                and r["level"] == "oracle" and r["threads"] == headline_threads)
    res["headline_threads"] = headline_threads
    res["headline_activity"] = head["activity"]
    res.update(headline(s, layers, flush, head, bw[headline_threads]))
    res["load_avg_1min_end"] = machine_info()["load_avg_1min"]
    res["goals"] = {k: {"goal": v, "measured": res[k], "met": bool(res[k] >= v)}
                    for k, v in GOALS.items()}
    over = [r for r in rows if r["bandwidth_fraction"] > 1.0 and r["kernel"] != "numpy_gather_ffn"]
    if over:
        res["warning"] = (f"{len(over)} kernel timings exceed the best measured bandwidth: the "
                          "bandwidth runs were slowed by other load (or data came from cache); "
                          "rerun on a quiet machine before quoting bandwidth fractions")
        log("WARNING: " + res["warning"])
    return res


def build_layers(s: Settings, cfg: SyntheticConfig, res: dict) -> Layers:
    """The synthetic stack and each layer's hidden states, pre-activations, oracle sets, int8 bundles;
    the stack's description goes into ``res``."""
    s.log("building the synthetic stack ...")
    stack = SyntheticStack(cfg)
    s.log("  " + stack.describe())
    res["synthetic"] = stack.config()
    res["synthetic_description"] = stack.describe()
    X = [stack.hidden_states(l, s.n_tokens, seed=1) for l in range(cfg.n_layers)]
    pre = [stack.preactivations(l, X[l]) for l in range(cfg.n_layers)]
    oracle = [[np.flatnonzero(row > 0).astype(np.int64) for row in p] for p in pre]
    q8 = [quantize_int8(B) for B in stack.bundles]
    flat = [B.reshape(-1, cfg.d) for B in stack.bundles]
    return Layers(stack, X, pre, oracle, q8, flat, np.zeros(cfg.d, np.float32))


def check_oracle(s: Settings, layers: Layers) -> dict:
    """Correctness first: the oracle sparse FFN equals the dense FFN on this run's data."""
    stack, X, oracle, d = layers.stack, layers.X, layers.oracle, layers.stack.cfg.d
    errs = []
    for l in range(stack.cfg.n_layers):
        y = K.sparse_ffn_bundled(stack.bundles[l], oracle[l][0], X[l][0], np.zeros(d, np.float32),
                                 gated=True)
        ref = dense_ffn(stack.bundles[l], X[l][0])
        errs.append(float(np.abs(y - ref).max() / (np.abs(ref).max() + 1e-30)))
    activity = float(np.mean([len(i) for o in oracle for i in o]) / stack.cfg.d_ff)
    s.log(f"  oracle activity {activity:.3f}, sparse vs dense max rel err {max(errs):.2e}")
    return {"oracle_vs_dense_max_rel_err": float(f"{max(errs):.3g}"), "oracle_activity": round(activity, 4)}


def kernel_table(s: Settings, layers: Layers, flush, bw_runs: dict) -> tuple[list, dict]:
    """Every kernel at every activity level and thread count, beside the dense FFN at that thread
    count. Memory bandwidth is measured again after each level (appended to ``bw_runs``).
    Returns the table's rows and the dense FFN's ms by thread count."""
    rows, dense_ms = [], {}
    for th in s.threads:
        with blas_threads(th) as blas_n, numba_threads(th):
            t_dense = _time(s, layers, lambda l, t: dense_ffn(layers.stack.bundles[l], layers.X[l][t]),
                            s.repeats, flush)
            dense_ms[str(th)] = round(t_dense * 1e3, 3)
            s.log(f"dense numpy FFN, {th} thread(s) (BLAS threads {blas_n}): {t_dense * 1e3:.2f} ms"
                  f" ({layers.stack.bundles[0].nbytes / t_dense / 1e9:.1f} GB/s)")
            for level in ("oracle",) + LEVELS:
                rows += _level_rows(s, layers, flush, th, level, t_dense)
                # again between levels: on a shared machine one measurement can hit a busy moment
                bw_runs[th].append(measure_memory_bandwidth(th, s.bw_bytes, repeats=3))
        s.log(f"  {th} thread(s): bandwidth measurements (GB/s) "
              + " ".join(f"{v / 1e9:.1f}" for v in bw_runs[th]))
    return rows, dense_ms


def _level_rows(s: Settings, layers: Layers, flush, th: int, level, t_dense: float) -> list[dict]:
    """The kernels timed on one activity level (``"oracle"``, or each token's top fraction ``level``)."""
    d_ff = layers.stack.cfg.d_ff
    if level == "oracle":
        sets = layers.oracle
    else:
        k = max(1, int(round(level * d_ff)))
        sets = [_topk_sets(p, k) for p in layers.pre]
    n_act = float(np.mean([len(i) for ts in sets for i in ts]))
    n_pos = float(np.mean([(p[t][st[t]] > 0).sum() for p, st in zip(layers.pre, sets)
                           for t in range(s.n_tokens)]))
    rows = []
    for name, (fn, nbytes) in _kernel_calls(layers, sets, n_act, n_pos).items():
        sec = _time(s, layers, fn, s.repeats, flush)
        rows.append({"workload": LABEL, "kernel": name, "threads": th, "level": level,
                     "activity": round(n_act / d_ff, 4),
                     "median_ms": round(sec * 1e3, 4),
                     "bytes_touched": int(nbytes), "GBps": round(nbytes / sec / 1e9, 2),
                     "speedup_vs_dense": round(t_dense / sec, 2)})
    fused = rows[0]
    s.log(f"  {th}t {str(level):>6} ({n_act / d_ff:5.1%}): fused {fused['median_ms']:.2f}"
          f" ms = {fused['speedup_vs_dense']:.1f}x dense, {fused['GBps']:.1f} GB/s; int8 "
          f"{rows[1]['median_ms']:.2f} ms; numpy gather {rows[-1]['median_ms']:.2f} ms")
    return rows


def _kernel_calls(layers: Layers, sets: list, n_act: float, n_pos: float) -> dict:
    """Each kernel as ``(fn(layer, token), bytes it must touch)`` on the active sets ``sets``.

    ``n_act``: mean active neurons per call; ``n_pos``: mean of them with h > 0 (whose down row
    the fused kernels read).
    """
    B, X, q8, flat, out = layers.stack.bundles, layers.X, layers.q8, layers.flat, layers.out
    row_b = layers.stack.cfg.d * 4
    d8 = layers.stack.cfg.d
    return {
        "numba_fused_bundled": (
            lambda l, t: K.sparse_ffn_bundled(B[l], sets[l][t], X[l][t], out, True),
            n_act * 2 * row_b + n_pos * row_b),
        "numba_fused_bundled_int8": (
            lambda l, t: K.sparse_ffn_bundled_int8(q8[l][0], q8[l][1], sets[l][t], X[l][t], out, True),
            n_act * 2 * d8 + n_pos * d8),
        "numba_gather_dot_gate": (
            lambda l, t: K.gather_dot(flat[l], 3 * sets[l][t], X[l][t], np.empty(len(sets[l][t]), np.float32)),
            n_act * row_b),
        "numba_down_axpy": (
            lambda l, t: K.down_axpy(flat[l], 3 * sets[l][t] + 2, np.ones(len(sets[l][t]), np.float32), out),
            n_act * row_b),
        "numpy_gather_ffn": (
            lambda l, t: numpy_gather_ffn(B[l], sets[l][t], X[l][t]),
            n_act * 3 * row_b),
    }


def headline(s: Settings, layers: Layers, flush, head: dict, bw_best: float) -> dict:
    """The two headline figures, measured again in several short rounds.

    Each round times bandwidth, dense and sparse back to back, so all three see the same machine
    load; the figures are the medians over rounds of the per-round ratios. ``head``: the kernel
    table's fused oracle row at the headline thread count; ``bw_best``: the best bandwidth the
    run measured at that thread count.
    """
    th, B, X, oracle, out = s.headline_threads, layers.stack.bundles, layers.X, layers.oracle, layers.out
    s.log(f"headline rounds ({th} thread(s), oracle active sets) ...")
    fused_fn = lambda l, t: K.sparse_ffn_bundled(B[l], oracle[l][t], X[l][t], out, True)  # noqa: E731
    dense_fn = lambda l, t: dense_ffn(B[l], X[l][t])  # noqa: E731
    rounds = []
    with blas_threads(th), numba_threads(th):
        for _ in range(s.headline_rounds):
            b = measure_memory_bandwidth(th, s.bw_bytes, repeats=3)
            td = _time(s, layers, dense_fn, 5, flush)
            ts = _time(s, layers, fused_fn, s.repeats, flush)
            rounds.append({"bandwidth_GBps": round(b / 1e9, 2), "dense_ms": round(td * 1e3, 3),
                           "fused_ms": round(ts * 1e3, 4), "speedup": round(td / ts, 2),
                           "fused_GBps": round(head["bytes_touched"] / ts / 1e9, 2)})
            s.log(f"  bandwidth {b / 1e9:.1f} GB/s, dense {td * 1e3:.2f} ms, fused {ts * 1e3:.2f} ms"
                  f" ({rounds[-1]['fused_GBps']:.1f} GB/s) -> {td / ts:.1f}x")
    # achieved rate (median over rounds) over the best bandwidth seen anywhere in the run: a
    # busy moment can only lower this figure, never raise it
    best = max([bw_best] + [r["bandwidth_GBps"] * 1e9 for r in rounds])
    achieved = float(np.median([head["bytes_touched"] / (r["fused_ms"] / 1e3) for r in rounds]))
    return {"headline_rounds": rounds, "kernel_speedup_at_10pct": float(np.median([r["speedup"] for r in rounds])),
            "headline_bandwidth_GBps": round(best / 1e9, 2), "headline_achieved_GBps": round(achieved / 1e9, 2),
            "kernel_bandwidth_fraction": round(achieved / best, 3)}


def _engine(quick: bool, res: dict, log) -> tuple[dict | None, bool]:
    try:
        from . import engine as bench_engine
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith("bench.engine"):
            return None, True
        raise
    profile = {"bandwidth_Bps": {int(k): v * 1e9 for k, v in res["bandwidth_GBps"].items()},
               "machine": res["machine"]}
    log("running the engine benchmark (teachkit.sparse.bench.engine) ...")
    try:
        return bench_engine.run(quick, profile), True
    except Exception as err:  # noqa: BLE001 - keep the kernel results, report the failure
        log(f"engine benchmark failed: {err!r}")
        return {"error": repr(err), "traceback": traceback.format_exc()[-2000:]}, False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer layers, tokens and repeats")
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--no-engine", action="store_true", help="skip the engine benchmark")
    args = ap.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    res = run(quick=args.quick, log=log)
    ok = True
    if not args.no_engine:
        engine, ok = _engine(args.quick, res, log)
        if engine is not None:
            res["engine"] = engine
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1, default=float) + "\n")
    log(f"{res['label']}")
    for k, g in res["goals"].items():
        log(f"{k} = {g['measured']} (goal >= {g['goal']}: {'met' if g['met'] else 'MISSED'})")
    log(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
