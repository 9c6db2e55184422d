"""Figures of the showdown (notebook 09): DPO loss landscape, reward–KL frontier, gold vs proxy, costs.

Every ``plot_*`` function takes plain data (run records from :mod:`teachkit.rlhf.runner`, or numbers),
draws one figure in the course style, shows it and returns nothing, so a notebook cell never prints a
repr. The maths behind the landscape is the pure function :func:`preference_landscape`.

The DPO landscape. Write ``h = log π/π_ref(y_w) − log π/π_ref(y_l)`` for the log-ratio margin of one
pair; the implicit-reward margin is ``β·h``. Then

    L_DPO(h) = −log σ(β h),          −dL/dh = β σ(−β h)             (never zero, decays like e^{−βh})
    L_IPO(h) = (h − 1/(2β))²,        −dL/dh = −2 (h − 1/(2β))       (zero at the target h* = 1/(2β))

The "gradient weight" is −dL/dh: how hard one step pushes this pair's margin up. DPO keeps pushing
every pair forever (a separable pair's margin grows without bound); IPO pulls the margin back to a
finite target, which is its whole motivation. Against the implicit-reward margin ``m = β h`` the DPO
loss ``−log σ(m)`` is the same curve for every β: β only rescales the log-ratio axis.
"""

from __future__ import annotations

import math

import numpy as np

from . import COLORS, figure, show

__all__ = [
    "LANDSCAPE_LOSSES", "preference_landscape", "plot_dpo_landscape", "plot_frontier",
    "plot_gold_vs_proxy", "plot_costs", "plot_history", "plot_exact_by_target",
]

LANDSCAPE_LOSSES = ("dpo", "ipo")


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    return float(beta)


def preference_landscape(margins, beta: float, loss: str = "dpo") -> dict:
    """Loss and gradient weight ``−dL/dh`` of one preference pair against its log-ratio margin ``h``.

    Returns ``dict(h, implicit_margin=β·h, loss, weight)`` as float64 numpy arrays of the shape of
    ``margins``. ``loss`` is ``"dpo"`` (sigmoid) or ``"ipo"`` (squared, target 1/(2β)).
    """
    beta = _check_beta(beta)
    if loss not in LANDSCAPE_LOSSES:
        raise ValueError(f"loss must be one of {LANDSCAPE_LOSSES}, got {loss!r}")
    h = np.asarray(margins, dtype=np.float64)
    if not np.all(np.isfinite(h)):
        raise ValueError("margins must be finite numbers")
    m = beta * h
    if loss == "dpo":
        value = np.logaddexp(0.0, -m)                    # −log σ(m), stable for large |m|
        weight = beta * np.exp(-np.logaddexp(0.0, m))    # β σ(−m)
    else:
        target = 1.0 / (2.0 * beta)
        value = (h - target) ** 2
        weight = -2.0 * (h - target)
    return {"h": h, "implicit_margin": m, "loss": value, "weight": weight}


def plot_dpo_landscape(betas=(0.1, 0.5, 1.0), loss: str = "dpo", span: float = 10.0,
                       axis: str = "log-ratio", n: int = 401) -> dict:
    """Two panels, loss and gradient weight, one curve per β. Returns the curves that were drawn.

    ``axis="log-ratio"`` plots against h, ``axis="implicit"`` against the implicit-reward margin β·h.
    """
    betas = tuple(_check_beta(b) for b in betas)
    if not betas:
        raise ValueError("give at least one beta")
    if axis not in ("log-ratio", "implicit"):
        raise ValueError(f"axis must be 'log-ratio' or 'implicit', got {axis!r}")
    if not (isinstance(span, (int, float)) and span > 0):
        raise ValueError(f"span must be positive, got {span!r}")
    curves = {}
    fig, (ax_loss, ax_w) = figure(2)
    for i, beta in enumerate(betas):
        # the same range on screen whichever axis is chosen
        h = np.linspace(-span, span, n) / (beta if axis == "implicit" else 1.0)
        c = preference_landscape(h, beta, loss)
        x = c["implicit_margin"] if axis == "implicit" else c["h"]
        color = COLORS[i % len(COLORS)]
        ax_loss.plot(x, c["loss"], color=color, label=f"β = {beta:g}")
        ax_w.plot(x, c["weight"], color=color)
        curves[beta] = c
    xlabel = "implicit-reward margin β·h" if axis == "implicit" else "log-ratio margin h"
    for ax in (ax_loss, ax_w):
        ax.axvline(0.0, color="k", lw=0.6)
        ax.set_xlabel(xlabel)
    ax_w.axhline(0.0, color="k", lw=0.6)
    ax_loss.set_ylabel(f"{loss.upper()} loss")
    ax_w.set_ylabel("gradient weight −dL/dh")
    ax_loss.set_title(f"{loss.upper()} loss of one pair")
    ax_w.set_title("how hard the loss pushes the margin up")
    ax_loss.legend()
    show(fig)
    return curves


# --------------------------------------------------------------------------- run records


def _by_method(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in runs:
        if r.get("status", "ok") != "ok":
            continue
        out.setdefault(r["method"], []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["beta"])
    return out


def _marker(run: dict) -> str:
    return "o" if run.get("family") == "on-policy" else "s"


def _setting(run: dict) -> str:
    """``method β=… lr=…`` (the lr only when the record's config has one)."""
    lr = run.get("config", {}).get("lr")
    return f"{run['method']} β={run['beta']:g}" + (f" lr={lr:.0e}" if lr is not None else "")


def plot_frontier(runs: list[dict], start: dict | None = None, title: str = "reward–KL frontier") -> None:
    """Final gold reward against KL to the reference, one line per method through its β values.

    Circles are on-policy methods, squares off-policy; ``start`` (the SFT policy) is a black star.
    A method whose runs share one learning rate has it in its legend entry.
    """
    groups = _by_method(runs)
    if not groups:
        raise ValueError("no finished runs to plot")
    fig, ax = figure()
    for i, (method, rs) in enumerate(groups.items()):
        kl = [r["final"]["kl_to_ref"] for r in rs]
        gold = [r["final"]["gold_reward"] for r in rs]
        lrs = {r.get("config", {}).get("lr") for r in rs}
        label = f"{method} (lr {lrs.pop():.0e})" if len(lrs) == 1 and None not in lrs else method
        ax.plot(kl, gold, marker=_marker(rs[0]), color=COLORS[i % len(COLORS)],
                ls="-" if rs[0].get("family") == "on-policy" else "--", label=label)
        for r, x, y in zip(rs, kl, gold):
            ax.annotate(f"{r['beta']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if start is not None:
        ax.plot([start["kl_to_ref"]], [start["gold_reward"]], "k*", ms=12, label="SFT start")
    ax.set_xlabel("KL(π ‖ π_ref) on the evaluation prompts")
    ax.set_ylabel("gold reward")
    ax.set_title(title + " (labels: β)")
    ax.legend(fontsize=8, ncol=2)
    show(fig)


def _x_axis(history: dict) -> tuple[list[float], str]:
    if any(history.get("reward_queries", [])):
        return history["reward_queries"], "reward queries"
    if any(history.get("pairs_seen", [])):
        return history["pairs_seen"], "preference pairs seen"
    return history["step"], "step"


def plot_gold_vs_proxy(runs: list[dict], title: str = "gold (solid) vs proxy (dashed) reward") -> None:
    """Gold and proxy reward over training, one panel per run (at most 4 per row).

    Over-optimisation of the reward model shows where the proxy keeps rising and the gold turns down.
    """
    runs = [r for r in runs if r.get("status", "ok") == "ok"]
    if not runs:
        raise ValueError("no finished runs to plot")
    ncols = min(4, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    fig, axes = figure(ncols, nrows, wide=True, squeeze=False)
    for k, r in enumerate(runs):
        ax = axes[k // ncols][k % ncols]
        x, label = _x_axis(r["history"])
        ax.plot(x, r["history"]["gold_reward"], color=COLORS[0], label="gold")
        twin = ax.twinx()     # the proxy lives on its own scale (reward-model units)
        twin.plot(x, r["history"]["proxy_reward"], color=COLORS[1], ls="--", label="proxy")
        twin.tick_params(axis="y", colors=COLORS[1], labelsize=7)
        ax.tick_params(axis="y", colors=COLORS[0], labelsize=7)
        ax.set_title(_setting(r), fontsize=9)
        ax.set_xlabel(label, fontsize=8)
    for k in range(len(runs), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.suptitle(title + " — left axis gold, right axis proxy")
    show(fig)


def plot_costs(rows: list[dict]) -> None:
    """Cost bars per method: wall time, peak memory, models held. ``rows`` from ``showdown_data.summary_rows``."""
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    if not rows:
        raise ValueError("no finished runs to plot")
    names = [r["method"] for r in rows]
    colors = [COLORS[0] if r["family"] == "on-policy" else COLORS[1] for r in rows]
    panels = [("wall_seconds", "wall time (s)"), ("peak_memory_mb", "peak memory (MB)"),
              ("models_held", "models held")]
    fig, axes = figure(3, wide=True)
    for ax, (key, label) in zip(axes, panels):
        ax.bar(range(len(rows)), [r[key] for r in rows], color=colors)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=60, fontsize=8)
        ax.set_title(label)
    axes[0].set_ylabel("blue: on-policy, red: off-policy", fontsize=8)
    show(fig)


def plot_history(histories: dict[str, dict], title: str = "") -> None:
    """Gold reward, proxy reward and KL over training for a few labelled histories (method explorer)."""
    if not histories:
        raise ValueError("no histories to plot")
    fig, axes = figure(3, wide=True)
    for i, (label, h) in enumerate(histories.items()):
        x, xlabel = _x_axis(h)
        color = COLORS[i % len(COLORS)]
        for ax, key in zip(axes, ("gold_reward", "proxy_reward", "kl_to_ref")):
            ax.plot(x, h[key], color=color, label=label, marker="." if len(x) < 3 else None)
            ax.set_xlabel(xlabel)
            ax.set_title(key.replace("_", " "))
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    show(fig)


def plot_exact_by_target(rows: list[dict], start: dict, coverage: dict, max_target: int = 6) -> None:
    """Length task: fraction of samples with exactly k letters, per target k.

    ``rows``: one record per method (e.g. its best-gold run) whose ``final`` holds ``exact_k<k>``;
    ``start``: the SFT policy's; ``coverage``: ``chosen_exact_k<k>``, the fraction of training pairs
    whose chosen completion has exactly k letters (grey bars: what the offline data shows).
    """
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    if not rows:
        raise ValueError("no finished runs to plot")
    ks = list(range(1, max_target + 1))
    fig, axes = figure(2, wide=True, sharey=True)
    for ax, family in zip(axes, ("on-policy", "off-policy")):
        ax.bar(ks, [coverage[f"chosen_exact_k{k}"] for k in ks], color="0.85", label="pairs: chosen exact")
        ax.plot(ks, [start[f"exact_k{k}"] for k in ks], "k--", marker="*", label="SFT")
        for i, r in enumerate(x for x in rows if x["family"] == family):
            ax.plot(ks, [r["final"][f"exact_k{k}"] for k in ks], marker="o", color=COLORS[i % len(COLORS)],
                    label=_setting(r))
        ax.set_xlabel("target length k")
        ax.set_title(family)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("P(exactly k letters)")
    show(fig)
