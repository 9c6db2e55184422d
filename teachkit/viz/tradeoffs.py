"""Figures of the hands-on widgets (02, 04, 05/06, 12, 13, 14).

Each ``*_figure`` function draws one figure from the output of a pure function in
``teachkit.rlhf.landscapes`` or ``teachkit.sparse.planner.tradeoffs`` and returns it without showing it: the
widget shows it in its output area and keeps a PNG copy for front ends without widgets. In a
notebook without widgets: ``viz.show(viz.clipped_objective_figure(...))``.
"""

from __future__ import annotations

import numpy as np

from . import COLORS, figure

__all__ = ["clipped_objective_figure", "group_noise_figure", "pair_losses_figure", "cache_split_figure",
           "makespan_figure", "budget_figure"]


def clipped_objective_figure(curves: dict, advantage: float, clip_eps: float):
    """Objective and its slope against ρ, with the clip range shaded."""
    fig, (ax, ax_s) = figure(2)
    rho = curves["rho"]
    ax.plot(rho, curves["unclipped"], "--", color=COLORS[7], label="ρ·A (unclipped)")
    ax.plot(rho, curves["objective"], color=COLORS[0], lw=2, label="min(ρA, clip(ρ)A)")
    ax_s.plot(rho, curves["slope"], color=COLORS[1], lw=2)
    for a in (ax, ax_s):
        a.axvspan(1 - clip_eps, 1 + clip_eps, color=COLORS[2], alpha=0.12)
        a.axvline(1.0, color="k", lw=0.6)
        a.set_xlabel("probability ratio ρ = π/π_old")
    ax.set_title(f"objective per token, A = {advantage:+.2f}, ε = {clip_eps:.2f}")
    ax_s.set_title("slope d objective / dρ (0: no push)")
    ax.legend()
    return fig


def group_noise_figure(noise: dict, success_p: float, chosen: int | None = None):
    """Advantage error and the share of groups without signal, against group size."""
    fig, (ax, ax_z) = figure(2)
    g = noise["group_size"]
    ax.plot(g, noise["rms_error"], "o-", color=COLORS[0])
    ax.set_ylabel("RMS error of the advantage")
    ax.set_title(f"GRPO advantage vs a perfect baseline (p = {success_p:.2f})")
    ax_z.plot(g, noise["no_signal_share"], "o", color=COLORS[1], label="measured")
    ax_z.plot(g, noise["no_signal_exact"], "-", color=COLORS[7], label="p^G + (1−p)^G")
    ax_z.set_ylabel("groups with all rewards equal")
    ax_z.set_title("groups that teach nothing")
    ax_z.legend()
    for a in (ax, ax_z):
        a.set_xlabel("group size G")
        if chosen is not None:
            a.axvline(chosen, color="k", lw=0.6)
    return fig


def pair_losses_figure(curves: dict, margin: float, beta: float, lam: float):
    """DPO and DPOP loss, and the push on the chosen log-prob, as h_w moves at fixed margin."""
    fig, (ax, ax_p) = figure(2)
    h_w = curves["chosen_log_ratio"]
    # DPOP equals DPO right of 0: DPO goes on top, dashed, so both stay visible there
    ax.plot(h_w, curves["dpop_loss"], color=COLORS[1], label=f"DPOP (λ = {lam:g})")
    ax.plot(h_w, curves["dpo_loss"], color=COLORS[0], ls="--", label="DPO")
    ax.set_ylabel("loss")
    ax.set_title(f"one pair, margin h = {margin:+.1f}, β = {beta:g}")
    ax.legend()
    ax_p.plot(h_w, curves["dpop_push_chosen"], color=COLORS[1])
    ax_p.plot(h_w, curves["dpo_push_chosen"], color=COLORS[0], ls="--")
    ax_p.set_yscale("log")
    ax_p.set_ylabel("−dL/dh_w (push up on log π(y_w))")
    ax_p.set_title("how hard the loss lifts the chosen completion")
    for a in (ax, ax_p):
        a.axvline(0.0, color="k", lw=0.6)
        a.set_xlabel("chosen log-ratio h_w = log π(y_w)/π_ref(y_w)")
    return fig


def cache_split_figure(curve: dict, chosen_share: float, chosen_rate: float, total_slots: int, n_rows: int):
    """Hit rate against the hot share of a fixed cache, with the chosen split marked."""
    fig, ax = figure()
    ax.plot(curve["share"], curve["hit_rate"], "o-", color=COLORS[0])
    ax.plot([chosen_share], [chosen_rate], "o", ms=10, color=COLORS[1], label=f"chosen: {chosen_rate:.1%}")
    ax.set_xlabel("share of the cache pinned hot (rest: cold LRU)")
    ax.set_ylabel("neuron hit rate (replayed)")
    ax.set_title(f"{total_slots} cached rows of {n_rows} ({total_slots / n_rows:.0%})")
    ax.set_ylim(0, 1.02)
    ax.legend()
    return fig


def makespan_figure(sweep: dict, chosen_ratio: float):
    """Makespan of each schedule (in units of the I/O time) against the compute/I-O ratio."""
    fig, ax = figure()
    io = sweep["io_ms"]
    for k, (name, style) in enumerate((("serial", "-"), ("matrix", "-"), ("cluster", "-"), ("bound", ":"))):
        label = "bound max(compute, I/O)" if name == "bound" else f"{name}-level" if name != "serial" else name
        ax.plot(sweep["ratio"], sweep[name] / io, style, color=COLORS[k] if name != "bound" else "k", label=label)
    ax.axvline(chosen_ratio, color=COLORS[7], lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compute / I/O time")
    ax.set_ylabel("layer makespan / I/O time")
    ax.set_title("overlap saves at most the smaller lane")
    ax.legend()
    return fig


def budget_figure(table: dict, chosen: float):
    """Tokens/s against the memory budget: the planner's prediction and the stored measurement."""
    fig, ax = figure()
    x = table["budget_over_ffn"]
    ax.plot(x, table["predicted_tok_s"], "s--", color=COLORS[7], label="predicted (planner)")
    ax.plot(x, table["tok_s"], "o-", color=COLORS[0], label="measured (stored benchmark)")
    k = int(np.argmin(np.abs(x - chosen)))
    ax.plot([x[k]], [table["tok_s"][k]], "o", ms=11, mfc="none", color=COLORS[1])
    ax.set_xlabel("memory budget / FFN weight bytes")
    ax.set_ylabel("tokens / s")
    ax.set_title(f"budget {x[k]:.2f}×: measured {table['tok_s'][k]:.1f}, predicted {table['predicted_tok_s'][k]:.1f} tok/s")
    ax.legend()
    return fig
