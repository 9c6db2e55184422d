"""Widgets of notebook 09: the DPO/IPO landscape and the method explorer over the stored runs.

No logic lives in a callback: a callback reads the controls and calls one pure function
(``teachkit.viz.showdown.plot_dpo_landscape``, ``teachkit.rlhf.showdown_data.select_runs``, ...).
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W

from ..viz import showdown as vz
from ._panel import Panel, _redraw

__all__ = ["dpo_landscape_widget", "method_explorer"]

LANDSCAPE_BETAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def dpo_landscape_widget(betas: tuple[float, ...] = LANDSCAPE_BETAS,
                         selected: tuple[float, ...] = (0.1, 0.5, 1.0)) -> Panel:
    """Loss and gradient weight of one preference pair against its margin, for several β.

    Controls: ``betas`` (several at once), ``loss`` (DPO or IPO), ``axis`` (log-ratio margin h or
    implicit-reward margin β·h), ``span`` (half-width of the x range). Button ``reset``.
    """
    if not betas or any(b <= 0 for b in betas):
        raise ValueError(f"betas must be positive numbers, got {betas!r}")
    if not set(selected) <= set(betas):
        raise ValueError(f"selected {selected!r} must be among betas {betas!r}")
    defaults = {"betas": tuple(selected), "loss": "dpo", "axis": "log-ratio", "span": 10.0}
    controls = {
        "betas": W.SelectMultiple(options=list(betas), value=defaults["betas"], description="β",
                                  rows=len(betas)),
        "loss": W.ToggleButtons(options=[("DPO", "dpo"), ("IPO", "ipo")], value="dpo",
                                description="loss"),
        "axis": W.ToggleButtons(options=[("log-ratio h", "log-ratio"), ("implicit β·h", "implicit")],
                                value="log-ratio", description="x axis"),
        "span": W.FloatSlider(value=10.0, min=5.0, max=30.0, step=5.0, description="± range"),
    }
    buttons = {"reset": W.Button(description="reset")}
    output = W.Output()
    state: dict = {}

    def refresh(*_):
        chosen = controls["betas"].value
        if not chosen:  # an empty selection draws nothing rather than failing
            state["last"] = {}
            with output:
                output.clear_output()
                print("select at least one β")
            return
        _redraw(output, state, lambda: vz.plot_dpo_landscape(
            chosen, controls["loss"].value, controls["span"].value, controls["axis"].value))

    def reset(_):
        for name, value in defaults.items():
            controls[name].value = value
        refresh()

    for c in controls.values():
        c.observe(refresh, names="value")
    buttons["reset"].on_click(reset)
    ui = W.VBox([W.HBox([controls["betas"], W.VBox([controls["loss"], controls["axis"],
                                                     controls["span"], buttons["reset"]])]), output])
    refresh()
    return Panel(ui, controls, buttons, output, refresh, state)


# --------------------------------------------------------------------------- method explorer

def _key(method: str, beta: float, knobs: dict) -> tuple:
    return (method, round(beta, 9), tuple(sorted((k, round(float(v), 9)) for k, v in knobs.items())))


def method_explorer(runs: list[dict], live: Callable[..., dict] | None = None) -> Panel:
    """Pick a method and its knobs and see its curves.

    The stored runs (``runs``) give the curves for every method at every stored β instantly. The
    ``train live`` button calls ``live(method, beta=..., **knobs) -> history`` (a small run of the
    runner) and overlays its curves, so the knobs that the stored runs do not vary can be explored.
    """
    from ..rlhf import runner, showdown_data

    ok = [r for r in runs if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("method_explorer needs at least one finished run")
    methods = sorted({r["method"] for r in ok}, key=runner.method_order)

    def betas_of(method):
        return sorted({r["beta"] for r in ok if r["method"] == method})

    def initial_beta(method, options):
        """The method's named default β if a stored run has it, else the middle stored β."""
        spec = runner.METHODS.get(method)
        if spec is not None:
            match = [b for b in options if abs(b - spec.default_beta) <= 1e-9 * max(1.0, abs(b))]
            if match:
                return match[0]
        return options[(len(options) - 1) // 2]

    controls = {
        "method": W.Dropdown(options=methods, value=methods[0], description="method"),
        "beta": W.SelectionSlider(options=betas_of(methods[0]), description="β"),
    }
    for name, (label, kind, lo, hi, step, default) in runner.KNOBS.items():
        if kind == "log":
            controls[name] = W.FloatLogSlider(value=default, base=10, min=lo, max=hi, step=step,
                                              description=label, readout_format=".1e")
        else:
            slider = W.IntSlider if kind == "int" else W.FloatSlider
            controls[name] = slider(value=default, min=lo, max=hi, step=step, description=label)
    buttons = {"train": W.Button(description="train live (small)", disabled=live is None),
               "defaults": W.Button(description="knobs to defaults")}
    output = W.Output()
    state: dict = {"live": {}}

    def sync_knobs():
        used = runner.METHOD_KNOBS.get(controls["method"].value, {})
        for name in runner.KNOBS:
            controls[name].disabled = name not in used

    def knob_values(method):
        return {k: controls[k].value for k in runner.METHOD_KNOBS.get(method, {})}

    def refresh(*_):
        if state.get("busy"):
            return
        method, beta = controls["method"].value, controls["beta"].value
        knobs = knob_values(method)
        stored = showdown_data.select_runs(ok, method=method, beta=beta, knobs=knobs)
        histories = {f"stored β={r['beta']:g}": r["history"] for r in stored}
        histories.update(state["live"].get(_key(method, beta, knobs), {}))
        state["shown"] = sorted(histories)
        if not histories:
            with output:
                output.clear_output()
                print(f"no stored {method} run with β={beta:g} and {knobs}: press 'train live'")
            state["last"] = {}
            return
        _redraw(output, state, lambda: (vz.plot_history(histories, title=method), histories)[1])

    def on_method(change):
        method = controls["method"].value
        state["busy"] = True              # one redraw at the end, not one per control
        sync_knobs()
        for knob, value in (runner.knob_defaults(method) if method in runner.METHODS else {}).items():
            controls[knob].value = value  # where the stored runs sit
        if change is None or isinstance(change, dict):   # a new method (not the defaults button)
            options = betas_of(method)
            controls["beta"].options = options
            controls["beta"].value = initial_beta(method, options)
        state["busy"] = False
        refresh()

    def train(_):
        if live is None:
            return
        method, beta = controls["method"].value, controls["beta"].value
        knobs = knob_values(method)
        history = live(method, beta=beta, **knobs)
        state["live"].setdefault(_key(method, beta, knobs), {})["live run"] = history
        refresh()

    controls["method"].observe(on_method, names="value")
    controls["beta"].observe(refresh, names="value")

    def on_knob(change):  # a knob the selected method does not have changes nothing on screen
        if change["owner"] is not None and not change["owner"].disabled:
            refresh()

    for name in runner.KNOBS:
        controls[name].observe(on_knob, names="value")
    buttons["train"].on_click(train)
    buttons["defaults"].on_click(on_method)   # the method's defaults: where its stored runs sit
    on_method(None)
    knobs = [controls[k] for k in runner.KNOBS]
    half = (len(knobs) + 1) // 2
    ui = W.VBox([W.HBox([controls["method"], controls["beta"]]),
                 W.HBox([W.VBox(knobs[:half]), W.VBox(knobs[half:])]),
                 W.HBox([buttons["train"], buttons["defaults"]]), output])
    return Panel(ui, controls, buttons, output, refresh, state)
