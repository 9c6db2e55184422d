"""Widgets of notebook 09: their pure functions, then the widgets driven over every control and button."""

import itertools
import math

import ipywidgets
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from teachkit import widgets  # noqa: E402
from teachkit.widgets import showdown  # noqa: E402
from teachkit.rlhf.dpo import dpo_loss, ipo_loss  # noqa: E402
from teachkit.viz.showdown import preference_landscape  # noqa: E402
from teachkit.rlhf.history import HISTORY_KEYS  # noqa: E402


def slider_values(slider):
    """Every value a slider can take: min, max and every step between (log sliders: in log10 units)."""
    n = int(round((slider.max - slider.min) / slider.step))
    values = [slider.min + k * slider.step for k in range(n + 1)]
    if isinstance(slider, ipywidgets.FloatLogSlider):
        return [slider.base ** v for v in values]
    return values


# --------------------------------------------------------------------------- the pure function


def test_dpo_landscape_at_zero_margin_is_log2_and_weight_beta_over_2():
    for beta in (0.05, 0.1, 1.0, 3.0):
        c = preference_landscape([0.0], beta, "dpo")
        assert c["loss"][0] == pytest.approx(math.log(2.0))
        assert c["weight"][0] == pytest.approx(beta / 2)


@pytest.mark.parametrize("loss_name,torch_loss", [("dpo", dpo_loss), ("ipo", ipo_loss)])
def test_landscape_matches_the_library_loss_and_its_autograd_gradient(loss_name, torch_loss):
    h = np.linspace(-40, 40, 81)
    for beta in (0.1, 0.5, 2.0):
        c = preference_landscape(h, beta, loss_name)
        for k in range(0, 81, 10):
            pol_c = torch.tensor([h[k]], dtype=torch.float64, requires_grad=True)
            zero = torch.zeros(1, dtype=torch.float64)
            value = torch_loss(pol_c, zero, zero, zero, beta=beta)
            value.backward()
            assert c["loss"][k] == pytest.approx(value.item(), rel=1e-9, abs=1e-12)
            assert c["weight"][k] == pytest.approx(-pol_c.grad.item(), rel=1e-9, abs=1e-12)


def test_dpo_weight_decays_but_never_vanishes_ipo_weight_changes_sign_at_target():
    h = np.linspace(-20, 200, 2001)
    c = preference_landscape(h, 0.1, "dpo")
    assert np.all(np.diff(c["weight"]) < 0) and np.all(c["weight"] > 0)
    assert np.all(np.diff(c["loss"]) < 0)
    ipo = preference_landscape([4.0, 5.0, 6.0], 0.1, "ipo")   # target 1/(2β) = 5
    assert ipo["weight"][0] > 0 and ipo["weight"][1] == 0 and ipo["weight"][2] < 0


def test_dpo_loss_against_implicit_margin_is_the_same_for_every_beta():
    m = np.linspace(-5, 5, 11)
    a = preference_landscape(m / 0.1, 0.1)["loss"]
    b = preference_landscape(m / 2.0, 2.0)["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_dpo_landscape_is_finite_at_huge_margins():
    c = preference_landscape([-1e6, 1e6], 1.0)
    assert np.all(np.isfinite(c["loss"])) and np.all(np.isfinite(c["weight"]))
    assert c["loss"][0] == pytest.approx(1e6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=0.0), "beta"), (dict(beta=-1.0), "beta"), (dict(beta=float("nan")), "beta"),
    (dict(loss="kto"), "loss"), (dict(margins=[float("inf")]), "finite"),
])
def test_landscape_rejects_bad_input_clearly(kwargs, match):
    args = dict(margins=[0.0], beta=0.1, loss="dpo") | kwargs
    with pytest.raises(ValueError, match=match):
        preference_landscape(**args)


# --------------------------------------------------------------------------- the landscape widget


def test_landscape_widget_every_control_over_its_range_and_every_button():
    panel = widgets.dpo_landscape_widget()
    c = panel.controls
    assert set(c) == {"betas", "loss", "axis", "span"} and set(panel.buttons) == {"reset"}
    draws = panel.state["draws"]
    # every beta alone, and all of them together
    for beta in c["betas"].options:
        c["betas"].value = (beta,)
        assert list(panel.state["last"]) == [beta]
    c["betas"].value = tuple(c["betas"].options)
    assert len(panel.state["last"]) == len(c["betas"].options)
    # every loss x axis combination, every span
    for loss, axis in itertools.product([v for _, v in c["loss"].options], [v for _, v in c["axis"].options]):
        c["loss"].value, c["axis"].value = loss, axis
        for span in slider_values(c["span"]):
            c["span"].value = span
            for curve in panel.state["last"].values():
                x = curve["implicit_margin"] if axis == "implicit" else curve["h"]
                assert x.min() == pytest.approx(-span) and x.max() == pytest.approx(span)
                assert np.all(np.isfinite(curve["loss"])) and np.all(np.isfinite(curve["weight"]))
    assert panel.state["draws"] > draws
    # an empty selection draws nothing and does not raise
    c["betas"].value = ()
    assert panel.state["last"] == {}
    panel.buttons["reset"].click()
    assert c["betas"].value == (0.1, 0.5, 1.0) and c["loss"].value == "dpo" and c["span"].value == 10.0
    assert sorted(panel.state["last"]) == [0.1, 0.5, 1.0]


def test_landscape_widget_rejects_bad_betas():
    with pytest.raises(ValueError, match="positive"):
        widgets.dpo_landscape_widget(betas=(0.1, -1.0), selected=(0.1,))
    with pytest.raises(ValueError, match="among"):
        widgets.dpo_landscape_widget(betas=(0.1, 0.2), selected=(0.5,))


def test_panel_repr_is_short_and_stable():
    panel = widgets.dpo_landscape_widget()
    assert repr(panel) == "Panel(controls=['axis', 'betas', 'loss', 'span'], buttons=['reset'])"


# --------------------------------------------------------------------------- the method explorer


def synthetic_runs():
    """Stored-looking runs of two on-policy methods (every knob but DPOP λ) and two off-policy ones
    (DPOP λ), each at three β with its knobs at the runner's defaults; plus one missing method."""
    from teachkit.rlhf import runner

    runs = []
    for method in ("ppo", "grpo", "dpo", "dpop"):
        spec = runner.METHODS[method]
        fields = dict(spec.knobs)
        cfg_extra = {fields[k]: v for k, v in runner.knob_defaults(method).items()}
        for beta in (0.03, 0.1, 0.3):
            h = {"step": [0.0, 1.0, 2.0], "gold_reward": [0.5, 0.6, 0.55], "proxy_reward": [0.0, 0.2, 0.4],
                 "kl_to_ref": [0.0, 0.1 / beta, 0.2 / beta], "seconds": [0.0, 1.0, 2.0],
                 "samples_generated": [0.0] * 3, "reward_queries": [0.0] * 3, "pairs_seen": [0.0, 64.0, 128.0]}
            runs.append({"method": method, "family": spec.family, "status": "ok", "beta": beta,
                         "task": "arithmetic", "config": {"beta": beta, **cfg_extra}, "history": h,
                         "final": {"gold_reward": 0.55, "proxy_reward": 0.4, "kl_to_ref": 0.2 / beta}})
    runs.append(runner.missing_record("orpo", "not built"))
    return runs


def test_the_explorer_offers_finished_methods_in_course_order_and_their_stored_betas():
    runs = synthetic_runs()
    assert showdown.explorer_methods(runs) == ["ppo", "grpo", "dpo", "dpop"]   # orpo is missing, not offered
    assert showdown.stored_betas(runs, "dpo") == [0.03, 0.1, 0.3]
    assert showdown.stored_betas(runs, "orpo") == []
    assert showdown.finished_runs(runs) == runs[:-1]
    from teachkit.rlhf import runner
    with pytest.raises(ValueError, match="finished run"):
        showdown.finished_runs([runner.missing_record("dpo", "not built")])


def test_a_method_opens_at_its_default_beta_when_stored_else_the_middle_one():
    from teachkit.rlhf import runner

    assert showdown.initial_beta("dpo", [0.1, 0.3, 1.0]) == 0.3 == runner.METHODS["dpo"].default_beta
    assert showdown.initial_beta("ppo", [0.05, 0.2]) == 0.05
    assert showdown.initial_beta("ppo", [0.03, 0.1, 0.3]) == 0.1        # 0.05 not stored: the middle
    assert showdown.initial_beta("ppo", [0.03, 0.1, 0.3, 1.0]) == 0.1   # even count: the lower middle
    assert showdown.initial_beta("no_such_method", [1.0, 2.0, 3.0]) == 2.0


def test_knobs_of_a_method_and_where_its_stored_runs_sit():
    from teachkit.rlhf import runner

    for method in runner.METHODS:
        assert showdown.knobs_of(method) == tuple(runner.METHOD_KNOBS[method])
        assert showdown.stored_knobs(method) == runner.knob_defaults(method)
    assert showdown.knobs_of("dpop") == ("lr", "dpop_lambda")
    assert showdown.knobs_of("no_such_method") == () and showdown.stored_knobs("no_such_method") == {}


def test_live_key_ignores_rounding_noise_and_knob_order():
    a = showdown.live_key("dpop", 0.1, {"lr": 1e-4, "dpop_lambda": 50})
    b = showdown.live_key("dpop", 0.1 + 1e-12, {"dpop_lambda": 50.0, "lr": 1e-4 * (1 + 1e-12)})
    assert a == b
    assert a != showdown.live_key("dpop", 0.1, {"lr": 1e-4, "dpop_lambda": 40})
    assert a != showdown.live_key("dpo", 0.1, {"lr": 1e-4, "dpop_lambda": 50})


def test_explorer_curves_are_the_matching_stored_runs_plus_the_live_runs_at_that_setting():
    runs = synthetic_runs()
    at_defaults = showdown.stored_knobs("dpop")
    curves = showdown.explorer_curves(runs, {}, "dpop", 0.1, at_defaults)
    stored = next(r for r in runs if r["method"] == "dpop" and r["beta"] == 0.1)
    assert curves == {"stored β=0.1": stored["history"]}
    off = {**at_defaults, "dpop_lambda": 10.0}
    assert showdown.explorer_curves(runs, {}, "dpop", 0.1, off) == {}        # no stored run there
    assert showdown.explorer_curves(runs, {}, "dpop", 0.2, at_defaults) == {}  # nor at an unstored β
    live_history = {"step": [0.0], "gold_reward": [0.5]}
    live_runs = {showdown.live_key("dpop", 0.1, off): {"live run": live_history}}
    assert showdown.explorer_curves(runs, live_runs, "dpop", 0.1, off) == {"live run": live_history}
    live_runs[showdown.live_key("dpop", 0.1, at_defaults)] = {"live run": live_history}
    assert sorted(showdown.explorer_curves(runs, live_runs, "dpop", 0.1, at_defaults)) == ["live run", "stored β=0.1"]
    assert showdown.explorer_curves(runs, live_runs, "orpo", 0.1, {}) == {}   # a missing method draws nothing


def test_method_explorer_every_control_and_the_train_button():
    from teachkit.rlhf import runner

    calls = []

    def live(method, beta, **knobs):
        calls.append((method, beta, knobs))
        return {"step": [0.0, 1.0], "gold_reward": [0.5, 0.7], "proxy_reward": [0.0, 0.3], "kl_to_ref": [0.0, 0.4],
                "seconds": [0.0, 0.5], "samples_generated": [0.0, 16.0], "reward_queries": [0.0, 16.0],
                "pairs_seen": [0.0, 0.0]}

    panel = widgets.method_explorer(synthetic_runs(), live=live)
    c, state = panel.controls, panel.state
    assert list(c["method"].options) == ["ppo", "grpo", "dpo", "dpop"]   # the missing method is not offered
    assert set(c) == {"method", "beta"} | set(runner.KNOBS)
    # a method opens at its named default β when a stored run has it, else at the middle stored β
    for method, first in (("dpo", 0.3), ("dpop", 0.3), ("ppo", 0.1), ("grpo", 0.1)):
        c["method"].value = method
        assert c["beta"].value == first, method
    c["method"].value = "ppo"
    swept = set()
    for method in c["method"].options:
        c["method"].value = method
        used, defaults = runner.METHOD_KNOBS[method], runner.knob_defaults(method)
        assert all(c[k].disabled == (k not in used) for k in runner.KNOBS)
        for beta in c["beta"].options:
            c["beta"].value = beta
            assert state["shown"] == [f"stored β={beta:g}"]
        stored = state["shown"]
        # every value of every knob: away from the default nothing stored matches, at it the stored run
        for knob in runner.KNOBS:
            default = defaults.get(knob, runner.KNOBS[knob][5])
            for value in slider_values(c[knob]):
                before, old = state["draws"], c[knob].value
                c[knob].value = value
                changed = c[knob].value != old
                if c[knob].disabled:        # a knob this method does not have changes nothing
                    assert state["shown"] == stored and state["draws"] == before
                elif math.isclose(c[knob].value, default, rel_tol=1e-9):
                    assert state["shown"] == stored and state["draws"] == before + changed
                else:
                    swept.add(knob)
                    assert state["shown"] == [] and state["last"] == {} and state["draws"] == before
            c[knob].value = default
            assert state["shown"] == stored
        # train live at the ends of every knob the method has
        for knob in used:
            default = defaults[knob]
            for value in (slider_values(c[knob])[0], slider_values(c[knob])[-1]):
                c[knob].value = value
                panel.buttons["train"].click()
                expected = {**defaults, knob: c[knob].value}
                assert calls[-1] == (method, c["beta"].value, expected)
                at_default = math.isclose(c[knob].value, default, rel_tol=1e-9)
                assert state["shown"] == sorted(["live run"] + (stored if at_default else []))
                assert set(state["last"]["live run"]) == set(HISTORY_KEYS)
            c[knob].value = default
    assert swept == set(runner.KNOBS)          # every knob was moved while it was enabled
    # the defaults button brings the knobs back to where the stored runs sit
    c["method"].value = "dpop"
    beta = c["beta"].value
    c["dpop_lambda"].value, c["lr"].value = 20.0, 1e-3
    assert panel.state["shown"] in ([], ["live run"])
    panel.buttons["defaults"].click()
    assert c["beta"].value == beta and c["dpop_lambda"].value == 50.0
    assert "stored β=" + f"{beta:g}" in panel.state["shown"]
    # DPOP at a λ that no stored run used: nothing stored to show, but a live run fills the gap
    c["dpop_lambda"].value = 10.0
    assert panel.state["shown"] == [] and panel.state["last"] == {}
    panel.buttons["train"].click()
    assert calls[-1] == ("dpop", c["beta"].value, {"lr": runner.knob_defaults("dpop")["lr"], "dpop_lambda": 10.0})
    assert panel.state["shown"] == ["live run"]


def test_method_explorer_without_live_training_has_a_disabled_button():
    panel = widgets.method_explorer(synthetic_runs())
    assert set(panel.buttons) == {"train", "defaults"}
    assert panel.buttons["train"].disabled
    panel.buttons["train"].click()   # a click on a disabled button (programmatic) does nothing
    assert panel.state["live"] == {}


def test_method_explorer_needs_finished_runs():
    from teachkit.rlhf import runner

    with pytest.raises(ValueError, match="finished run"):
        widgets.method_explorer([runner.missing_record("dpo", "not built")])
