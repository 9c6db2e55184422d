"""The course's one plotting style.

Every helper here draws onto a fixed-size figure, shows it inline as PNG and returns either
nothing or the Figure, so a notebook cell never prints a repr. Topic plots live in submodules
(``teachkit.viz.rlhf``, ``teachkit.viz.sparse``, ...) and are re-exported here.
"""

from __future__ import annotations

import matplotlib

FIGSIZE = (7.0, 3.6)
WIDE = (10.0, 3.6)
DPI = 100
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

_STYLE = {
    "figure.figsize": FIGSIZE,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=COLORS),
    "font.size": 10,
    "legend.frameon": False,
    "svg.fonttype": "none",
}


def use_style() -> None:
    """Apply the course style and make inline figures PNG (nbval ignores PNG, compares SVG text)."""
    matplotlib.rcParams.update(_STYLE)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        set_matplotlib_formats("png")
    except Exception:  # noqa: BLE001 - outside IPython there is nothing to configure
        pass


def figure(ncols: int = 1, nrows: int = 1, wide: bool | None = None, **kwargs):
    """A new figure in the course style: ``fig, axes = viz.figure(2)``."""
    import matplotlib.pyplot as plt

    use_style()
    size = WIDE if (wide or (wide is None and ncols > 1)) else FIGSIZE
    size = (size[0], size[1] * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, dpi=DPI, **kwargs)
    return fig, axes


def show(fig) -> None:
    """Show a figure inline and close it, so it is drawn exactly once and returns nothing."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None:
            display(fig)
    except ImportError:
        pass
    plt.close(fig)


use_style()

from .._topics import export_topic_modules  # noqa: E402

export_topic_modules(__name__, __path__, globals())
