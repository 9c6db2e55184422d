"""Build the showdown's stored runs: every method, several β, both tasks, one budget (``make data``).

    python -m teachkit.rlhf.showdown_data                 # both tasks (a few minutes on one core)
    python -m teachkit.rlhf.showdown_data length          # one task

Writes ``data/showdown_<task>.pt`` (a checksummed ``teachkit.artifacts`` file): the run records of
:func:`teachkit.rlhf.runner.run_method` plus ``meta`` (budget, the SFT start point, the pair coverage
and the off-policy learning-rate sweep of the length task, the configuration notebook 09 re-runs
live). Also tables and selections over records: :func:`summary_rows`, :func:`format_table`,
:func:`select_runs`, :func:`over_optimisation`, :func:`compare_records`. A method whose loop does not import
is stored as a ``missing`` record, never as numbers. Runs are seeded and deterministic under
``OMP_NUM_THREADS=1``, except their wall times, which are measurements.

The second task, ``length``: prompt ``k:`` asks for k letters. SFT mostly ignores k and writes about
two letters, so for k = 5 or 6 its samples, and the pairs built from them, rarely hold the optimum.
:func:`length_by_target` measures, per target k, how often a policy writes exactly k letters, and
:func:`pair_coverage` how often the training pairs' chosen completion does.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from .. import artifacts
from . import runner

__all__ = ["BUDGET", "EVAL_POINTS", "TASKS", "LIVE", "LR_SWEEP", "data_path", "load", "build", "length_by_target",
           "pair_coverage", "save_runs", "load_runs", "select_runs", "summary_rows", "format_table",
           "TABLE_COLUMNS", "over_optimisation", "compare_records", "RUNS_KIND", "RUNS_VERSION", "main"]

RUNS_KIND, RUNS_VERSION = "showdown-runs", 1
BUDGET = runner.Budget(labels=8192, pairs_per_query=1.0)
EVAL_POINTS = 12
TASKS = ("arithmetic", "length")
LIVE = {"task": "arithmetic", "method": "dpo", "beta": 1.0}
"""The configuration notebook 09 re-runs live and compares with its stored record: the β of DPO's row
in the summary table (its best-gold run), so the live run checks a row the notebook shows."""
LR_SWEEP = {"task": "length", "lrs": (1e-4, 3e-4), "methods": ("dpo", "dpop", "ipo", "simpo", "tdpo")}
"""The off-policy loops' default learning rates were tuned on arithmetic (1e-5 to 3e-5, the on-policy
loops use 3e-4). So that "offline fell short" on the length task is not just "offline took smaller
steps", these methods are also run there at their default β (``MethodSpec.default_beta``, a point of
their grid) with larger learning rates, up to the on-policy one (``meta["lr_sweep"]``)."""


def data_path(task: str):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return artifacts.path_for(f"showdown_{task}.pt")


def load(task: str) -> tuple[list[dict], dict]:
    """(records, meta) of one task; a missing or stale file says to run ``make data``."""
    return load_runs(data_path(task))


@torch.no_grad()
def length_by_target(world, policy, n: int = 64, seed: int = 0) -> dict[str, float]:
    """Length task: per target k, the fraction of n samples with exactly k letters (``exact_k<k>``)."""
    from ..toy.generate import generate

    task = world.task
    if task.name != "length":
        raise ValueError(f"length_by_target needs the length task, got {task.name!r}")
    out = {}
    g = torch.Generator().manual_seed(seed)
    for k in range(1, task.max_target + 1):
        prompts = task.prompts_for(torch.full((n,), k)).to(world.device)
        roll = generate(policy, prompts, task.max_new_tokens, generator=g)
        out[f"exact_k{k}"] = (task.lengths(roll.completions, roll.mask) == k).float().mean().item()
    return out


def pair_coverage(world, split: str = "train") -> dict[str, float]:
    """Length task: per target k, the fraction of pairs whose chosen completion has exactly k letters."""
    task, pairs = world.task, getattr(world.pairs, split)
    if task.name != "length":
        raise ValueError(f"pair_coverage needs the length task, got {task.name!r}")
    k = task.targets(pairs.prompts)
    n = task.lengths(pairs.chosen, pairs.chosen_mask)
    out = {}
    for target in range(1, task.max_target + 1):
        sel = k == target
        out[f"pairs_k{target}"] = float(sel.sum())
        out[f"chosen_exact_k{target}"] = (n[sel] == target).float().mean().item() if sel.any() else 0.0
    return out


def build(task: str, methods=None, betas: dict | None = None, budget: runner.Budget = BUDGET,
          verbose: bool = True, world=None) -> tuple[list[dict], dict]:
    """Train every available method at each of its β on ``task``; returns (records, meta).

    ``world`` defaults to the stored toy world of ``task`` (tests pass a small one).
    """
    from ..toy.world import load_world

    say = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    world = load_world(task) if world is None else world
    if world.task.name != task:
        raise ValueError(f"the world is for task {world.task.name!r}, not {task!r}")
    extra = length_by_target if task == "length" else None
    start = runner.run_reference(world)
    if extra is not None:
        start.update(extra(world, world.reference))
    available = runner.available_methods()
    records = []
    for method in (methods or list(runner.METHODS)):
        if available.get(method) is not None:
            say(f"  {task}: {method} is missing ({available[method]})")
            records.append(runner.missing_record(method, available[method], task))
            continue
        for beta in (betas or {}).get(method, runner.METHODS[method].betas):
            t0 = time.perf_counter()
            rec = runner.run_method(world, method, beta, budget, seed=0, eval_points=EVAL_POINTS,
                                    extra_eval=extra)
            records.append(rec)
            f = rec["final"]
            say(f"  {task}: {method:6s} β={beta:<5g} gold {f['gold_reward']:.3f} proxy "
                f"{f['proxy_reward']:+.3f} KL {f['kl_to_ref']:.3f} in {time.perf_counter() - t0:.1f} s",
                flush=True)
    sweep = []
    if task == LR_SWEEP["task"] and methods is None:
        for method in LR_SWEEP["methods"]:
            if available.get(method) is not None:
                continue
            beta = runner.METHODS[method].default_beta
            for lr in LR_SWEEP["lrs"]:
                rec = runner.run_method(world, method, beta, budget, seed=0, eval_points=EVAL_POINTS,
                                        extra_eval=extra, lr=lr)
                sweep.append(rec)
                f = rec["final"]
                say(f"  {task}: {method:6s} β={beta:<5g} lr={lr:g} gold {f['gold_reward']:.3f} "
                    f"KL {f['kl_to_ref']:.3f}", flush=True)
    meta = {"task": task, "budget_labels": budget.labels, "pairs_per_query": float(budget.pairs_per_query),
            "eval_points": EVAL_POINTS, "start": start, "live": dict(LIVE)}
    if task == "length":
        meta["pair_coverage"] = pair_coverage(world)
    if sweep:
        meta["lr_sweep"] = sweep
    return records, meta


# --------------------------------------------------------------------------- storage, selection, tables

TABLE_COLUMNS = [
    # (header, record path, format)
    ("method", "method", "{}"), ("family", "family", "{}"), ("β", "beta", "{:g}"),
    ("gold", "final.gold_reward", "{:.3f}"), ("proxy", "final.proxy_reward", "{:.3f}"),
    ("KL", "final.kl_to_ref", "{:.3f}"), ("labels", "costs.labels_used", "{:.0f}"),
    ("samples", "costs.samples_generated", "{:.0f}"), ("models", "costs.models_held", "{:.0f}"),
    ("trainable", "costs.trainable_params", "{:.0f}"), ("optim MB", "costs.optimizer_mb", "{:.2f}"),
    ("time s", "costs.wall_seconds", "{:.1f}"), ("peak MB", "costs.peak_memory_mb", "{:.0f}"),
]


def _get(record: dict, path: str):
    value = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def select_runs(records: list[dict], method: str | None = None, beta: float | None = None,
                task: str | None = None, knobs: dict | None = None) -> list[dict]:
    """Finished runs matching every given field (β and knob values compared to 1e-9).

    ``knobs`` uses the runner's knob names (``clip_eps``, ``group_size``, ...); a run matches when
    its stored config has those values.
    """
    out = []
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        if method is not None and r["method"] != method:
            continue
        if task is not None and r.get("task") != task:
            continue
        if beta is not None and not _close(r["beta"], beta):
            continue
        if knobs and not _knobs_match(r, knobs):
            continue
        out.append(r)
    return out


def _close(a, b) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def _knobs_match(record: dict, knobs: dict) -> bool:
    spec = runner.METHODS.get(record["method"])
    fields = dict(spec.knobs) if spec else {}
    for knob, value in knobs.items():
        field = fields.get(knob)
        if field is None:
            continue            # a knob this method does not have cannot disqualify it
        stored = record.get("config", {}).get(field)
        if stored is None or not _close(stored, value):
            return False
    return True


def summary_rows(records: list[dict], pick: str = "best_gold") -> list[dict]:
    """One row per method (missing methods included), flattened for a table.

    ``pick="best_gold"``: the β whose run ends with the highest gold reward. ``pick="all"``: every run.
    """
    if pick not in ("best_gold", "all"):
        raise ValueError(f"pick must be 'best_gold' or 'all', got {pick!r}")
    chosen: list[dict] = []
    methods = sorted({r["method"] for r in records}, key=runner.method_order)
    for m in methods:
        runs = [r for r in records if r["method"] == m]
        ok = [r for r in runs if r.get("status", "ok") == "ok"]
        if not ok:
            chosen.append(runs[0])
        elif pick == "all":
            chosen.extend(sorted(ok, key=lambda r: r["beta"]))
        else:
            chosen.append(max(ok, key=lambda r: (r["final"]["gold_reward"], -r["beta"])))
    rows = []
    for r in chosen:
        row = {"method": r["method"], "family": r.get("family", "?"), "status": r.get("status", "ok"),
               "reason": r.get("reason", "")}
        for _header, path, _ in TABLE_COLUMNS:
            key = path.split(".")[-1]
            row.setdefault(key, _get(r, path))
        rows.append(row)
    return rows


def format_table(rows: list[dict], columns=None) -> str:
    """A plain-text table (fixed-width columns); a missing method shows ``missing`` and dashes."""
    columns = TABLE_COLUMNS if columns is None else columns
    header = [h for h, _, _ in columns]
    body = []
    for row in rows:
        cells = []
        for h, path, fmt in columns:
            key = path.split(".")[-1]
            value = row.get(key)
            if key in ("method", "family"):
                cells.append(str(value))
            elif row.get("status", "ok") != "ok":
                cells.append("missing" if h == "β" else "—")
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("—")
            else:
                cells.append(fmt.format(value))
        body.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in body])


def over_optimisation(history: dict, min_drop: float = 0.03) -> dict:
    """Did the proxy keep rising while the gold reward turned down? (reward-model over-optimisation)

    Finds the logged point where the gold reward peaks; ``gold_drop`` is peak − end, ``proxy_gain``
    is the proxy's change from that point to the end. Flagged when the gold fell by at least
    ``min_drop`` after its peak while the proxy did not fall.
    """
    gold, proxy = history["gold_reward"], history["proxy_reward"]
    if not gold or len(gold) != len(proxy):
        raise ValueError("history needs gold_reward and proxy_reward curves of the same length")
    peak = max(range(len(gold)), key=lambda i: (gold[i], -i))
    drop, gain = gold[peak] - gold[-1], proxy[-1] - proxy[peak]
    return {"peak_index": peak, "gold_peak": gold[peak], "gold_end": gold[-1], "gold_drop": drop,
            "proxy_gain": gain, "flagged": bool(drop >= min_drop and gain >= 0.0)}


def compare_records(stored: dict, live: dict, keys=("gold_reward", "proxy_reward", "kl_to_ref")) -> dict:
    """Absolute differences of the final metrics and of the whole logged curves of two runs."""
    if stored["method"] != live["method"] or stored["beta"] != live["beta"]:
        raise ValueError("compare runs of the same method and β")
    out = {}
    for k in keys:
        out[f"final.{k}"] = abs(stored["final"][k] - live["final"][k])
        a, b = stored["history"][k], live["history"][k]
        if len(a) != len(b):
            raise ValueError(f"the curves of {k} have {len(a)} and {len(b)} points: different configs")
        out[f"history.{k}"] = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    return out


def save_runs(records: list[dict], path: str | Path, meta: dict | None = None) -> Path:
    """Store run records (plain dicts, lists, floats, strings) as a checksummed teachkit artifact."""
    return artifacts.save({"meta": dict(meta or {}), "runs": list(records)}, path, RUNS_KIND, RUNS_VERSION)


def load_runs(path: str | Path) -> tuple[list[dict], dict]:
    """(records, meta) from a file written by :func:`save_runs`; a clear error says to run ``make data``."""
    payload = artifacts.load(path, RUNS_KIND, RUNS_VERSION)
    return payload["runs"], payload["meta"]


def main(argv: list[str] | None = None) -> int:
    tasks = list(argv) if argv else list(TASKS)
    for task in tasks:
        t0 = time.perf_counter()
        records, meta = build(task)
        path = save_runs(records, data_path(task), meta)
        print(f"  {task}: {len(records)} runs -> {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
