"""Interactive widgets: thin ipywidgets factories around pure teachkit functions, one module per topic.

Each factory returns a :class:`Panel` (``teachkit.widgets._panel``). No logic lives in a callback:
a callback reads the controls and calls one pure function, then one plotting function of
``teachkit.viz``. Tests drive the controls headlessly: setting ``control.value`` fires the callback
synchronously, and ``button.click()`` fires ``on_click``.

- notebook 02: :func:`clipped_objective_widget`; 04: :func:`group_size_widget`;
  05/06: :func:`dpo_vs_dpop_widget` (``teachkit.widgets.rlhf``);
- notebook 09: :func:`dpo_landscape_widget`, :func:`method_explorer` (``teachkit.widgets.showdown``);
- notebooks 12-14: :func:`cache_split_widget`, :func:`makespan_widget`, :func:`budget_widget`
  (``teachkit.widgets.sparse``).
"""

from ._panel import Panel
from .rlhf import clipped_objective_widget, dpo_vs_dpop_widget, group_size_widget
from .showdown import dpo_landscape_widget, method_explorer
from .sparse import budget_widget, cache_split_widget, makespan_widget

__all__ = ["Panel", "clipped_objective_widget", "group_size_widget", "dpo_vs_dpop_widget",
           "dpo_landscape_widget", "method_explorer", "cache_split_widget", "makespan_widget", "budget_widget"]
