"""Figures of notebooks 05–08 (DPO, DPOP, TDPO, ORPO).

Every function takes plain data (``history`` dicts from the ``*_train`` loops, keyed by run label),
draws one figure in the course style, shows it and returns nothing, so a cell never prints a repr.
"""

from __future__ import annotations

import numpy as np

from . import COLORS, figure, show

__all__ = ["plot_runs", "plot_preference_training", "plot_chosen_vs_reference", "plot_seq_kl",
           "plot_reward_kl", "plot_odds"]

_LABELS = {
    "dpo_loss": "DPO loss (held-out pairs)", "train_loss": "training loss",
    "reward_accuracy": "reward accuracy", "reward_margin": "implicit-reward margin",
    "chosen_logps": "log π(y_w)", "rejected_logps": "log π(y_l)",
    "chosen_logratio": "log π/π_ref (chosen)", "rejected_logratio": "log π/π_ref (rejected)",
    "gold_reward": "gold reward (sampled)", "greedy_gold_reward": "greedy gold reward",
    "kl_to_ref": "KL to reference", "seq_kl_chosen": "SeqKL chosen", "seq_kl_rejected": "SeqKL rejected",
    "chosen_below_ref": "pairs with log π(y_w) < ref", "nll": "NLL of chosen",
    "log_odds_ratio": "log-odds ratio", "odds_accuracy": "odds accuracy",
    "chosen_mean_logps": "mean log π(y_w) per token", "rejected_mean_logps": "mean log π(y_l) per token",
}


def _check_runs(runs: dict, keys) -> None:
    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict: label -> history")
    for label, h in runs.items():
        missing = [k for k in ("step", *keys) if k not in h]
        if missing:
            raise ValueError(f"run {label!r} has no {missing} in its history")


def plot_runs(runs: dict, keys, ncols: int | None = None, zero_line: tuple = ()) -> None:
    """One panel per history key, one line per run (label -> history)."""
    keys = list(keys)
    _check_runs(runs, keys)
    ncols = ncols or min(len(keys), 3)
    nrows = -(-len(keys) // ncols)
    fig, axes = figure(ncols, nrows, wide=ncols > 1, squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // ncols][i % ncols]
        for j, (label, h) in enumerate(runs.items()):
            ax.plot(h["step"], h[key], color=COLORS[j % len(COLORS)], marker=".", label=label)
        if key in zero_line:
            ax.axhline(0.0, color="black", lw=0.8, ls=":")
        ax.set_title(_LABELS.get(key, key), fontsize=10)
        ax.set_xlabel("step")
    for i in range(len(keys), nrows * ncols):
        axes[i // ncols][i % ncols].axis("off")
    axes[0][0].legend(fontsize=8)
    show(fig)


def plot_preference_training(history: dict, label: str = "DPO") -> None:
    """Notebook 05's dashboard: loss, reward accuracy, margin, chosen and rejected log-probs."""
    _check_runs({label: history}, ["dpo_loss", "reward_accuracy", "reward_margin", "chosen_logps",
                                   "rejected_logps"])
    fig, axes = figure(3, 1, wide=True)
    steps = history["step"]
    axes[0].plot(steps, history["dpo_loss"], marker=".", label="held-out")
    if "train_loss" in history:
        axes[0].plot(steps[1:], history["train_loss"][1:], marker=".", label="training (running)")
    axes[0].axhline(np.log(2), color="black", lw=0.8, ls=":", label="ln 2")
    axes[0].set_title("loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, history["reward_accuracy"], marker=".", label="accuracy")
    axes[1].plot(steps, history["reward_margin"], marker=".", label="margin")
    axes[1].set_title("implicit reward: accuracy and margin")
    axes[1].legend(fontsize=8)
    axes[2].plot(steps, history["chosen_logps"], marker=".", color=COLORS[2], label="chosen")
    axes[2].plot(steps, history["rejected_logps"], marker=".", color=COLORS[1], label="rejected")
    axes[2].set_title("log-probs (held-out pairs)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
    show(fig)


def plot_chosen_vs_reference(runs: dict) -> None:
    """Notebook 06: chosen log-ratio (0 = the reference), pair accuracy and greedy accuracy per run."""
    keys = ["chosen_logratio", "reward_accuracy", "greedy_gold_reward"]
    _check_runs(runs, keys)
    plot_runs(runs, keys, ncols=3, zero_line=("chosen_logratio",))


def plot_seq_kl(runs: dict) -> None:
    """Notebook 07: sequential KL on chosen (solid) and rejected (dashed), one colour per run."""
    _check_runs(runs, ["seq_kl_chosen", "seq_kl_rejected"])
    fig, ax = figure(1)
    for j, (label, h) in enumerate(runs.items()):
        c = COLORS[j % len(COLORS)]
        ax.plot(h["step"], h["seq_kl_chosen"], color=c, marker=".", label=f"{label}: chosen")
        ax.plot(h["step"], h["seq_kl_rejected"], color=c, marker=".", ls="--", label=f"{label}: rejected")
    ax.set_xlabel("step")
    ax.set_ylabel("SeqKL(π_ref ‖ π_θ), held-out pairs")
    ax.legend(fontsize=8, ncol=len(runs))
    show(fig)


def plot_reward_kl(runs: dict, reward_key: str = "gold_reward") -> None:
    """Reward against KL to the reference along each run (start marked with a circle, end with a star)."""
    _check_runs(runs, [reward_key, "kl_to_ref"])
    fig, ax = figure(1)
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]  # overlapping paths stay readable
    for j, (label, h) in enumerate(runs.items()):
        c = COLORS[j % len(COLORS)]
        line, marker = styles[j % len(styles)]
        ax.plot(h["kl_to_ref"], h[reward_key], color=c, ls=line, marker=marker, ms=5, mfc="none", label=label)
        ax.plot(h["kl_to_ref"][-1], h[reward_key][-1], color=c, marker="*", ms=14)
    first = next(iter(runs.values()))
    ax.plot(first["kl_to_ref"][0], first[reward_key][0], "ko", label="start (SFT)")
    ax.set_xlabel("KL(π_θ ‖ π_ref) on sampled completions")
    ax.set_ylabel(_LABELS.get(reward_key, reward_key))
    ax.legend(fontsize=8)
    show(fig)


def plot_odds(n: int = 400) -> None:
    """Notebook 08: odds p/(1−p) and log-odds against probability p."""
    p = np.linspace(0.005, 0.995, n)
    fig, (a, b) = figure(2)
    a.plot(p, p / (1 - p))
    a.set_ylim(0, 20)
    a.set_title("odds = p / (1 − p)")
    b.plot(p, np.log(p / (1 - p)), color=COLORS[1], label="log-odds")
    b.plot(p, np.log(p), color=COLORS[2], ls="--", label="log p")
    b.set_title("log-odds = log p − log(1 − p)")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xlabel("p")
    show(fig)
