"""Plots of the sparse-inference notebooks (10, 11). Each draws one figure and shows it."""

from __future__ import annotations

import numpy as np

from . import COLORS, figure, show

__all__ = ["plot_activation_heatmap", "plot_power_law", "plot_rank_fits", "plot_union_activity",
           "plot_predictor_tradeoff", "plot_kernel_times"]


def plot_activation_heatmap(H, title: str = "which neurons fire on each token",
                            labels=None, max_neurons: int = 256) -> None:
    """Tokens (rows) × neurons (columns), dark where the neuron fires (H > 0)."""
    A = (np.asarray(H) > 0)[:, :max_neurons]
    fig, ax = figure()
    ax.imshow(A, aspect="auto", cmap="Greys", interpolation="nearest")
    ax.set_xlabel(f"neuron (first {A.shape[1]})")
    ax.set_ylabel("token")
    if labels is not None:
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels([repr(c)[1:-1] or " " for c in labels], fontsize=6, family="monospace")
    ax.grid(False)
    ax.set_title(f"{title} ({A.mean():.1%} active)")
    show(fig)


def plot_power_law(freqs: dict, fits: dict | None = None,
                   title: str = "firing frequency by rank") -> None:
    """Log-log rank/frequency of each named frequency vector, with optional (alpha, C) fits."""
    fig, ax = figure()
    for k, (name, f) in enumerate(freqs.items()):
        f = np.sort(np.asarray(f))[::-1]
        r = np.arange(1, len(f) + 1)
        ax.loglog(r[f > 0], f[f > 0], color=COLORS[k % len(COLORS)], label=name)
        if fits and name in fits:
            a, c = fits[name]
            ax.loglog(r, c * r ** -a, "--", color=COLORS[k % len(COLORS)], alpha=0.6,
                      label=f"fit: {c:.2f}·r^-{a:.2f}")
    ax.set_xlabel("neuron rank (most frequent first)")
    ax.set_ylabel("fraction of tokens it fires on")
    ax.set_title(title)
    ax.legend(fontsize=8)
    show(fig)


def plot_rank_fits(freqs: dict, top: float = 0.5,
                   title: str = "is it a power law? the same curves on two axes", show_fits: bool = False) -> None:
    """Rank/frequency on log-log axes (a power law is straight) and on log-linear axes (an
    exponential is straight), with the R² of each straight-line fit over the ``top`` ranks.

    ``show_fits=True`` also draws each fitted line (dashed) over the ranks it was fitted on, and
    shades those ranks: the R² describes the shaded part of the curves only.
    """
    from teachkit.sparse.model.stats import compare_fits

    fig, (a1, a2) = figure(2)
    fitted_to = 0
    for k, (name, f) in enumerate(freqs.items()):
        f = np.sort(np.asarray(f))[::-1]
        r = np.arange(1, len(f) + 1)
        fits = compare_fits(f, top)
        c = COLORS[k % len(COLORS)]
        a1.loglog(r[f > 0], f[f > 0], color=c, label=f"{name} (R² {fits['power_law'][2]:.2f})")
        a2.semilogy(r[f > 0], f[f > 0], color=c, label=f"{name} (R² {fits['exponential'][2]:.2f})")
        if show_fits:       # the ranks compare_fits uses: the top share of all ranks, among those that fire
            rf = r[:max(2, min(int(top * len(f)), int((f > 0).sum())))].astype(float)
            (alpha, c_pow, _), (lam, c_exp, _) = fits["power_law"], fits["exponential"]
            a1.loglog(rf, c_pow * rf ** -alpha, "--", color=c, lw=1)
            a2.semilogy(rf, c_exp * np.exp(-lam * rf), "--", color=c, lw=1)
            fitted_to = max(fitted_to, int(rf[-1]))
    if show_fits:
        for ax in (a1, a2):
            ax.axvspan(1, fitted_to, color="0.9", zorder=0, label="ranks fitted (dashed: the fits)")
    a1.set_xlabel("neuron rank (log)")
    a1.set_ylabel("fraction of tokens it fires on")
    a1.set_title("log-log: a power law is straight")
    a2.set_xlabel("neuron rank (linear)")
    a2.set_title("log-linear: an exponential is straight")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.suptitle(f"{title} (R²: straight-line fits over the top {top:.0%} of ranks)", fontsize=10)
    show(fig)


def plot_union_activity(windows, unions: dict, title: str = "one token is sparse, a prompt is dense"):
    """Fraction of neurons active in the union over a window of k tokens, against k."""
    fig, ax = figure()
    for name, u in unions.items():
        ax.semilogx(windows, u, "o-", label=name)
    ax.set_xlabel("tokens in the batch / prompt (k)")
    ax.set_ylabel("neurons active for ≥ 1 token")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    show(fig)


def plot_predictor_tradeoff(rows: dict, title: str = "predictor: recall vs neurons computed"):
    """``rows[name] = [(threshold, recall, precision, predicted_fraction), ...]``."""
    fig, (a1, a2) = figure(2)
    for name, rs in rows.items():
        rs = np.asarray(rs)
        a1.plot(rs[:, 3], rs[:, 1], "o-", label=name)
        a2.plot(rs[:, 1], rs[:, 2], "o-", label=name)
    a1.set_xlabel("fraction of neurons predicted active")
    a1.set_ylabel("recall")
    a2.set_xlabel("recall")
    a2.set_ylabel("precision")
    a1.legend(fontsize=8)
    a1.set_title(title)
    a2.set_title("lower threshold → higher recall, lower precision")
    show(fig)


def plot_kernel_times(activity, times_ms: dict, bound_ms=None, dense_ms: float | None = None,
                      title: str = "time per FFN call against activity",
                      bound_label: str = "fp32 bandwidth bound (bytes / measured GB/s)",
                      xlabel: str = "fraction of neurons active") -> None:
    """Median ms per call of each kernel; the bandwidth bound and the dense time as lines.

    ``xlabel`` names what the x values are: pass ``"fraction of neurons listed (top-k)"`` when each
    level is a top-k list, many of whose neurons may have h = 0.
    """
    fig, ax = figure()
    for name, t in times_ms.items():
        ax.loglog(activity, t, "o-", label=name)
    if bound_ms is not None:
        ax.loglog(activity, bound_ms, "k--", label=bound_label)
    if dense_ms is not None:
        ax.axhline(dense_ms, color="grey", ls=":", label="dense numpy FFN")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(activity))
    ax.set_xticklabels([f"{a:.1%}" for a in activity])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ms per call (median)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    show(fig)
