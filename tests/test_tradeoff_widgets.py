"""The hands-on widgets of 02, 04, 05/06, 12, 13 and 14: their pure functions, then the widgets driven headlessly."""

import json
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from teachkit import REPO_DIR, widgets  # noqa: E402
from teachkit.check.engine import pipelined_makespan  # noqa: E402
from teachkit.rlhf import landscapes  # noqa: E402
from teachkit.rlhf.dpo import dpo_loss, dpop_loss  # noqa: E402
from teachkit.rlhf.ppo import ppo_policy_loss  # noqa: E402
from teachkit.sparse.planner import tradeoffs
from teachkit.sparse.runtime.cache import simulate_hit_rate


def slider_values(slider):
    if hasattr(slider, "options") and not hasattr(slider, "step"):
        return list(slider.options) if not isinstance(slider.options[0], tuple) else [v for _, v in slider.options]
    n = int(round((slider.max - slider.min) / slider.step))
    values = [slider.min + k * slider.step for k in range(n + 1)]
    return [slider.base ** v for v in values] if hasattr(slider, "base") else values


# --------------------------------------------------------------------------- pure functions, RLHF


@pytest.mark.parametrize("advantage", [1.5, -0.7])
def test_clipped_objective_is_the_library_loss_and_its_gradient(advantage):
    rho = np.linspace(0.5, 1.6, 23)
    c = landscapes.clipped_objective(rho, advantage, 0.2)
    for k in range(len(rho)):
        logp = torch.tensor([[math.log(rho[k])]], dtype=torch.float64, requires_grad=True)
        zero = torch.zeros(1, 1, dtype=torch.float64)
        loss = ppo_policy_loss(logp, zero, torch.full((1, 1), advantage, dtype=torch.float64),
                               torch.ones(1, 1), clip_eps=0.2)
        loss.backward()
        assert c["objective"][k] == pytest.approx(-loss.item(), abs=1e-12)
        # d(-loss)/dlogp = ρ · d objective / dρ
        assert rho[k] * c["slope"][k] == pytest.approx(-logp.grad.item(), abs=1e-12)


def test_clipped_objective_stops_pushing_past_the_clip_on_the_advantage_side_only():
    rho = np.array([0.5, 0.9, 1.1, 1.5])
    good, bad = landscapes.clipped_objective(rho, 1.0, 0.2), landscapes.clipped_objective(rho, -1.0, 0.2)
    assert list(good["slope"]) == [1.0, 1.0, 1.0, 0.0]      # ρ > 1+ε with A > 0: no push
    assert list(bad["slope"]) == [0.0, -1.0, -1.0, -1.0]    # ρ < 1−ε with A < 0: no push; above: corrected
    with pytest.raises(ValueError, match="positive"):
        landscapes.clipped_objective([0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="clip_eps"):
        landscapes.clipped_objective([1.0], 1.0, 0.0)


def test_group_noise_no_signal_share_matches_the_formula_and_error_falls_with_group_size():
    n = landscapes.group_advantage_noise(0.3, [2, 4, 8, 32], n_groups=6000, seed=1)
    se = np.sqrt(n["no_signal_exact"] * (1 - n["no_signal_exact"]) / 6000)
    assert np.all(np.abs(n["no_signal_share"] - n["no_signal_exact"]) < 5 * se + 1e-12)
    assert n["rms_error"][1] > n["rms_error"][2] > n["rms_error"][3]
    again = landscapes.group_advantage_noise(0.3, [2, 4, 8, 32], n_groups=6000, seed=1)
    np.testing.assert_array_equal(n["rms_error"], again["rms_error"])     # seeded
    for bad, match in (({"success_p": 1.0}, "success_p"), ({"group_sizes": [1]}, "group sizes")):
        with pytest.raises(ValueError, match=match):
            landscapes.group_advantage_noise(**({"success_p": 0.5, "group_sizes": [4]} | bad))


def test_pair_losses_match_the_library_losses_and_their_autograd_gradients():
    h_w = np.array([-3.0, -0.5, 0.5, 2.0])
    margin, beta, lam = 1.5, 0.3, 20.0
    c = landscapes.pair_losses(h_w, margin, beta, lam)
    for k, hw in enumerate(h_w):
        for name, fn, kwargs in (("dpo", dpo_loss, {}), ("dpop", dpop_loss, {"lam": lam})):
            pc = torch.tensor([hw], dtype=torch.float64, requires_grad=True)
            pr = torch.tensor([hw - margin], dtype=torch.float64, requires_grad=True)
            zero = torch.zeros(1, dtype=torch.float64)
            loss = fn(pc, pr, zero, zero, beta=beta, **kwargs)
            loss.backward()
            assert c[f"{name}_loss"][k] == pytest.approx(loss.item(), rel=1e-12)
            assert c[f"{name}_push_chosen"][k] == pytest.approx(-pc.grad.item(), rel=1e-12)
            assert c[f"{name}_push_rejected"][k] == pytest.approx(pr.grad.item(), rel=1e-12)


def test_dpo_is_blind_to_the_chosen_log_prob_dpop_is_not():
    h_w = np.linspace(-4, 4, 81)
    c = landscapes.pair_losses(h_w, 2.0, 0.1, 50.0)
    assert np.ptp(c["dpo_loss"]) == 0.0
    np.testing.assert_allclose(c["dpop_loss"][h_w >= 0], c["dpo_loss"][h_w >= 0])
    assert np.all(np.diff(c["dpop_loss"][h_w < 0]) < 0)
    plain = landscapes.pair_losses(h_w, 2.0, 0.1, 0.0)
    np.testing.assert_allclose(plain["dpop_loss"], plain["dpo_loss"])
    with pytest.raises(ValueError, match="lam"):
        landscapes.pair_losses(h_w, 2.0, 0.1, -1.0)


# --------------------------------------------------------------------------- pure functions, sparse


def zipf_traces(n_tokens=40, n_layers=2, n_neurons=128, seed=0):
    rng = np.random.default_rng(seed)
    return [[np.unique(rng.zipf(1.4, 30) % n_neurons) for _ in range(n_layers)] for _ in range(n_tokens)]


def test_split_hit_rate_ends_agree_with_the_plain_replay():
    traces = zipf_traces()
    cold_only = tradeoffs.split_hit_rate(traces, 128, 64, 0.0, warmup=5)
    assert cold_only["hot_per_layer"] == 0 and cold_only["cold_slots"] == 64
    assert cold_only["hit_rate"] == pytest.approx(simulate_hit_rate(traces, 128, 64, warmup=5))
    everything = tradeoffs.split_hit_rate(traces, 128, 256, 1.0)
    assert everything["hot_per_layer"] == 128 and everything["hit_rate"] == 1.0
    half = tradeoffs.split_hit_rate(traces, 128, 64, 0.5)
    assert half["hot_per_layer"] == 16 and half["cold_slots"] == 32
    with pytest.raises(ValueError, match="total_slots"):
        tradeoffs.split_hit_rate(traces, 128, 0, 0.5)
    with pytest.raises(ValueError, match="hot_share"):
        tradeoffs.split_hit_rate(traces, 128, 10, 1.5)


def test_makespans_match_the_exercise_and_keep_their_order():
    rng = np.random.default_rng(3)
    for _ in range(50):
        reads, comps = rng.uniform(0, 2, 6), rng.uniform(0, 2, 6)
        m = tradeoffs.pipeline_makespans(reads, comps)
        assert m["cluster"] == pytest.approx(pipelined_makespan.reference(list(reads), list(comps)))
        mem = float(rng.uniform(0, 3))
        m = tradeoffs.pipeline_makespans(reads, comps, mem)
        assert m["bound"] - 1e-12 <= m["cluster"] <= m["matrix"] + 1e-12 <= m["serial"] + 2e-12
    hand = tradeoffs.pipeline_makespans([1, 1, 1], [1, 1, 1], 1.0, gate_share=1.0)
    assert (hand["serial"], hand["matrix"], hand["cluster"], hand["bound"]) == (7.0, 6.0, 4.0, 4.0)   # 3+1+3; max(1, 3)+3; each compute as its read lands
    # the engine's matrix schedule: only the in-memory gates (a third) overlap the reads
    assert tradeoffs.pipeline_makespans([1, 1, 1], [1, 1, 1], 1.0)["matrix"] == pytest.approx(3 + 2 / 3 + 3)
    with pytest.raises(ValueError, match="one compute time per read"):
        tradeoffs.pipeline_makespans([1, 1], [1])
    with pytest.raises(ValueError, match="gate_share"):
        tradeoffs.pipeline_makespans([1], [1], 0.0, gate_share=1.5)


def test_how_the_reads_land_moves_only_the_cluster_makespan_and_by_at_most_the_read_clusters_compute():
    """Notebook 13's claim: the same burst landing in another pattern leaves the matrix makespan as it
    is (its barrier waits for the last landing) and moves the cluster makespan by at most the read
    clusters' own compute (the in-memory work does not wait on any read)."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        reads, comps, mem = rng.uniform(0, 2, n), rng.uniform(0, 1, n), float(rng.uniform(0, 4))
        other = rng.permutation(reads) if rng.random() < 0.5 else np.full(n, reads.sum() / n)
        a, b = tradeoffs.pipeline_makespans(reads, comps, mem), tradeoffs.pipeline_makespans(other, comps, mem)
        assert a["matrix"] == pytest.approx(b["matrix"])
        assert abs(a["cluster"] - b["cluster"]) <= comps.sum() + 1e-9
    # with nothing in memory and compute = I/O split evenly, n reads landing one by one: 2n / (n + 1)
    for n in (2, 4, 9):
        m = tradeoffs.pipeline_makespans([1.0] * n, [1.0] * n)
        assert m["matrix"] / m["cluster"] == pytest.approx(2 * n / (n + 1))


@pytest.mark.parametrize("schedule", ["matrix", "cluster"])
def test_the_simulated_schedule_ends_at_the_makespan_and_keeps_each_lane_in_order(schedule):
    rng = np.random.default_rng(7)
    for _ in range(20):
        reads, comps, mem = rng.uniform(0, 2, 5), rng.uniform(0, 2, 5), float(rng.uniform(0, 3))
        events = tradeoffs.pipeline_schedule(reads, comps, mem, schedule, layer=3)
        assert all(isinstance(e, tradeoffs.TraceEvent) and e.layer == 3 for e in events)
        assert max(e.t1 for e in events) * 1e3 == pytest.approx(tradeoffs.pipeline_makespans(reads, comps, mem)[schedule])
        for lane in ("io", "compute"):
            ev = [e for e in events if e.lane == lane]
            assert all(a.t1 <= b.t0 + 1e-15 for a, b in zip(ev, ev[1:]))        # one thing at a time, in order
        last_landing = max(e.t1 for e in events if e.lane == "io")
        early_updown = [e for e in events if e.stage == "updown_compute" and e.t0 < last_landing - 1e-12]
        if schedule == "matrix":
            assert not early_updown                                           # the barrier
    # even landings, compute as long as the I/O: the cluster schedule computes clusters before the last lands
    events = tradeoffs.pipeline_schedule([1, 1, 1, 1], [1, 1, 1, 1], 0.5, "cluster")
    assert sum(e.stage == "updown_compute" and e.t1 <= 4e-3 for e in events) == 3
    with pytest.raises(ValueError, match="schedule"):
        tradeoffs.pipeline_schedule([1], [1], 0.0, "serial")


def test_makespan_sweep_scales_compute_to_each_ratio_and_stage_times_read_a_trace():
    sweep = tradeoffs.makespan_over_ratios([1, 2, 1], [0.5, 0.5, 0.5], 0.5, [0.25, 1.0, 4.0])
    assert sweep["io_ms"] == 4.0
    np.testing.assert_allclose(sweep["serial"], 4.0 + 4.0 * np.array([0.25, 1.0, 4.0]))
    np.testing.assert_allclose(sweep["bound"], [4.0, 4.0, 16.0])
    # a cluster-level trace: in-memory batches (uids 0, 1) fused; read clusters 2 and 3, gate then up/down
    events = [("io", "bundle_read", 0, 3, 0.000, 0.002), ("io", "bundle_read", 0, 2, 0.001, 0.004),
              ("compute", "fused_compute", 0, 0, 0.0, 0.0005), ("compute", "fused_compute", 0, 1, 0.0005, 0.0007),
              ("compute", "gate_compute", 0, 3, 0.002, 0.0021), ("compute", "updown_compute", 0, 3, 0.0021, 0.0023),
              ("compute", "gate_compute", 0, 2, 0.004, 0.0041), ("compute", "updown_compute", 0, 2, 0.0041, 0.0044),
              ("compute", "wait", 0, -1, 0.0007, 0.002), ("io", "bundle_read", 1, 0, 0.01, 0.02)]
    st = tradeoffs.stage_times(events, 0)
    assert st["read_ms"] == pytest.approx([2.0, 2.0])      # landings at 2 and 4 ms after the first submit
    assert st["compute_ms"] == pytest.approx([0.3, 0.4])   # each landed cluster's own gate + up/down
    assert st["in_memory_ms"] == pytest.approx(0.7)         # the clusters that were not read; waiting is not work
    split = events + [("io", "updown_read", 0, 2, 0.0042, 0.005)]    # cluster 2 read in two phases
    assert tradeoffs.stage_times(split, 0)["compute_ms"] == pytest.approx([0.3, 0.2, 0.2])


def test_budget_table_is_the_stored_sweep_sorted():
    bench = json.loads((REPO_DIR / "data" / "engine_bench.json").read_text())
    t = tradeoffs.budget_sweep_table(bench)
    assert list(t["budget_over_ffn"]) == sorted(r["budget_over_ffn"] for r in bench["budget_sweep"])
    k = int(np.argmax(t["budget_over_ffn"]))
    top = max(bench["budget_sweep"], key=lambda r: r["budget_over_ffn"])
    assert t["tok_s"][k] == top["tok_s"] and t["predicted_tok_s"][k] == top["predicted_tok_s"]
    with pytest.raises(ValueError, match="make bench"):
        tradeoffs.budget_sweep_table({})


# --------------------------------------------------------------------------- the widgets, headlessly


def drive(panel, expected, skip=()):
    """Set every control to both ends and two values between; each time the panel recomputes what ``expected``
    computes from the control values, redraws, and its static PNG changes with the figure."""
    pngs = set()
    for name, control in panel.controls.items():
        if name in skip:
            continue
        values = slider_values(control)
        for value in [values[k] for k in sorted({0, len(values) // 3, 2 * len(values) // 3, len(values) - 1})]:
            before = panel.state["draws"]
            old = control.value
            control.value = value
            assert panel.state["draws"] == before + (control.value != old)
            values = {n: c.value for n, c in panel.controls.items()}
            want, got = expected(values), panel.state["last"]
            for key, arr in want.items():
                np.testing.assert_allclose(np.asarray(got[key], dtype=float), np.asarray(arr, dtype=float),
                                           err_msg=f"{name}={value}: {key}")
            pngs.add(panel.state["png"])
    assert len(pngs) > 1
    assert "image/png" in panel._repr_mimebundle_()


def reset_restores(panel, defaults):
    for control in panel.controls.values():
        control.value = slider_values(control)[-1]
    panel.buttons["reset"].click()
    assert {n: c.value for n, c in panel.controls.items()} == defaults


def test_clipped_objective_widget():
    panel = widgets.clipped_objective_widget()
    drive(panel, lambda v: landscapes.clipped_objective(np.linspace(0.3, 2.0, 341), v["advantage"], v["clip_eps"]))
    reset_restores(panel, {"advantage": 1.0, "clip_eps": 0.2})


def test_group_size_widget():
    panel = widgets.group_size_widget(n_groups=500)
    sizes = (2, 3, 4, 6, 8, 12, 16, 24, 32)
    drive(panel, lambda v: landscapes.group_advantage_noise(v["success_p"], sizes, 500, 0), skip=())
    panel.controls["group_size"].value = 16
    assert panel.state["last"]["chosen"]["group_size"] == 16
    reset_restores(panel, {"success_p": 0.3, "group_size": 8})


def test_dpo_vs_dpop_widget():
    panel = widgets.dpo_vs_dpop_widget()
    grid = np.linspace(-6.0, 6.0, 241)
    drive(panel, lambda v: landscapes.pair_losses(grid, v["margin"], v["beta"], v["lam"]))
    reset_restores(panel, {"beta": 0.1, "lam": 50.0, "margin": 2.0})
    with pytest.raises(ValueError, match="span"):
        widgets.dpo_vs_dpop_widget(span=0)


def test_cache_split_widget():
    traces = zipf_traces(n_tokens=25)
    panel = widgets.cache_split_widget(traces, 128, warmup=5)
    rows = 256

    def expected(v):
        slots = max(1, int(round(v["size"] * rows)))
        return {"hit_rate": [tradeoffs.split_hit_rate(traces, 128, slots, v["hot_share"], 5)["hit_rate"]],
                "total_slots": [slots]}

    drive(panel, expected)
    reset_restores(panel, {"size": 0.2, "hot_share": 0.5})
    with pytest.raises(ValueError, match="traces"):
        widgets.cache_split_widget([], 128)


def test_makespan_widget():
    reads, comps = [1.0, 2.0, 0.5, 1.5], [0.4, 0.4, 0.4, 0.4]
    panel = widgets.makespan_widget(reads, comps, 0.4)
    assert panel.controls["ratio"].value == pytest.approx(2.0 / 5.0, rel=0.07)   # starts near the measured ratio
    sweep = tradeoffs.makespan_over_ratios(reads, comps, 0.4, np.geomspace(0.1, 10.0, 41))

    def expected(v):
        one = tradeoffs.makespan_over_ratios(reads, comps, 0.4, [v["ratio"]])
        return {k: sweep[k] for k in ("serial", "matrix", "cluster", "bound")} | {
            "chosen_" + k: [one[k][0]] for k in ("serial", "matrix", "cluster", "bound")}

    panel.state.setdefault("last", {})
    original = panel.refresh

    def flatten():  # expose the chosen point next to the sweep, for drive()
        last = panel.state["last"]
        last.update({"chosen_" + k: [v] for k, v in last["chosen"].items()})

    panel.controls["ratio"].observe(lambda _: flatten(), names="value")
    drive(panel, expected)
    assert original is panel.refresh
    with pytest.raises(ValueError, match="some I/O"):
        widgets.makespan_widget([0.0], [1.0])


def test_budget_widget():
    bench = json.loads((REPO_DIR / "data" / "engine_bench.json").read_text())
    panel = widgets.budget_widget(bench)
    table = tradeoffs.budget_sweep_table(bench)

    def expected(v):
        k = list(table["budget_over_ffn"]).index(v["budget"])
        return {"tok_s": table["tok_s"], "predicted_tok_s": table["predicted_tok_s"],
                "budget_over_ffn": table["budget_over_ffn"]} | {"chosen_tok_s": [table["tok_s"][k]]}

    panel.controls["budget"].observe(
        lambda _: panel.state["last"].update(chosen_tok_s=[panel.state["last"]["chosen"]["tok_s"]]), names="value")
    drive(panel, expected)
    for value in panel.controls["budget"].options:
        panel.controls["budget"].value = value
        k = list(table["budget_over_ffn"]).index(value)
        assert panel.state["last"]["chosen"]["tok_s"] == table["tok_s"][k]
        assert panel.state["last"]["chosen"]["predicted_tok_s"] == table["predicted_tok_s"][k]
