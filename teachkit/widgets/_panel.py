"""The object every widget factory returns, and the one way a widget redraws its figure."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Callable

import ipywidgets as W


@dataclass
class Panel:
    """A displayed widget plus handles on its parts (for notebooks and tests).

    ``ui`` is what the notebook displays, ``controls``/``buttons`` name every control,
    ``state["last"]`` holds what the last redraw computed. When a redraw made a figure,
    ``state["png"]`` holds it, and the panel's display carries it as ``image/png`` beside the
    widget: JupyterLab shows the live widget, a viewer without a widget manager (GitHub, nbviewer,
    a notebook opened untrusted, the stored outputs nbval reads) shows the figure instead.
    """

    ui: W.Widget
    controls: dict[str, W.Widget]
    buttons: dict[str, W.Button]
    output: W.Output
    refresh: Callable[[], None]
    state: dict = field(default_factory=dict)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.ui._repr_mimebundle_(**kwargs)
        if self.state.get("png"):
            bundle = dict(bundle, **{"image/png": self.state["png"]})
        return bundle

    def __repr__(self) -> str:  # short and stable for notebook outputs
        return f"Panel(controls={sorted(self.controls)}, buttons={sorted(self.buttons)})"


def redraw(output: W.Output, state: dict, draw: Callable[[], object]) -> None:
    """Run ``draw`` inside the output area (cleared first) and keep its result in ``state["last"]``.

    For a plotting function that shows its own figure (as ``teachkit.viz``'s plots do);
    ``state["draws"]`` counts the redraws. :func:`figure_panel` is the other way: its ``draw``
    returns a figure, which the panel shows and also keeps as PNG.
    """
    with output:
        output.clear_output(wait=True)
        state["last"] = draw()
        state["draws"] = state.get("draws", 0) + 1


def png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _show_figure(output: W.Output, state: dict, result, fig) -> None:
    """Show ``fig`` in the output area (inside IPython), keep it as PNG, close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    state["png"] = png_base64(fig)
    with output:
        output.clear_output(wait=True)
        try:
            from IPython import get_ipython
            from IPython.display import display
            shell = get_ipython()
            if shell is not None and getattr(shell, "kernel", None) is not None:   # a kernel, not a bare shell
                display(fig)
        except ImportError:
            pass
    plt.close(fig)
    state["last"] = result
    state["draws"] = state.get("draws", 0) + 1


def figure_panel(controls: dict[str, W.Widget], compute: Callable[[dict], object],
                 draw: Callable[[object, dict], object], layout: Callable[..., W.Widget] | None = None) -> Panel:
    """A panel whose every control change recomputes ``compute(values)`` (a pure function of the
    control values) and draws ``draw(result, values)`` (a figure); a ``reset`` button restores the
    starting values."""
    for c in controls.values():   # room for the whole label ("advantage A", "compute / I/O")
        if hasattr(c, "style") and hasattr(c.style, "description_width"):
            c.style.description_width = "initial"
    defaults = {name: c.value for name, c in controls.items()}
    buttons = {"reset": W.Button(description="reset")}
    output = W.Output()
    state: dict = {}

    def refresh(*_):
        if state.get("busy"):
            return
        values = {name: c.value for name, c in controls.items()}
        result = compute(values)
        _show_figure(output, state, result, draw(result, values))

    def reset(_):
        state["busy"] = True
        for name, value in defaults.items():
            controls[name].value = value
        state["busy"] = False
        refresh()

    for c in controls.values():
        c.observe(refresh, names="value")
    buttons["reset"].on_click(reset)
    box = layout(controls, buttons) if layout else W.HBox(list(controls.values()) + [buttons["reset"]])
    ui = W.VBox([box, output])
    refresh()
    return Panel(ui, controls, buttons, output, refresh, state)
