"""Widgets of notebook 09: the DPO/IPO landscape and the method explorer over the stored runs.

No logic lives in a callback: a callback reads the controls and calls one pure function
(``teachkit.viz.showdown.plot_dpo_landscape``; for the explorer :func:`explorer_curves`, what to draw
for a setting of its controls, and :func:`stored_betas`, :func:`initial_beta`, :func:`knobs_of`,
:func:`stored_knobs`, what the controls offer for a method).
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W

from ..viz import showdown as vz
from ._panel import Panel, redraw

__all__ = ["dpo_landscape_widget", "method_explorer", "finished_runs", "explorer_methods", "stored_betas",
           "initial_beta", "knobs_of", "stored_knobs", "live_key", "explorer_curves"]

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
        redraw(output, state, lambda: vz.plot_dpo_landscape(
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


# --------------------------------------------------------------------------- method explorer: what to show

def _finished(run: dict) -> bool:
    return run.get("status", "ok") == "ok"


def finished_runs(runs: list[dict]) -> list[dict]:
    """The runs that finished (``status`` "ok", or no status); a ValueError when none did."""
    ok = [r for r in runs if _finished(r)]
    if not ok:
        raise ValueError("method_explorer needs at least one finished run")
    return ok


def explorer_methods(runs: list[dict]) -> list[str]:
    """The methods with a finished run, in the course's order (on-policy first)."""
    from ..rlhf import runner

    return sorted({r["method"] for r in runs if _finished(r)}, key=runner.method_order)


def stored_betas(runs: list[dict], method: str) -> list[float]:
    """The β values at which ``method`` has a finished run, ascending."""
    return sorted({r["beta"] for r in runs if _finished(r) and r["method"] == method})


def initial_beta(method: str, options: list[float]) -> float:
    """The method's named default β if ``options`` (its stored β) has it, else the middle stored β."""
    from ..rlhf import runner

    spec = runner.METHODS.get(method)
    if spec is not None:
        match = [b for b in options if abs(b - spec.default_beta) <= 1e-9 * max(1.0, abs(b))]
        if match:
            return match[0]
    return options[(len(options) - 1) // 2]


def knobs_of(method: str) -> tuple[str, ...]:
    """The runner knobs ``method`` has; the explorer disables the others."""
    from ..rlhf import runner

    return tuple(runner.METHOD_KNOBS.get(method, {}))


def stored_knobs(method: str) -> dict[str, float]:
    """Where the stored runs of ``method`` sit: its knobs' config defaults ({} for a method the
    runner does not know)."""
    from ..rlhf import runner

    return runner.knob_defaults(method) if method in runner.METHODS else {}


def live_key(method: str, beta: float, knobs: dict) -> tuple:
    """The key a live run is kept under: the method, β and the knob values, rounded to 1e-9."""
    return (method, round(beta, 9), tuple(sorted((k, round(float(v), 9)) for k, v in knobs.items())))


def explorer_curves(runs: list[dict], live_runs: dict, method: str, beta: float, knobs: dict) -> dict[str, dict]:
    """What the explorer draws for one setting of its controls: label -> history.

    The finished runs of ``method`` at ``beta`` whose config has the values ``knobs`` (labelled
    ``stored β=...``), plus the live runs trained at exactly this setting
    (``live_runs[live_key(method, beta, knobs)]``, label -> history). Empty when there is nothing
    to draw.
    """
    from ..rlhf import showdown_data

    stored = showdown_data.select_runs(runs, method=method, beta=beta, knobs=knobs)
    curves = {f"stored β={r['beta']:g}": r["history"] for r in stored}
    curves.update(live_runs.get(live_key(method, beta, knobs), {}))
    return curves


# --------------------------------------------------------------------------- method explorer: the widget

def _knob_controls() -> dict[str, W.Widget]:
    """One slider per runner knob, over the range and at the default that ``runner.KNOBS`` gives."""
    from ..rlhf import runner

    controls: dict[str, W.Widget] = {}
    for name, (label, kind, lo, hi, step, default) in runner.KNOBS.items():
        if kind == "log":
            controls[name] = W.FloatLogSlider(value=default, base=10, min=lo, max=hi, step=step,
                                              description=label, readout_format=".1e")
        else:
            slider = W.IntSlider if kind == "int" else W.FloatSlider
            controls[name] = slider(value=default, min=lo, max=hi, step=step, description=label)
    return controls


def _explorer_layout(controls: dict, knobs: list, buttons: dict, output: W.Output) -> W.Widget:
    """Method and β on top, the knobs in two columns, the buttons, then the figure."""
    half = (len(knobs) + 1) // 2
    return W.VBox([W.HBox([controls["method"], controls["beta"]]),
                   W.HBox([W.VBox(knobs[:half]), W.VBox(knobs[half:])]),
                   W.HBox([buttons["train"], buttons["defaults"]]), output])


def method_explorer(runs: list[dict], live: Callable[..., dict] | None = None) -> Panel:
    """Pick a method and its knobs and see its curves.

    The stored runs (``runs``) give the curves for every method at every stored β instantly. The
    ``train live`` button calls ``live(method, beta=..., **knobs) -> history`` (a small run of the
    runner) and overlays its curves, so the knobs that the stored runs do not vary can be explored.
    What is drawn for a setting of the controls is :func:`explorer_curves`.
    """
    ok = finished_runs(runs)
    methods = explorer_methods(ok)
    controls = {"method": W.Dropdown(options=methods, value=methods[0], description="method"),
                "beta": W.SelectionSlider(options=stored_betas(ok, methods[0]), description="β"),
                **_knob_controls()}
    knob_names = [k for k in controls if k not in ("method", "beta")]
    buttons = {"train": W.Button(description="train live (small)", disabled=live is None),
               "defaults": W.Button(description="knobs to defaults")}
    output = W.Output()
    state: dict = {"live": {}}

    def setting():
        method = controls["method"].value
        return method, controls["beta"].value, {k: controls[k].value for k in knobs_of(method)}

    def refresh(*_):
        if state.get("busy"):
            return
        method, beta, knobs = setting()
        curves = explorer_curves(ok, state["live"], method, beta, knobs)
        state["shown"] = sorted(curves)
        if not curves:
            with output:
                output.clear_output()
                print(f"no stored {method} run with β={beta:g} and {knobs}: press 'train live'")
            state["last"] = {}
            return
        redraw(output, state, lambda: (vz.plot_history(curves, title=method), curves)[1])

    def to_defaults(_=None, new_method=False):
        method = controls["method"].value
        state["busy"] = True              # one redraw at the end, not one per control
        for name in knob_names:
            controls[name].disabled = name not in knobs_of(method)
        for knob, value in stored_knobs(method).items():
            controls[knob].value = value  # where the stored runs sit
        if new_method:
            options = stored_betas(ok, method)
            controls["beta"].options = options
            controls["beta"].value = initial_beta(method, options)
        state["busy"] = False
        refresh()

    def train(_):
        if live is None:
            return
        method, beta, knobs = setting()
        state["live"].setdefault(live_key(method, beta, knobs), {})["live run"] = live(method, beta=beta, **knobs)
        refresh()

    def on_knob(change):  # a knob the selected method does not have changes nothing on screen
        if change["owner"] is not None and not change["owner"].disabled:
            refresh()

    controls["method"].observe(lambda _: to_defaults(new_method=True), names="value")
    controls["beta"].observe(refresh, names="value")
    for name in knob_names:
        controls[name].observe(on_knob, names="value")
    buttons["train"].on_click(train)
    buttons["defaults"].on_click(to_defaults)   # the method's defaults: where its stored runs sit
    to_defaults(new_method=True)
    ui = _explorer_layout(controls, [controls[k] for k in knob_names], buttons, output)
    return Panel(ui, controls, buttons, output, refresh, state)
