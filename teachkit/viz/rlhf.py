"""Figures of the on-policy notebooks (02 PPO, 03 ReMax, 04 GRPO): training curves and costs.

Every function takes plain data (``history`` dicts from the ``train_*`` loops, or numbers), draws
one figure in the course style, shows it and returns nothing.
"""

from __future__ import annotations

import math

from . import COLORS, figure, show

__all__ = ["plot_training_curves", "compare_training_curves", "plot_variance_bars", "plot_cost_bars"]

CURVE_LABELS = {
    "gold_reward": "gold reward (held-out)", "proxy_reward": "proxy reward (reward model)",
    "kl_to_ref": "KL(π‖π_ref) per sequence", "entropy": "entropy per token", "clip_fraction": "clip fraction",
    "value_loss": "value loss", "policy_loss": "policy loss", "loss": "loss value", "train_score": "reward of samples",
    "frac_zero_std": "groups with zero std", "kl_k3": "k3 KL in the loss", "mean_length": "mean length",
    "length_wrong": "length of wrong answers", "length_right": "length of right answers",
    "advantage_std": "advantage std", "greedy_score": "reward of greedy decode", "approx_kl": "KL(π_old‖π) (k3)",
}


def _check_history(history: dict, keys) -> None:
    if not isinstance(history, dict) or "step" not in history:
        raise ValueError("history must be a dict with a 'step' list (what train_ppo/remax/grpo return)")
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"history has no curve(s) {missing}; it has {sorted(history)}")


def _finite(steps, values):
    pts = [(s, v) for s, v in zip(steps, values) if isinstance(v, (int, float)) and math.isfinite(v)]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(history: dict, keys=("gold_reward", "proxy_reward", "kl_to_ref"),
                         title: str = "", ncols: int = 3) -> None:
    """One small panel per curve of ``history``, against the training step."""
    compare_training_curves({"": history}, keys, title=title, ncols=ncols)


def compare_training_curves(histories: dict, keys=("gold_reward", "proxy_reward", "kl_to_ref"),
                            title: str = "", ncols: int = 3, baselines: dict | None = None,
                            styles: dict | None = None) -> None:
    """Overlay several runs (label -> history), one panel per key; ``baselines`` key -> dashed level.

    ``styles`` (label -> keyword arguments of ``Axes.plot``, e.g. ``{"color": ..., "ls": "--"}``)
    overrides a run's colour or line style, so that families of runs can share a colour. With more
    than three legend entries the legend goes to the right of the panels, where it covers no line.
    """
    keys = list(keys)
    for h in histories.values():
        _check_history(h, keys)
    styles = styles or {}
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = figure(ncols, nrows, squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // ncols][i % ncols]
        for j, (label, h) in enumerate(histories.items()):
            xs, ys = _finite(h["step"], h[key])
            style = {"marker": "o", "ms": 3, "color": COLORS[j % len(COLORS)]} | styles.get(label, {})
            ax.plot(xs, ys, label=label or None, **style)
        if baselines and key in baselines:
            ax.axhline(baselines[key], color="gray", ls="--", lw=1, label="SFT")
        ax.set_title(CURVE_LABELS.get(key, key), fontsize=9)
        ax.set_xlabel("step")
    for k in range(len(keys), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if len(labels) > 3:
        fig.tight_layout()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    elif any(labels):
        axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    show(fig)


def plot_variance_bars(results: dict, title: str = "variance of the gradient estimate") -> None:
    """Bars of total gradient variance per baseline: ``results`` label -> variance."""
    if not results:
        raise ValueError("results is empty")
    fig, ax = figure()
    labels, values = list(results), [float(v) for v in results.values()]
    ax.bar(labels, values, color=[COLORS[i % len(COLORS)] for i in range(len(labels))])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("E‖g − ḡ‖²")
    ax.set_title(title)
    show(fig)


def plot_cost_bars(costs: dict, keys=("resident_mb", "step_peak_mb", "seconds_per_step"),
                   title: str = "what each method costs") -> None:
    """One panel per cost, one bar per method: ``costs`` method -> dict of figures."""
    if not costs:
        raise ValueError("costs is empty")
    names = {"resident_mb": "resident state (MB)", "step_peak_mb": "step peak (MB)", "peak_mb": "peak (MB)",
             "seconds_per_step": "seconds per step", "optimizer_mb": "optimizer state (MB)",
             "trainable_params": "trainable parameters", "models_held": "models held"}
    fig, axes = figure(len(keys), squeeze=False)
    methods = list(costs)
    for i, key in enumerate(keys):
        ax = axes[0][i]
        vals = [float(costs[m][key]) for m in methods]
        ax.bar(methods, vals, color=[COLORS[j % len(COLORS)] for j in range(len(methods))])
        ax.set_title(names.get(key, key), fontsize=9)
    fig.suptitle(title)
    show(fig)
