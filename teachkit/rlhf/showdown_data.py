"""Build the showdown's stored runs: a sweep, a choice, and fresh seeds, on both tasks (``make data``).

    python -m teachkit.rlhf.showdown_data                 # both tasks (half an hour or more on one core)
    python -m teachkit.rlhf.showdown_data length          # one task
    python -m teachkit.rlhf.showdown_data --methods grpo rloo   # redo two methods, keep the others

The protocol, the same for every method and both tasks:

1. **Sweep** (``phase="select"``, seeds ``SELECT_SEEDS``): every method at every β of its grid
   (``runner.METHODS[m].betas``); the off-policy methods also at every learning rate of ``LR_GRID``
   (their default lr, 3×, 10× and 30× it: the defaults were tuned by hand on ``arithmetic``, the
   on-policy loops use 3e-4). The on-policy loops keep their learning rate (not swept).
2. **Choice**: each method's (β, lr) with the highest mean final gold reward over the sweep seeds
   (:func:`choose`; ties go to the lower mean KL). This is the same metric that is reported, on the
   same evaluation prompts (the task's whole prompt set), but on other training runs: the sweep's
   seeds are never reported as the result.
3. **Test** (``phase="test"``, seeds ``TEST_SEEDS``): each method at its chosen setting on fresh
   seeds. :func:`ranking` summarises them (mean, standard error, min and max over seeds).

Writes ``data/showdown_<task>.pt`` (a checksummed ``teachkit.artifacts`` file): the run records of
:func:`teachkit.rlhf.runner.run_method` (each with ``phase``) plus ``meta`` (budget, seeds, the lr
grids, the chosen settings, the SFT start point, the pair coverage of the length task, the
configuration notebook 09 re-runs live). Also tables and selections over records:
:func:`sweep_rows`, :func:`choose`, :func:`ranking`, :func:`difference`, :func:`grid_runs`,
:func:`summary_rows`, :func:`format_table`, :func:`select_runs`, :func:`over_optimisation`,
:func:`compare_records`. A method whose loop does not import is stored as a ``missing`` record,
never as numbers. Runs are seeded and deterministic under ``OMP_NUM_THREADS=1``, except their wall
times, which are measurements.

The second task, ``length``: prompt ``k:`` asks for k letters. SFT mostly ignores k and writes about
two letters, so for k = 5 or 6 its samples, and the pairs built from them, rarely hold the optimum.
:func:`length_by_target` measures, per target k, how often a policy writes exactly k letters, and
:func:`pair_coverage` how often the training pairs' chosen completion does.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch

from .. import artifacts
from . import runner

__all__ = ["BUDGET", "EVAL_POINTS", "TASKS", "LIVE", "LR_GRID", "SELECT_SEEDS", "TEST_SEEDS", "data_path",
           "load", "build", "lr_grid", "length_by_target", "pair_coverage", "save_runs", "load_runs",
           "select_runs", "sweep_rows", "choose", "ranking", "difference", "grid_runs", "summary_rows",
           "format_table", "TABLE_COLUMNS", "over_optimisation", "compare_records", "RUNS_KIND", "RUNS_VERSION",
           "merge_methods", "main"]

RUNS_KIND, RUNS_VERSION = "showdown-runs", 2
BUDGET = runner.Budget(labels=8192, pairs_per_query=1.0)
EVAL_POINTS = 12
TASKS = ("arithmetic", "length")
SELECT_SEEDS = (0, 1)
"""Training seeds of the sweep: each method's (β, lr) is chosen on the mean over these."""
TEST_SEEDS = (2, 3, 4, 5, 6)
"""Fresh training seeds on which the chosen settings are run and reported."""
_OFF_LRS = (1e-5, 3e-5, 1e-4, 3e-4)
LR_GRID = {"dpo": _OFF_LRS, "dpop": _OFF_LRS, "ipo": _OFF_LRS, "simpo": _OFF_LRS, "tdpo": _OFF_LRS,
           "orpo": (6e-4, 2e-3, 6e-3, 2e-2)}
"""Learning rates swept per off-policy method: its default (1e-5; TDPO 3e-5; ORPO, which trains the
base model, 2e-3) and up to 30× it (TDPO: from a third of its default to 10×). Methods not listed
(the on-policy ones) run at their default learning rate only."""
LIVE = {"task": "arithmetic", "method": "dpo"}
"""The method notebook 09 re-runs live, at its chosen setting on the first test seed, and compares
with the stored record of that run."""


def lr_grid(method: str) -> tuple[float, ...]:
    """The learning rates the sweep tries for ``method``: ``LR_GRID``'s, else its config default."""
    return tuple(LR_GRID.get(method, (runner.knob_defaults(method)["lr"],)))


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


def build(task: str, methods=None, betas: dict | None = None, lrs: dict | None = None,
          select_seeds=SELECT_SEEDS, test_seeds=TEST_SEEDS, budget: runner.Budget = BUDGET,
          verbose: bool = True, world=None) -> tuple[list[dict], dict]:
    """Sweep, choose and test every available method on ``task``; returns (records, meta).

    ``betas`` / ``lrs`` (method -> grid) override the grids, ``select_seeds`` / ``test_seeds`` the
    seeds; ``world`` defaults to the stored toy world of ``task`` (tests pass a small one).
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
    methods = list(methods or runner.METHODS)
    grids = {m: (tuple((betas or {}).get(m, runner.METHODS[m].betas)), tuple((lrs or {}).get(m, lr_grid(m))))
             for m in methods}

    def run(method, beta, lr, seed, phase):
        t0 = time.perf_counter()
        rec = runner.run_method(world, method, beta, budget, seed=seed, eval_points=EVAL_POINTS,
                                extra_eval=extra, lr=lr)
        rec["phase"] = phase
        f = rec["final"]
        say(f"  {task}: {phase:6s} seed {seed} {method:6s} β={beta:<5g} lr={lr:<7g} gold {f['gold_reward']:.3f} "
            f"proxy {f['proxy_reward']:+.3f} KL {f['kl_to_ref']:.3f} in {time.perf_counter() - t0:.1f} s", flush=True)
        return rec

    records = []
    for method in methods:
        if available.get(method) is not None:
            say(f"  {task}: {method} is missing ({available[method]})")
            records.append(runner.missing_record(method, available[method], task))
            continue
        method_betas, method_lrs = grids[method]
        for seed in select_seeds:
            for lr in method_lrs:
                for beta in method_betas:
                    records.append(run(method, beta, lr, seed, "select"))
    chosen = choose(records)
    for method, setting in chosen.items():
        for seed in test_seeds:
            records.append(run(method, setting["beta"], setting["lr"], seed, "test"))
    meta = {"task": task, "budget_labels": budget.labels, "pairs_per_query": float(budget.pairs_per_query),
            "eval_points": EVAL_POINTS, "start": start, "select_seeds": list(select_seeds),
            "test_seeds": list(test_seeds), "betas": {m: list(g[0]) for m, g in grids.items()},
            "lrs": {m: list(g[1]) for m, g in grids.items()}, "chosen": chosen}
    if LIVE["method"] in chosen and test_seeds:
        meta["live"] = {"task": task, "method": LIVE["method"], "beta": chosen[LIVE["method"]]["beta"],
                        "lr": chosen[LIVE["method"]]["lr"], "seed": int(test_seeds[0])}
    if task == "length":
        meta["pair_coverage"] = pair_coverage(world)
    return records, meta


# --------------------------------------------------------------------------- sweep, choice, ranking

def _lr(record: dict) -> float:
    return float(record["config"]["lr"])


def _stats(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = statistics.stdev(values) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "se": sd / math.sqrt(n) if n > 1 else float("nan"),
            "min": min(values), "max": max(values)}


def _groups(records: list[dict], phase: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in select_runs(records, phase=phase):
        out.setdefault((r["method"], round(r["beta"], 12), round(_lr(r), 12)), []).append(r)
    return out


def sweep_rows(records: list[dict], phase: str = "select") -> list[dict]:
    """One row per (method, β, lr) of ``phase``: seeds, mean / min / max final gold, mean KL.

    Ordered like the methods (on-policy first), then by lr and β.
    """
    rows = []
    for (method, beta, lr), rs in _groups(records, phase).items():
        g = _stats([r["final"]["gold_reward"] for r in rs])
        rows.append({"method": method, "family": rs[0]["family"], "beta": beta, "lr": lr, "n": g["n"],
                     "seeds": sorted(r["seed"] for r in rs), "gold_mean": g["mean"], "gold_min": g["min"],
                     "gold_max": g["max"], "gold_se": g["se"],
                     "kl_mean": sum(r["final"]["kl_to_ref"] for r in rs) / len(rs)})
    return sorted(rows, key=lambda r: (runner.method_order(r["method"]), r["lr"], r["beta"]))


def choose(records: list[dict], phase: str = "select") -> dict[str, dict]:
    """Each method's setting with the highest mean final gold over the seeds of ``phase``.

    Ties (equal means) go to the lower mean KL to the reference, then the smaller lr and β.
    Returns method -> {beta, lr, gold_mean, kl_mean, n}.
    """
    best: dict[str, dict] = {}
    for row in sweep_rows(records, phase):
        key = (-row["gold_mean"], row["kl_mean"], row["lr"], row["beta"])
        if row["method"] not in best or key < best[row["method"]][0]:
            best[row["method"]] = (key, row)
    return {m: {k: row[k] for k in ("beta", "lr", "gold_mean", "kl_mean", "n")}
            for m, (_, row) in sorted(best.items(), key=lambda kv: runner.method_order(kv[0]))}


def ranking(records: list[dict], phase: str = "test", keys=("gold_reward", "kl_to_ref", "proxy_reward")) -> list[dict]:
    """One row per method from its ``phase`` runs (one setting each), best mean gold first.

    Each row: method, family, beta, lr, n (seeds), and for each key ``<key>_mean``, ``_se`` (standard
    error over seeds), ``_min``, ``_max``; ``seconds_mean`` the mean training time.
    """
    rows = []
    for (method, beta, lr), rs in _groups(records, phase).items():
        row = {"method": method, "family": rs[0]["family"], "beta": beta, "lr": lr, "n": len(rs),
               "seeds": sorted(r["seed"] for r in rs)}
        for key in keys:
            s = _stats([r["final"][key] for r in rs])
            row.update({f"{key}_{stat}": s[stat] for stat in ("mean", "se", "min", "max")})
        row["seconds_mean"] = sum(r["costs"]["wall_seconds"] for r in rs) / len(rs)
        rows.append(row)
    methods = [r["method"] for r in rows]
    if len(methods) != len(set(methods)):
        raise ValueError(f"ranking needs one setting per method in phase {phase!r}")
    return sorted(rows, key=lambda r: (-r["gold_reward_mean"], runner.method_order(r["method"])))


def difference(a: dict, b: dict, key: str = "gold_reward") -> tuple[float, float]:
    """(mean of a − mean of b, its standard error) for two rows of :func:`ranking` (independent seeds)."""
    return a[f"{key}_mean"] - b[f"{key}_mean"], math.hypot(a[f"{key}_se"], b[f"{key}_se"])


def grid_runs(records: list[dict], chosen: dict, seed: int) -> list[dict]:
    """The sweep's runs of one seed at each method's chosen lr, every β: one β grid per method."""
    return [r for r in select_runs(records, phase="select", seed=seed)
            if r["method"] in chosen and _close(_lr(r), chosen[r["method"]]["lr"])]


# --------------------------------------------------------------------------- storage, selection, tables

TABLE_COLUMNS = [
    # (header, record path, format)
    ("method", "method", "{}"), ("family", "family", "{}"), ("β", "beta", "{:g}"), ("lr", "config.lr", "{:.0e}"),
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
                task: str | None = None, knobs: dict | None = None, seed: int | None = None,
                phase: str | None = None) -> list[dict]:
    """Finished runs matching every given field (β and knob values compared to 1e-9).

    ``knobs`` uses the runner's knob names (``lr``, ``clip_eps``, ``group_size``, ...); a run matches
    when its stored config has those values. ``phase`` is ``"select"`` (the sweep) or ``"test"``.
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
        if seed is not None and r.get("seed") != seed:
            continue
        if phase is not None and r.get("phase") != phase:
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


def merge_methods(records: list[dict], meta: dict, new_records: list[dict], new_meta: dict,
                  methods) -> tuple[list[dict], dict]:
    """Stored (records, meta) with every run of ``methods`` replaced by a fresh build's.

    For a change that alters some loops only (the others' runs stay valid): each method's choice
    depends on its own sweep alone, so the kept methods' choices and test runs are unchanged.
    """
    methods = set(methods)
    if meta.get("task") != new_meta.get("task"):
        raise ValueError(f"cannot merge task {new_meta.get('task')!r} into {meta.get('task')!r}")
    kept = [r for r in records if r["method"] not in methods]
    merged = dict(meta)
    for key in ("betas", "lrs", "chosen"):
        merged[key] = {**{m: v for m, v in meta[key].items() if m not in methods},
                       **{m: v for m, v in new_meta[key].items() if m in methods}}
    return kept + list(new_records), merged


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Build notebook 09's stored runs (data/showdown_<task>.pt).")
    ap.add_argument("tasks", nargs="*", default=list(TASKS), help=f"tasks to build (default: {' '.join(TASKS)})")
    ap.add_argument("--methods", nargs="+", help="rebuild only these methods and keep the stored runs of the rest")
    args = ap.parse_args(argv)
    for task in args.tasks:
        t0 = time.perf_counter()
        records, meta = build(task, methods=args.methods)
        if args.methods:
            records, meta = merge_methods(*load_runs(data_path(task)), records, meta, args.methods)
        path = save_runs(records, data_path(task), meta)
        print(f"  {task}: {len(records)} runs -> {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
