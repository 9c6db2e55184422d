"""Plots of the toy world (notebook 01): training curves, the a×b grid, reward-model diagnostics."""

from __future__ import annotations

import matplotlib
import numpy as np

from . import COLORS, figure, show

__all__ = ["plot_sft_loss", "plot_arithmetic_grid", "plot_reward_model_training", "plot_proxy_vs_gold",
           "plot_length_distribution"]


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)


def plot_sft_loss(history: dict, floor: float | None = None, title: str = "SFT") -> None:
    """Training loss per step; ``floor`` draws the demonstrator's own entropy (the best achievable)."""
    fig, ax = figure()
    ax.plot(history["step"], history["loss"], lw=1, label="token NLL")
    if floor is not None:
        ax.axhline(floor, color=COLORS[1], ls="--", lw=1, label="demonstrator entropy")
    ax.set(xlabel="step", ylabel="loss (nats / token)", title=title)
    ax.legend()
    show(fig)


def plot_arithmetic_grid(*grids, titles=(), vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis") -> None:
    """One 10×10 heatmap per grid, indexed [a, b] (100 values in the order 0+0, 0+1, ..., 9+9).

    The dashed line separates prompts with a carry (a + b ≥ 10, lower right) from those without.
    A grid of 0/1 values gets a two-colour key ("no" / "yes") instead of a continuous colour bar.
    """
    from matplotlib.colors import ListedColormap

    fig, axes = figure(len(grids), wide=len(grids) > 1)
    axes = np.atleast_1d(axes)
    for ax, grid, title in zip(axes, grids, list(titles) + [""] * len(grids)):
        g = _np(grid).reshape(10, 10)
        binary = bool(np.isin(g, (0.0, 1.0)).all())
        cm = cmap
        if binary:
            base = matplotlib.colormaps[cmap]
            cm = ListedColormap([base(0.0), base(1.0)])
        im = ax.imshow(g, origin="upper", vmin=0.0 if binary else vmin, vmax=1.0 if binary else vmax, cmap=cm)
        xs = np.array([-0.5, 9.5])
        ax.plot(xs, 9.5 - xs, color="white", ls="--", lw=1)  # a + b = 9.5: carry below the line
        ax.set(xlabel="b", ylabel="a", title=title, xticks=range(10), yticks=range(10))
        ax.set_xlim(-0.5, 9.5)
        ax.set_ylim(9.5, -0.5)
        ax.grid(False)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if binary:
            bar.set_ticks([0.25, 0.75], labels=["no", "yes"])
    show(fig)


def plot_reward_model_training(history: dict, title: str = "Bradley–Terry reward model") -> None:
    """Loss and pair accuracy (train and held-out) against the training step."""
    fig, (ax1, ax2) = figure(2)
    ax1.plot(history["step"], history["loss"], marker=".")
    ax1.set(xlabel="step", ylabel="BT loss (batch)", title=title)
    ax2.plot(history["step"], history["train_accuracy"], marker=".", label="train pairs")
    ax2.plot(history["step"], history["heldout_accuracy"], marker=".", label="held-out pairs")
    ax2.axhline(0.5, color="grey", lw=1, ls=":")
    ax2.set(xlabel="step", ylabel="pair accuracy", ylim=(0.4, 1.02), title="accuracy")
    ax2.legend()
    show(fig)


def plot_proxy_vs_gold(proxy, gold, title: str = "reward model score vs gold reward") -> None:
    """Histogram of the proxy score for each gold value (binary gold) or a scatter (continuous gold)."""
    proxy, gold = _np(proxy), _np(gold)
    fig, ax = figure()
    levels = np.unique(gold)
    if len(levels) <= 2:
        bins = np.linspace(proxy.min(), proxy.max(), 30)
        for i, lv in enumerate(levels):   # light fill plus a solid outline: both stay readable where they overlap
            ax.hist(proxy[gold == lv], bins=bins, alpha=0.3, color=COLORS[i])
            ax.hist(proxy[gold == lv], bins=bins, histtype="step", lw=1.5, color=COLORS[i],
                    label=f"gold reward {lv:g}")
        ax.set(xlabel="reward-model score", ylabel="completions")
        ax.legend()
    else:
        jitter = np.random.default_rng(0).normal(0, 0.01, size=gold.shape)
        ax.scatter(gold + jitter, proxy, s=8, alpha=0.5)
        ax.set(xlabel="gold reward", ylabel="reward-model score")
    ax.set_title(title)
    show(fig)


def plot_length_distribution(lengths, targets, max_target: int, max_len: int,
                             title: str = "P(length | target) under the policy") -> None:
    """Heatmap of the empirical length distribution per target k; crosses mark the optimum n = k."""
    lengths, targets = _np(lengths).astype(int), _np(targets).astype(int)
    table = np.zeros((max_target, max_len + 2))
    for k in range(1, max_target + 1):
        sel = lengths[targets == k]
        if len(sel):
            for n in range(-1, max_len + 1):
                table[k - 1, n + 1] = np.mean(sel == n)
    fig, ax = figure()
    im = ax.imshow(table, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.scatter(np.arange(1, max_target + 1) + 1, np.arange(max_target), marker="x", color="red")
    ax.set(xticks=range(max_len + 2), xticklabels=["none"] + [str(n) for n in range(max_len + 1)],
           yticks=range(max_target), yticklabels=[str(k) for k in range(1, max_target + 1)],
           xlabel="letters before EOS (none: no EOS or a bad symbol)", ylabel="target k",
           title=f"{title} (red ×: the optimum n = k)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="share of the samples for this k")
    show(fig)
