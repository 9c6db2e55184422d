"""Figures of notebook 15: teachkit's loops and TRL's trainers on the same task, side by side."""

from __future__ import annotations

import numpy as np

from . import COLORS, figure, show

__all__ = ["plot_trl_side_by_side"]

_WHO = {"teachkit": COLORS[0], "trl": COLORS[1]}


def _check(runs: dict, method: str) -> None:
    if method not in runs or set(runs[method]) != set(_WHO):
        raise ValueError(f"runs[{method!r}] must map 'teachkit' and 'trl' to lists of histories")
    for who, hs in runs[method].items():
        if not hs or any("step" not in h or "gold_reward" not in h or len(h["step"]) != len(h["gold_reward"])
                         for h in hs):
            raise ValueError(f"runs[{method!r}][{who!r}]: each history needs equal-length 'step' and 'gold_reward'")


def plot_trl_side_by_side(stored: dict, live: dict | None = None, methods=("grpo", "dpo")) -> None:
    """One panel per method: gold reward against step, teachkit and TRL.

    ``stored``: {method: {"teachkit": [history, ...], "trl": [...]}} (one history per seed; thin
    lines per seed, a thick line for their mean). ``live``: the same layout for this session's short
    run, drawn dashed with markers, so stored and live are never confused.
    """
    for m in methods:
        _check(stored, m)
        if live is not None and m in live:
            _check(live, m)
    fig, axes = figure(len(methods), squeeze=False)
    for ax, m in zip(axes[0], methods):
        for who, color in _WHO.items():
            hs = stored[m][who]
            for h in hs:
                ax.plot(h["step"], h["gold_reward"], color=color, lw=0.6, alpha=0.4)
            steps = hs[0]["step"]
            if all(list(h["step"]) == list(steps) for h in hs):
                mean = np.mean([h["gold_reward"] for h in hs], axis=0)
                ax.plot(steps, mean, color=color, lw=2, label=f"{who} (stored, mean of {len(hs)} seeds)")
            if live is not None and m in live:
                for h in live[m][who]:
                    ax.plot(h["step"], h["gold_reward"], color=color, ls="--", marker="o", ms=4,
                            label=f"{who} (live, this run)")
        ax.set_title(f"{m.upper()}: gold reward (sampled, held-out prompts)", fontsize=10)
        ax.set_xlabel("step (teachkit's: one batch, μ gradient steps)" if m == "grpo" else "step")
        ax.legend(fontsize=7)
    show(fig)
