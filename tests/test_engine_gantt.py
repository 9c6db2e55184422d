"""The Gantt charts of notebooks 13-14: each row holds what its label says, both panels of a pair
have tick labels, the untraced lookup between predict and submit is marked, and lane rows (notebook
14's chart) keep their layout."""

import textwrap

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from teachkit.sparse.runtime.trace import TraceEvent  # noqa: E402
from teachkit.viz import engine as V  # noqa: E402

# one layer of a cluster-level trace: predict, an untraced lookup, submit, two reads, the in-memory
# work fused while they fly, then a read cluster's gate and up/down, and a wait
LAYER = [TraceEvent("compute", "predict", 0, -1, 0.0, 1e-4),
         TraceEvent("compute", "submit", 0, -1, 2e-4, 4e-4),
         TraceEvent("io", "bundle_read", 0, 2, 2e-4, 9e-4),
         TraceEvent("io", "bundle_read", 0, 3, 2e-4, 1e-3),
         TraceEvent("compute", "fused_compute", 0, 0, 4e-4, 6e-4),
         TraceEvent("compute", "wait", 0, -1, 6e-4, 9e-4),
         TraceEvent("compute", "gate_compute", 0, 2, 9e-4, 9.2e-4),
         TraceEvent("compute", "updown_compute", 0, 2, 9.2e-4, 9.5e-4)]


@pytest.fixture
def figures(monkeypatch):
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(V, "show", drawn.append)
    yield drawn
    for fig in drawn:  # the real show closes each figure; later tests count the open ones
        plt.close(fig)


def rows_of(ax) -> dict:
    """Row label -> the colours of the bars drawn on it (not the hatched lookup)."""
    labels = [t.get_text() for t in ax.get_yticklabels()]
    out = {label: set() for label in labels}
    for bar in ax.patches:
        if not bar.get_hatch():
            y = round(bar.get_y() + bar.get_height() / 2)
            out[labels[y]].add(matplotlib.colors.to_hex(bar.get_facecolor()))
    return out


def colour(stage):
    return matplotlib.colors.to_hex(V.STAGE_COLORS[stage])


def test_stage_rows_hold_what_their_labels_say(figures):
    V.plot_gantt(LAYER, rows="stage")
    rows = rows_of(figures[0].axes[0])
    assert rows[V.STAGE_ROWS["fused_compute"]] == {colour("fused_compute")}
    assert rows[V.STAGE_ROWS["updown_compute"]] == {colour("updown_compute")}
    assert rows[V.STAGE_ROWS["gate_compute"]] == {colour("gate_compute")}
    other = "compute: predict, lookup, submit, wait"
    assert rows[textwrap.fill(other, 24)] == {colour(s) for s in ("predict", "submit", "wait")}
    assert rows["io 1"] == rows["io 2"] == {colour("bundle_read")}
    hatched = [b for b in figures[0].axes[0].patches if b.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_x() == pytest.approx(0.1)     # the lookup: 0.1 to 0.2 ms
    assert hatched[0].get_width() == pytest.approx(0.1)
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert legend == ["compute: predict", "compute: submit", "io: bundle read", "compute: gate", "compute: up/down",
                      "compute: fused", "compute: wait", "compute: " + V.LOOKUP]     # worded like the rows


def test_a_pair_shares_its_rows_and_labels_both_time_axes(figures):
    matrix = [e for e in LAYER if e.stage != "fused_compute"]
    V.plot_gantt_pair(matrix, LAYER, rows="stage")
    top, bottom = figures[0].axes
    assert [t.get_text() for t in top.get_yticklabels()] == [t.get_text() for t in bottom.get_yticklabels()]
    figures[0].canvas.draw()
    assert any(t.get_text() for t in top.get_xticklabels()) and any(t.get_text() for t in bottom.get_xticklabels())


def test_lane_rows_keep_their_layout(figures):
    V.plot_gantt(LAYER)
    labels = [t.get_text() for t in figures[0].axes[0].get_yticklabels()]
    assert labels == ["io 1", "io 2", "compute", "compute up/down"]
    assert not [b for b in figures[0].axes[0].patches if b.get_hatch()]    # no lookup marked
    assert "gate_compute" in [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]   # stage names
    with pytest.raises(ValueError, match="rows"):
        V.plot_gantt(LAYER, rows="thread")


def test_a_layer_is_labelled_where_its_attention_starts_not_at_its_look_ahead(figures):
    ahead = [TraceEvent("compute", "attention", 0, -1, 0.0, 1e-4),
             TraceEvent("compute", "lookahead", 1, -1, 2e-4, 3e-4),         # guessed during layer 0
             TraceEvent("io", "prefetch_read", 1, 5, 3e-4, 8e-4),
             TraceEvent("compute", "attention", 1, -1, 1e-3, 1.1e-3),
             TraceEvent("compute", "fused_compute", 1, 0, 1.1e-3, 1.3e-3)]
    V.plot_gantt(ahead, rows="stage")
    at = {t.get_text(): t.xy[0] for t in figures[0].axes[0].texts if t.get_text().startswith("layer")}
    assert at == {"layer 0": 0.0, "layer 1": pytest.approx(1.0)}
