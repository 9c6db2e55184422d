"""Build the showdown's stored runs: every method, several β, both tasks, one budget (``make data``).

    python -m teachkit.rlhf.showdown_data                 # both tasks (a few minutes on one core)
    python -m teachkit.rlhf.showdown_data length          # one task

Writes ``data/showdown_<task>.pt`` (a checksummed ``teachkit.artifacts`` file): the run records of
:func:`teachkit.rlhf.runner.run_method` plus ``meta`` (budget, the SFT start point, the pair coverage
of the length task, the configuration notebook 09 re-runs live). A method whose loop does not import
is stored as a ``missing`` record, never as numbers. Runs are seeded and deterministic under
``OMP_NUM_THREADS=1``, except their wall times, which are measurements.

The second task, ``length``: prompt ``k:`` asks for k letters. SFT mostly ignores k and writes about
two letters, so for k = 5 or 6 its samples, and the pairs built from them, rarely hold the optimum.
:func:`length_by_target` measures, per target k, how often a policy writes exactly k letters, and
:func:`pair_coverage` how often the training pairs' chosen completion does.
"""

from __future__ import annotations

import sys
import time

import torch

from .. import artifacts
from . import runner

__all__ = ["BUDGET", "EVAL_POINTS", "TASKS", "LIVE", "data_path", "load", "build",
           "length_by_target", "pair_coverage", "main"]

BUDGET = runner.Budget(labels=8192, pairs_per_query=1.0)
EVAL_POINTS = 12
TASKS = ("arithmetic", "length")
LIVE = {"task": "arithmetic", "method": "dpo", "beta": 0.1}
"""The configuration notebook 09 re-runs live and compares with its stored record."""


def data_path(task: str):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return artifacts.path_for(f"showdown_{task}.pt")


def load(task: str) -> tuple[list[dict], dict]:
    """(records, meta) of one task; a missing or stale file says to run ``make data``."""
    return runner.load_runs(data_path(task))


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
          verbose: bool = True) -> tuple[list[dict], dict]:
    """Train every available method at each of its β on ``task``; returns (records, meta)."""
    from ..toy.world import load_world

    say = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    world = load_world(task)
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
    meta = {"task": task, "budget_labels": budget.labels, "pairs_per_query": float(budget.pairs_per_query),
            "eval_points": EVAL_POINTS, "start": start, "live": dict(LIVE)}
    if task == "length":
        meta["pair_coverage"] = pair_coverage(world)
    return records, meta


def main(argv: list[str] | None = None) -> int:
    tasks = list(argv) if argv else list(TASKS)
    for task in tasks:
        t0 = time.perf_counter()
        records, meta = build(task)
        path = runner.save_runs(records, data_path(task), meta)
        print(f"  {task}: {len(records)} runs -> {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
