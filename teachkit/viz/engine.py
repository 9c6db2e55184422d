"""Plots of the flash-engine notebooks (12-14): I/O profile, cache, Gantt, ablation, sweep."""

from __future__ import annotations

import textwrap

import numpy as np

from ..sparse.runtime.trace import CLUSTER_COMPUTE_STAGES, TraceEvent
from . import COLORS, WIDE, figure, show

__all__ = ["plot_io_profile", "plot_cache_history", "plot_cache_runs", "plot_hit_curve", "plot_gantt",
           "plot_gantt_pair", "plot_ablation", "plot_budget_sweep", "plot_predicted_vs_measured"]

STAGE_COLORS = {"predict": COLORS[7], "attention": COLORS[5], "submit": "#17becf", "bundle_read": COLORS[0],
                "gate_read": COLORS[0], "updown_read": COLORS[4], "gate_compute": COLORS[2],
                "updown_compute": COLORS[3], "fused_compute": COLORS[1], "lookahead": COLORS[6],
                "prefetch_read": "#9ecae1", "wait": "#dddddd", "prefill": COLORS[6]}


def plot_io_profile(profile: dict, title: str = "random reads on this machine (O_DIRECT)") -> None:
    """Bandwidth against read size, one line per queue depth, plus the sequential rate."""
    fig, ax = figure()
    table = {int(s): {int(q): v for q, v in row.items()} for s, row in profile["random"].items()}
    sizes = sorted(table)
    for k, q in enumerate(sorted(table[sizes[0]])):
        ax.semilogx([s / 1024 for s in sizes], [table[s][q] / 1e6 for s in sizes], "o-",
                    color=COLORS[k], label=f"random, {q} in flight")
    if "sequential" in profile:
        ax.axhline(profile["sequential"] / 1e6, ls="--", color="k", alpha=0.6, label="sequential 1 MiB")
    ax.set_xlabel("read size (KiB)")
    ax.set_ylabel("MB/s")
    ax.set_title(title)
    ax.legend()
    show(fig)


def plot_cache_history(history: list, capacity: dict | None = None,
                       title: str = "the segmented cache, token by token") -> None:
    """Occupancy and hit rate of the hot and cold regions over tokens.

    With ``capacity = {"hot": slots, "cold": slots}`` occupancy is drawn as a fraction of it.
    """
    fig, (a1, a2) = figure(2)
    t = np.arange(len(history))
    for k, region in enumerate(("hot", "cold")):
        occ = np.array([h[f"{region}_occupied"] for h in history], dtype=float)
        if capacity:
            occ /= max(1, capacity[region])
        n = np.array([h[f"{region}_hits"] + h[f"{region}_misses"] for h in history], dtype=float)
        hits = np.array([h[f"{region}_hits"] for h in history], dtype=float)
        a1.plot(t, occ, color=COLORS[k], label=f"{region} ({'clusters' if region == 'hot' else 'neurons'})")
        rate = np.divide(hits, n, out=np.full_like(n, np.nan), where=n > 0)
        a2.plot(t, rate, color=COLORS[k], label=region)
    a1.set_xlabel("token")
    a1.set_ylabel("share of slots in use" if capacity else "slots in use")
    a1.legend()
    a2.set_xlabel("token")
    a2.set_ylabel("hit rate")
    a2.set_ylim(0, 1.05)
    a2.legend()
    fig.suptitle(title)
    show(fig)


def plot_cache_runs(runs: dict, title: str = "the segmented cache, token by token") -> None:
    """Several runs of the cache side by side, one column each: hit rate of the hot and cold regions
    per token (top), and the KiB each region read from flash per token (bottom, one scale for all
    runs, so a run that reads many times more stands out).

    ``runs`` maps a label to a ``cache.history`` (the records of ``SegmentedCache.end_token``).
    """
    fig, axes = figure(len(runs), 2, sharey="row", squeeze=False)
    for col, (label, history) in enumerate(runs.items()):
        a1, a2 = axes[0, col], axes[1, col]
        t = np.arange(len(history))
        for k, region in enumerate(("hot", "cold")):
            hits = np.array([h[f"{region}_hits"] for h in history], dtype=float)
            n = hits + np.array([h[f"{region}_misses"] for h in history], dtype=float)
            a1.plot(t, np.divide(hits, n, out=np.full_like(n, np.nan), where=n > 0), color=COLORS[k], label=region)
            a2.plot(t, [h[f"{region}_bytes_in"] / 1024 for h in history], color=COLORS[k], label=region)
        a1.set_title(label)
        a1.set_ylim(0, 1.05)
        a2.set_xlabel("token")
        if col == 0:
            a1.set_ylabel("hit rate")
            a2.set_ylabel("KiB read from flash")
            a1.legend()
    fig.suptitle(title)
    show(fig)


def plot_hit_curve(sizes, rates: dict, xlabel: str = "cold slots", title: str = "hit rate against cache size") -> None:
    """One hit-rate curve per named configuration (e.g. with and without a hot region).

    ``sizes`` is one x-axis for every curve, or a dict with each curve's own x (e.g. the neurons
    each configuration holds in memory, so that curves are compared at equal memory).
    """
    fig, ax = figure()
    for k, (name, r) in enumerate(rates.items()):
        x = sizes[name] if isinstance(sizes, dict) else sizes
        ax.plot(x, r, "o-", color=COLORS[k], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("hit rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend()
    show(fig)


def _events(events, layers=None) -> list[TraceEvent]:
    """The events of ``layers`` (None: all), as named events (a stored trace may hold plain tuples)."""
    return [e for e in map(TraceEvent._make, events) if layers is None or e.layer in layers]


# rows="stage": one row per kind of compute-thread work, labelled with what its bars are
AHEAD_STAGES = ("lookahead", "prefetch_read")   # work for layer l + 1 done while layer l runs

STAGE_ROWS = {"gate_compute": "compute: gate", "updown_compute": "compute: up/down",
              "fused_compute": "compute: fused\n(gate + up/down)"}
LOOKUP = "lookup (not traced)"
ROW_INCHES = 0.3         # rows="stage": the height each row gets (two-line labels stay apart)


def _fit_rows(fig, n_rows: int, panels: int = 1) -> None:
    """Make each panel at least tall enough for ``n_rows`` rows."""
    fig.set_size_inches(WIDE[0], panels * max(WIDE[1], ROW_INCHES * n_rows + 1.4))


def _other_row(ev) -> str:
    """The label of the row that holds the compute thread's other work: the stages it holds, in
    the legend's order, with ``lookup`` after ``predict`` when there is an untraced lookup."""
    order = {s: k for k, s in enumerate(STAGE_COLORS)}
    stages = sorted({e.stage for e in ev if e.lane == "compute" and e.stage not in STAGE_ROWS},
                    key=lambda s: (order.get(s, len(order)), s))
    if _lookup_gaps(ev) and "predict" in stages:
        stages.insert(stages.index("predict") + 1, "lookup")
    return textwrap.fill("compute: " + ", ".join(stages), 24)


def _check_rows(rows: str) -> None:
    """Before a figure is made, so a bad ``rows`` leaves no figure open."""
    if rows not in ("lane", "stage"):
        raise ValueError(f"rows must be 'lane' or 'stage', got {rows!r}")


def _row_names(ev, rows: str, other: str | None = None, io_row: str | None = None) -> dict:
    """Each event's row. ``rows="lane"``: its lane, up/down and fused compute on a row of their
    own (``"<lane> up/down"``). ``rows="stage"``: compute-lane events by stage (:data:`STAGE_ROWS`;
    the rest on one row, labelled ``other`` or by :func:`_other_row`). Either way reads overlap in
    time, so each one in flight gets its own row, ``io 1``, ``io 2``, ...; ``io_row`` (a label
    starting with ``io``) puts every read on that one row instead, for reads that take turns."""
    _check_rows(rows)
    if rows == "lane":
        names = {e: e.lane + (" up/down" if e.stage in CLUSTER_COMPUTE_STAGES else "") for e in ev}
    else:
        other = other or _other_row(ev)
        names = {e: STAGE_ROWS.get(e.stage, other) if e.lane == "compute" else e.lane for e in ev}
    if io_row is not None:
        if not io_row.startswith("io"):
            raise ValueError(f"io_row must start with 'io' (the reads' rows go below the compute's), got {io_row!r}")
        return {**names, **{e: io_row for e in ev if e.lane == "io"}}
    ends: list = []
    for e in sorted((e for e in ev if e.lane == "io"), key=lambda e: e.t0):
        k = next((i for i, end in enumerate(ends) if end <= e.t0), len(ends))
        ends[k:k + 1] = [e.t1]
        names[e] = f"io {k + 1}"
    return names


def _row_order(names) -> list:
    """Bottom up: the reads (``io 1`` lowest), then the compute rows (the stage rows in the order
    of :data:`STAGE_ROWS`, fused work on top)."""
    stage_rank = {label: k + 1 for k, label in enumerate(STAGE_ROWS.values())}
    return sorted(set(names), key=lambda s: (not s.startswith("io"), stage_rank.get(s, 0),
                                             int(s[3:]) if s[3:].isdigit() else 0, len(s), s))


def _lookup_gaps(ev) -> list:
    """Per layer, the untraced time between the end of ``predict`` and the first ``submit`` after
    it, as ``(layer, t0, t1)`` in seconds: the cache lookup and cutting the misses into clusters."""
    gaps = []
    for layer in sorted({e.layer for e in ev}):
        pred = [e.t1 for e in ev if e.layer == layer and e.stage == "predict"]
        sub = [e.t0 for e in ev if e.layer == layer and e.stage == "submit" and pred and e.t0 >= max(pred)]
        if sub and min(sub) > max(pred):
            gaps.append((layer, max(pred), min(sub)))
    return gaps


def _gantt(ax, events, title, layers=None, rows: str = "lane", row_names=None, other=None, io_row=None):
    """One row per lane (``rows="lane"``: up/down compute on its own row, so short bars stay
    visible) or per kind of compute-thread work (``rows="stage"``, which also marks the untraced
    lookup between predict and submit); a dashed line where each layer's last read lands: work
    left of it overlapped the reads. Each layer is named above the bars where its work starts (a
    look-ahead's prefetch for it may start earlier). ``row_names``: the rows to draw, bottom up
    (default: those the events use); ``other``: the label of the stage rows' catch-all row;
    ``io_row``: as in :func:`_row_names`."""
    ev = _events(events, layers)
    if not ev:
        ax.set_title(f"{title} (no events)")
        return
    t0 = min(e.t0 for e in ev)
    span = max(e.t1 for e in ev) - t0
    if rows == "stage":
        other = other or _other_row(ev)
    names = _row_names(ev, rows, other, io_row)
    lanes = list(row_names) if row_names is not None else _row_order(names.values())
    for e in ev:
        width = max(e.seconds, 0.004 * span)        # at least a visible sliver
        ax.barh(lanes.index(names[e]), width * 1e3, left=(e.t0 - t0) * 1e3, height=0.7,
                color=STAGE_COLORS.get(e.stage, "k"), edgecolor="white", linewidth=0.3)
    if rows == "stage":
        for _, a, b in _lookup_gaps(ev):
            ax.barh(lanes.index(other), (b - a) * 1e3, left=(a - t0) * 1e3, height=0.7, color="none",
                    edgecolor="0.45", hatch="////", linewidth=0.6)
    for layer in sorted({e.layer for e in ev}):
        ends = [e.t1 for e in ev if e.layer == layer and e.is_read]
        if ends:
            ax.axvline((max(ends) - t0) * 1e3, color="k", ls="--", lw=0.8)
    n_io = sum(s.startswith("io") for s in lanes)
    if rows == "stage" and 0 < n_io < len(lanes):        # reads below the line, the compute thread above
        ax.axhline(n_io - 0.5, color="0.6", lw=0.6)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes, fontsize=8 if rows == "stage" else None)
    ax.set_ylim(-0.6, len(lanes) + 0.2)                # room above the top row for the layer names
    for layer in sorted({e.layer for e in ev}):
        own = [e for e in ev if e.layer == layer]
        # a layer starts at its attention; the look-ahead's guess and reads for it run during the layer before
        start = min((e.t0 for e in own if e.stage == "attention"),
                    default=min((e.t0 for e in own if e.stage not in AHEAD_STAGES), default=min(e.t0 for e in own)))
        ax.annotate(f"layer {layer}", ((start - t0) * 1e3, len(lanes) - 0.35), xytext=(3, 0),
                    textcoords="offset points", fontsize=7, va="bottom", ha="left")
    ax.set_xlabel("ms (dashed: the layer's last read lands)")
    ax.set_title(title)
    ax.grid(False)


def _stage_label(stage: str, lane: str) -> str:
    """rows="stage": a stage's legend name, worded like its row (``compute: gate``, ``io: bundle read``)."""
    if lane == "compute":
        return STAGE_ROWS.get(stage, "compute: " + stage).split("\n")[0]
    return f"{lane}: {stage.replace('_', ' ')}"


def _legend(ax, stages, lookup: bool = False, events=None):
    """The stages' colours, outside the axes on the right, so no bar is hidden under it.
    ``events`` (rows="stage"): name each stage like its row (:func:`_stage_label`)."""
    from matplotlib.patches import Patch

    lane = {e.stage: e.lane for e in events} if events is not None else {}
    handles = [Patch(color=STAGE_COLORS.get(s, "k"), label=_stage_label(s, lane[s]) if s in lane else s)
               for s in stages]
    if lookup:
        handles.append(Patch(facecolor="none", edgecolor="0.45", hatch="////",
                             label="compute: " + LOOKUP if events is not None else LOOKUP))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              title="stage", title_fontsize=7)


def _stages(events, layers) -> list:
    order = {s: k for k, s in enumerate(STAGE_COLORS)}
    return sorted({e.stage for e in _events(events, layers)}, key=lambda s: (order.get(s, len(order)), s))


def plot_gantt(events, title: str = "one layer, stage by stage", layers=None, rows: str = "lane") -> None:
    """Gantt chart of trace events (:class:`~teachkit.sparse.runtime.trace.TraceEvent`): I/O lane(s) and compute.

    ``rows="lane"``: one row per lane; ``rows="stage"``: the compute thread's work one row per
    kind (gate, up/down, fused, the rest), the untraced lookup before each ``submit`` hatched.
    """
    _check_rows(rows)
    ev = _events(events, layers)
    fig, ax = figure(wide=True)
    if rows == "stage":
        _fit_rows(fig, len(set(_row_names(ev, rows).values())))
    _gantt(ax, ev, title, None, rows)
    _legend(ax, _stages(ev, None), lookup=rows == "stage" and bool(_lookup_gaps(ev)),
            events=ev if rows == "stage" else None)
    show(fig)


def plot_gantt_pair(left, right, titles=("matrix-level pipeline", "cluster-level pipeline"), layers=None,
                    rows: str = "lane", io_row: str | None = None) -> None:
    """Two traces one above the other, on the same time axis (tick labels on both), one legend
    beside them. ``rows`` as in :func:`plot_gantt`; both charts get the same rows. ``io_row``: a
    label (starting with ``io``) for one row that holds every read, e.g. a model's single I/O
    lane; by default each read in flight gets its own row (``io 1``, ``io 2``, ...)."""
    _check_rows(rows)
    fig, axes = figure(1, 2, wide=True, sharex=True)
    left, right = _events(left, layers), _events(right, layers)
    other = _other_row(left + right) if rows == "stage" else None
    row_names = _row_order(set(_row_names(left, rows, other, io_row).values())
                           | set(_row_names(right, rows, other, io_row).values()))
    if rows == "stage":
        _fit_rows(fig, len(row_names), panels=2)
    for ax, ev, ti in zip(axes, (left, right), titles):
        _gantt(ax, ev, ti, None, rows, row_names, other, io_row)
        ax.tick_params(labelbottom=True)
    lookup = rows == "stage" and bool(_lookup_gaps(left) or _lookup_gaps(right))
    _legend(axes[0], _stages(left + right, None), lookup, left + right if rows == "stage" else None)
    show(fig)


def plot_ablation(steps: list, title: str = "ablation: what each idea buys") -> None:
    """Bars of tok/s for ``[{"step": name, "tok_s": value}, ...]`` with the gain over the previous."""
    fig, ax = figure()
    names = [s["step"] for s in steps]
    vals = [s["tok_s"] for s in steps]
    bars = ax.bar(range(len(vals)), vals, color=COLORS[:len(vals)])
    for k, (b, v) in enumerate(zip(bars, vals)):
        gain = "" if k == 0 else f"\n×{v / vals[k - 1]:.2f}"
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}{gain}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(vals) * 1.3)                 # room for the labels below the title
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(names, rotation=15, fontsize=8)
    ax.set_ylabel("tokens/s")
    ax.set_title(title)
    show(fig)


def plot_budget_sweep(sweep: list, title: str = "memory budget sweep") -> None:
    """tok/s (left axis) and cold-cache hit rate (right axis) against budget / FFN size."""
    rows = [r for r in sweep if "tok_s" in r]
    fig, ax = figure()
    x = [r["budget_over_ffn"] for r in rows]
    ax.plot(x, [r["tok_s"] for r in rows], "o-", color=COLORS[0], label="measured tok/s")
    if all("predicted_tok_s" in r for r in rows):
        ax.plot(x, [r["predicted_tok_s"] for r in rows], "s--", color=COLORS[0], alpha=0.5, label="planner's prediction")
    ax.set_xlabel("memory budget / FFN bytes")
    ax.set_ylabel("tokens/s")
    ax2 = ax.twinx()
    ax2.plot(x, [r["hit_rate_cold"] for r in rows], "^-", color=COLORS[1], label="cold hit rate")
    ax2.set_ylabel("cold-region hit rate")
    ax2.set_ylim(0, 1.05)
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left")
    ax.set_title(title)
    show(fig)


def plot_predicted_vs_measured(names, predicted, measured, title: str = "planner: predicted vs measured") -> None:
    """Scatter of measured against predicted tok/s, with the y = x line."""
    fig, ax = figure()
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    ax.scatter(p, m, color=COLORS[0])
    for n, a, b in zip(names, p, m):
        ax.annotate(str(n), (a, b), fontsize=8, xytext=(3, 3), textcoords="offset points")
    hi = max(p.max(), m.max()) * 1.1
    ax.plot([0, hi], [0, hi], "--", color="k", alpha=0.5, label="measured = predicted")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("predicted tok/s")
    ax.set_ylabel("measured tok/s")
    ax.set_title(title)
    ax.legend()
    show(fig)
