"""Widgets of notebooks 12-14: the cache split, the pipeline schedules, the memory budget."""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from ..sparse.planner import tradeoffs
from ..viz import tradeoffs as vz
from ._panel import Panel, figure_panel

__all__ = ["cache_split_widget", "makespan_widget", "budget_widget"]

HOT_SHARES = np.linspace(0.0, 1.0, 11)
RATIOS = np.geomspace(0.1, 10.0, 41)


def cache_split_widget(traces: list, n_neurons: int, warmup: int = 10) -> Panel:
    """Cache size (share of all neuron rows) and hot/cold split against the replayed hit rate.

    ``traces[t][l]`` are the active neuron ids of token t in layer l (notebook 12 records them).
    """
    if not traces or not traces[0]:
        raise ValueError("traces must hold at least one token with at least one layer")
    n_rows = len(traces[0]) * int(n_neurons)
    controls = {
        "size": W.FloatSlider(value=0.2, min=0.05, max=0.6, step=0.05, description="cache / rows"),
        "hot_share": W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.1, description="hot share"),
    }
    cache: dict = {}   # hit-rate curves already replayed, by cache size

    def compute(v):
        slots = max(1, int(round(v["size"] * n_rows)))
        if slots not in cache:
            cache[slots] = tradeoffs.hit_rate_over_splits(traces, n_neurons, slots, HOT_SHARES, warmup)
        chosen = tradeoffs.split_hit_rate(traces, n_neurons, slots, v["hot_share"], warmup)
        return {"curve": cache[slots], "total_slots": slots, **chosen}

    def draw(result, v):
        return vz.cache_split_figure(result["curve"], v["hot_share"], result["hit_rate"],
                                     result["total_slots"], n_rows)

    return figure_panel(controls, compute, draw)


def makespan_widget(read_ms, compute_ms, in_memory_ms: float = 0.0) -> Panel:
    """The compute/I-O ratio against the serial, matrix-level and cluster-level makespans.

    Stage times come from a run (``teachkit.sparse.planner.tradeoffs.stage_times(trace.events, layer)``);
    the slider scales every compute time so that total compute / total I/O takes its value.
    """
    base = tradeoffs.pipeline_makespans(read_ms, compute_ms, in_memory_ms)
    if base["io_ms"] <= 0 or base["compute_ms"] <= 0:
        raise ValueError("the stage times need some I/O and some compute")
    measured = base["compute_ms"] / base["io_ms"]
    controls = {"ratio": W.FloatLogSlider(value=float(np.clip(measured, 0.1, 10.0)), base=10, min=-1, max=1,
                                          step=0.05, description="compute / I/O")}
    sweep = tradeoffs.makespan_over_ratios(read_ms, compute_ms, in_memory_ms, RATIOS)

    def compute(v):
        chosen = tradeoffs.makespan_over_ratios(read_ms, compute_ms, in_memory_ms, [v["ratio"]])
        return {**sweep, "chosen": {k: float(chosen[k][0]) for k in ("serial", "matrix", "cluster", "bound")},
                "measured_ratio": measured}

    def draw(result, v):
        return vz.makespan_figure(result, v["ratio"])

    return figure_panel(controls, compute, draw)


def budget_widget(bench: dict) -> Panel:
    """The memory budget against tokens/s: the planner's prediction and the stored measurement."""
    table = tradeoffs.budget_sweep_table(bench)
    options = [float(x) for x in table["budget_over_ffn"]]
    controls = {"budget": W.SelectionSlider(options=options, value=options[len(options) // 2],
                                            description="budget / FFN")}

    def compute(v):
        k = options.index(v["budget"])
        return {**table, "chosen": {key: table[key][k] for key in table}}

    def draw(result, v):
        return vz.budget_figure(result, v["budget"])

    return figure_panel(controls, compute, draw)
