"""The history every training loop returns: one row per evaluation, the same contract for all.

    history = History("train_loss")    # the loop's per-step statistics, after the contract's keys
    history.log(0, measure)            # step 0: the start point; nothing trained yet, seconds = 0
    history.start_clock()              # training starts
    ...  history.add(train_loss=loss.item()); history.pairs += B  ...
    history.log(step, measure)         # every eval_every steps and at the end
    return policy, history.data        # {key: [one float per row]}

Every row holds the keys of ``HISTORY_KEYS`` (the showdown runner, the tables and the widgets read
them from every loop alike):

    step               the optimiser step the row was logged at (0: before training)
    gold_reward        mean gold (task) reward on the world's evaluation prompts
    proxy_reward       mean reward-model score on the same completions
    kl_to_ref          mean sequence KL to the SFT reference on them
    seconds            training time so far; the time spent in evaluations is left out
    samples_generated  completions sampled for training so far (0 for the offline loops)
    reward_queries     completions scored for training so far (0 for the offline loops)
    pairs_seen         preference pairs drawn for training so far, repeats counted (0 on-policy)

then the statistics the loop declared, each the mean of what ``add`` collected since the previous
row (NaN if nothing was: at step 0, or a statistic that only some batches have), then whatever
else ``measure()`` returns, in the order it returns it.
"""

from __future__ import annotations

import time
from typing import Callable

from ..toy.evaluate import evaluate_policy

__all__ = ["HISTORY_KEYS", "History", "evaluation_metrics"]

HISTORY_KEYS = ("step", "gold_reward", "proxy_reward", "kl_to_ref", "seconds",
                "samples_generated", "reward_queries", "pairs_seen")


class History:
    """Collects per-step statistics and logs their means, with an evaluation, as one row per ``log``."""

    def __init__(self, *stats: str):
        self.data: dict[str, list[float]] = {k: [] for k in (*HISTORY_KEYS, *stats)}
        self.pending: dict[str, list[float]] = {}
        self.samples = self.queries = self.pairs = 0   # what training consumed so far
        self._start: float | None = None              # set by start_clock: before it, no training
        self._in_eval = 0.0                            # evaluation time since then, kept out of "seconds"

    def start_clock(self) -> None:
        """Training starts now: ``seconds`` counts from here, evaluations excluded."""
        self._start = time.perf_counter()
        self._in_eval = 0.0

    def add(self, **stats: float) -> None:
        """Per-step statistics; the next row holds the mean of each. Each must have been declared:
        an undeclared one (a typo) would otherwise never reach a row."""
        undeclared = sorted(set(stats) - set(self.data))
        if undeclared:
            raise KeyError(f"statistics {undeclared} were not declared: History(..., {undeclared[0]!r})")
        for k, v in stats.items():
            self.pending.setdefault(k, []).append(float(v))

    def log(self, step: int, measure: Callable[[], dict[str, float]]) -> None:
        """Append one row: ``measure()`` (the evaluation, timed and left out of ``seconds``), the
        counters, and the means of the statistics added since the previous row."""
        t_eval = time.perf_counter()
        measured = measure()
        t_done = time.perf_counter()
        if self._start is None:
            seconds = 0.0
        else:
            self._in_eval += t_done - t_eval
            seconds = t_done - self._start - self._in_eval
        row = {"step": step, **measured, "seconds": seconds, "samples_generated": self.samples,
               "reward_queries": self.queries, "pairs_seen": self.pairs}
        for k in self.data:
            if k not in row:
                vals = self.pending.get(k, [])
                row[k] = sum(vals) / len(vals) if vals else float("nan")
        for k, v in row.items():
            self.data.setdefault(k, []).append(float(v))
        self.pending = {}

    def add_costs(self, costs: dict[str, float]) -> None:
        """One-off cost figures (``costs.cost_summary``): a list of one value each, not a column."""
        for k, v in costs.items():
            self.data[k] = [float(v)]


def evaluation_metrics(world, policy, seed: int, greedy_too: bool = False) -> dict[str, float]:
    """The toy world's evaluation of ``policy`` on its held-out prompts, sampled: gold_reward,
    proxy_reward, kl_to_ref; with ``greedy_too``, also the gold reward of the greedy decode."""
    out = evaluate_policy(world, policy, seed=seed)
    row = {k: float(out[k]) for k in ("gold_reward", "proxy_reward", "kl_to_ref")}
    if greedy_too:
        row["greedy_gold_reward"] = float(evaluate_policy(world, policy, greedy=True, seed=seed)["gold_reward"])
    return row
