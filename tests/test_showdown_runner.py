"""The showdown runner's bookkeeping, on synthetic run records (no training here)."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from teachkit import artifacts  # noqa: E402
from teachkit.rlhf import runner  # noqa: E402
from teachkit.rlhf import showdown_data as sd  # noqa: E402
from teachkit.viz import showdown as vz  # noqa: E402


def fake_record(method, beta, family="on-policy", gold_peak=0.8, n=6, seed=0):
    """A run whose proxy keeps rising while the gold reward turns down after the middle."""
    rng = np.random.default_rng(seed)
    steps = list(range(n))
    proxy = [0.1 * k + 0.01 * rng.standard_normal() for k in steps]
    gold = [gold_peak - 0.05 * (k - n // 2) ** 2 for k in steps]
    queries = [64.0 * k for k in steps] if family == "on-policy" else [0.0] * n
    pairs = [0.0] * n if family == "on-policy" else [64.0 * k for k in steps]
    history = {"step": [float(k) for k in steps], "gold_reward": gold, "proxy_reward": proxy,
               "kl_to_ref": [0.05 * k / beta for k in steps], "seconds": [0.1 * k for k in steps],
               "samples_generated": queries, "reward_queries": queries, "pairs_seen": pairs}
    return {"method": method, "family": family, "status": "ok", "task": "arithmetic", "beta": beta,
            "seed": seed, "knobs": {}, "config": {"beta": beta}, "history": history,
            "final": {"gold_reward": gold[-1], "proxy_reward": proxy[-1], "kl_to_ref": history["kl_to_ref"][-1]},
            "costs": {"wall_seconds": 1.5, "peak_memory_mb": 300.0, "labels_used": 320.0,
                      "samples_generated": queries[-1], "reward_queries": queries[-1], "pairs_seen": pairs[-1],
                      "models_held": 4.0 if method == "ppo" else 2.0, "models": "policy+reference",
                      "trainable_params": 1000.0, "optimizer_mb": 0.008}}


@pytest.fixture
def records():
    out = []
    for beta, peak in ((0.05, 0.7), (0.1, 0.9), (0.5, 0.6)):
        out.append(fake_record("ppo", beta, gold_peak=peak))
        out.append(fake_record("dpo", beta, family="off-policy", gold_peak=peak - 0.2))
    out.append(runner.missing_record("orpo", "teachkit.rlhf.orpo_train: ModuleNotFoundError"))
    return out


# --------------------------------------------------------------------------- budget


def test_budget_converts_labels_to_steps_with_the_exchange_rate():
    b = runner.Budget(labels=1000, pairs_per_query=1.0)
    assert b.steps("on-policy", 64) == 15            # 15 * 64 = 960 <= 1000 < 16 * 64
    assert b.steps("off-policy", 64) == 15
    b2 = runner.Budget(labels=1000, pairs_per_query=2.0)
    assert b2.steps("on-policy", 64) == 15 and b2.steps("off-policy", 64) == 31


@pytest.mark.parametrize("kwargs", [dict(labels=0), dict(labels=10.5), dict(labels=10, pairs_per_query=0)])
def test_budget_rejects_nonsense(kwargs):
    with pytest.raises(ValueError, match="Budget"):
        runner.Budget(**kwargs)


def test_budget_too_small_for_one_step_says_so():
    with pytest.raises(ValueError, match="does not pay for one step"):
        runner.Budget(labels=10).steps("on-policy", 64)


# --------------------------------------------------------------------------- tables


def test_summary_picks_the_best_gold_beta_and_keeps_missing_methods(records):
    rows = sd.summary_rows(records)
    by = {r["method"]: r for r in rows}
    assert set(by) == {"ppo", "dpo", "orpo"}
    # gold ends at peak - 0.05 * 3**2 * ... : the β with the highest peak wins
    assert by["ppo"]["beta"] == 0.1 and by["dpo"]["beta"] == 0.1
    assert by["ppo"]["gold_reward"] == pytest.approx(0.9 - 0.05 * 4)
    assert by["orpo"]["status"] == "missing"
    assert len(sd.summary_rows(records, pick="all")) == 7


def test_format_table_marks_missing_rows_and_never_invents_numbers(records):
    text = sd.format_table(sd.summary_rows(records))
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["method", "family", "β", "lr", "gold"]
    orpo = next(line for line in lines if line.startswith("orpo"))
    assert "missing" in orpo and not any(ch.isdigit() for ch in orpo)
    ppo = next(line for line in lines if line.startswith("ppo"))
    assert "0.700" in ppo and "4" in ppo.split()


def test_summary_rejects_unknown_pick(records):
    with pytest.raises(ValueError, match="pick"):
        sd.summary_rows(records, pick="median")


def test_select_runs_filters_by_method_beta_and_skips_missing(records):
    assert [r["beta"] for r in sd.select_runs(records, method="dpo")] == [0.05, 0.1, 0.5]
    assert len(sd.select_runs(records, beta=0.1)) == 2
    assert sd.select_runs(records, method="orpo") == []


def test_compare_records_reports_max_curve_and_final_differences(records):
    a = records[0]
    b = fake_record("ppo", a["beta"], gold_peak=0.7)
    b["history"]["gold_reward"][2] += 0.25
    diff = sd.compare_records(a, b)
    assert diff["history.gold_reward"] == pytest.approx(0.25)
    assert diff["final.gold_reward"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same method"):
        sd.compare_records(a, records[1])


# --------------------------------------------------------------------------- storage


def test_runs_round_trip_through_a_checksummed_artifact(records, tmp_path):
    path = sd.save_runs(records, tmp_path / "showdown_test.pt", meta={"budget": 320})
    back, meta = sd.load_runs(path)
    assert meta == {"budget": 320}
    assert back[0]["history"]["gold_reward"] == records[0]["history"]["gold_reward"]
    assert back[-1]["status"] == "missing"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(artifacts.ArtifactError, match="make data"):
        sd.load_runs(path)


def test_missing_file_tells_the_learner_to_run_make_data(tmp_path):
    with pytest.raises(artifacts.ArtifactError, match="make data"):
        sd.load_runs(tmp_path / "nope.pt")


# --------------------------------------------------------------------------- figures


def test_every_figure_draws_from_synthetic_records(records):
    vz.plot_frontier(records, start={"kl_to_ref": 0.0, "gold_reward": 0.5})
    vz.plot_gold_vs_proxy(sd.select_runs(records, beta=0.1))
    vz.plot_gold_vs_proxy(records[:5])   # 5 panels: a second row with blank axes
    vz.plot_costs(sd.summary_rows(records))
    vz.plot_history({"a": records[0]["history"], "b": records[1]["history"]}, title="t")
    assert matplotlib.pyplot.get_fignums() == []   # every figure was closed


def test_figures_refuse_empty_input():
    for fn in (vz.plot_frontier, vz.plot_gold_vs_proxy, vz.plot_costs):
        with pytest.raises(ValueError, match="no finished runs"):
            fn([runner.missing_record("dpo", "not built")])
    with pytest.raises(ValueError, match="no histories"):
        vz.plot_history({})



def test_over_optimisation_flags_gold_falling_while_proxy_rises():
    h = {"gold_reward": [0.5, 0.8, 0.7, 0.6], "proxy_reward": [0.0, 1.0, 1.5, 2.0]}
    out = sd.over_optimisation(h)
    assert out["flagged"] and out["peak_index"] == 1
    assert out["gold_drop"] == pytest.approx(0.2) and out["proxy_gain"] == pytest.approx(1.0)
    # the gold falls but so does the proxy: the reward model is not being exploited
    assert not sd.over_optimisation({"gold_reward": [0.5, 0.8, 0.6], "proxy_reward": [0.0, 1.0, 0.5]})["flagged"]
    # still rising: nothing to flag
    assert not sd.over_optimisation({"gold_reward": [0.5, 0.6, 0.7], "proxy_reward": [0, 1, 2]})["flagged"]
    with pytest.raises(ValueError, match="same length"):
        sd.over_optimisation({"gold_reward": [0.5], "proxy_reward": []})


def test_exact_by_target_plot_draws_and_refuses_empty():
    rec = fake_record("ppo", 0.1)
    rec["final"].update({f"exact_k{k}": 0.1 * k for k in range(1, 7)})
    start = {f"exact_k{k}": 0.5 for k in range(1, 7)}
    coverage = {f"chosen_exact_k{k}": 0.3 for k in range(1, 7)}
    vz.plot_exact_by_target([rec], start, coverage)
    with pytest.raises(ValueError, match="no finished runs"):
        vz.plot_exact_by_target([runner.missing_record("dpo", "x")], start, coverage)


def test_the_live_method_the_lr_grids_and_the_seeds_are_consistent():
    assert sd.LIVE["task"] in sd.TASKS and sd.LIVE["method"] in runner.METHODS
    for method, grid in sd.LR_GRID.items():
        assert runner.METHODS[method].family == "off-policy", method
        assert list(grid) == sorted(set(grid)), method
        assert runner.knob_defaults(method)["lr"] in grid, method        # the default lr is swept too
    assert set(sd.LR_GRID) == {m for m, s in runner.METHODS.items() if s.family == "off-policy"}
    for method, spec in runner.METHODS.items():
        if spec.family == "on-policy":
            assert sd.lr_grid(method) == (runner.knob_defaults(method)["lr"],)
    assert not set(sd.SELECT_SEEDS) & set(sd.TEST_SEEDS)                 # the reported seeds are fresh
    assert len(sd.TEST_SEEDS) >= 3
    with pytest.raises(ValueError, match="task must be one of"):
        sd.data_path("chess")


def staged(method, beta, lr, seed, gold, phase, family="off-policy", kl=0.1):
    rec = fake_record(method, beta, family=family, seed=seed)
    rec["config"]["lr"] = lr
    rec["phase"] = phase
    rec["final"].update({"gold_reward": gold, "kl_to_ref": kl})
    return rec


@pytest.fixture
def staged_records():
    out = [
        staged("dpo", 0.1, 1e-5, 0, 0.60, "select"), staged("dpo", 0.1, 1e-5, 1, 0.70, "select"),
        staged("dpo", 0.1, 1e-4, 0, 0.80, "select"), staged("dpo", 0.1, 1e-4, 1, 0.70, "select"),
        staged("dpo", 0.3, 1e-4, 0, 0.75, "select", kl=0.05), staged("dpo", 0.3, 1e-4, 1, 0.75, "select", kl=0.05),
        staged("ppo", 0.05, 3e-4, 0, 0.90, "select", "on-policy"), staged("ppo", 0.05, 3e-4, 1, 0.80, "select", "on-policy"),
    ]
    out += [staged("dpo", 0.3, 1e-4, s, g, "test") for s, g in ((2, 0.70), (3, 0.80), (4, 0.75))]
    out += [staged("ppo", 0.05, 3e-4, s, g, "test", "on-policy") for s, g in ((2, 0.90), (3, 0.86), (4, 0.88))]
    out.append(runner.missing_record("orpo", "not built"))
    return out


def test_sweep_rows_average_over_the_seeds_of_each_setting(staged_records):
    rows = sd.sweep_rows(staged_records)
    assert [(r["method"], r["beta"], r["lr"]) for r in rows] == [
        ("ppo", 0.05, 3e-4), ("dpo", 0.1, 1e-5), ("dpo", 0.1, 1e-4), ("dpo", 0.3, 1e-4)]
    dpo = rows[2]
    assert dpo["n"] == 2 and dpo["seeds"] == [0, 1]
    assert dpo["gold_mean"] == pytest.approx(0.75) and (dpo["gold_min"], dpo["gold_max"]) == (0.7, 0.8)


def test_choose_takes_the_best_mean_gold_and_breaks_ties_by_lower_kl(staged_records):
    chosen = sd.choose(staged_records)
    assert list(chosen) == ["ppo", "dpo"]
    # dpo: (0.1, 1e-4) and (0.3, 1e-4) both average 0.75; the second has the lower KL
    assert (chosen["dpo"]["beta"], chosen["dpo"]["lr"]) == (0.3, 1e-4)
    assert chosen["ppo"]["gold_mean"] == pytest.approx(0.85)
    runs = sd.grid_runs(staged_records, chosen, seed=0)
    assert sorted((r["method"], r["beta"]) for r in runs) == [("dpo", 0.1), ("dpo", 0.3), ("ppo", 0.05)]


def test_ranking_reports_seed_means_with_their_spread(staged_records):
    rows = sd.ranking(staged_records)
    assert [r["method"] for r in rows] == ["ppo", "dpo"]
    ppo, dpo = rows
    assert ppo["n"] == 3 and ppo["seeds"] == [2, 3, 4]
    assert ppo["gold_reward_mean"] == pytest.approx(0.88)
    assert ppo["gold_reward_se"] == pytest.approx(0.02 / 3 ** 0.5)
    assert (dpo["gold_reward_min"], dpo["gold_reward_max"]) == (0.7, 0.8)
    delta, se = sd.difference(ppo, dpo)
    assert delta == pytest.approx(0.13) and se == pytest.approx((ppo["gold_reward_se"] ** 2 + dpo["gold_reward_se"] ** 2) ** 0.5)
    # two settings of one method in one phase cannot be ranked as one row
    with pytest.raises(ValueError, match="one setting per method"):
        sd.ranking(staged_records, phase="select")


def test_every_grid_is_ascending_and_names_its_default_beta():
    for name, spec in runner.METHODS.items():
        assert len(spec.betas) >= 3 and list(spec.betas) == sorted(set(spec.betas)), name
        assert spec.default_beta in spec.betas, name
        # the default is an interior point, never an end of the grid: the named single-run β
        assert spec.betas[0] < spec.default_beta < spec.betas[-1], name
    with pytest.raises(ValueError, match="not in its grid"):
        runner.dataclasses.replace(runner.METHODS["dpo"], default_beta=0.5)
    with pytest.raises(ValueError, match="ascending"):
        runner.dataclasses.replace(runner.METHODS["dpo"], betas=(1.0, 0.3, 0.1))


def test_merge_methods_replaces_only_the_rebuilt_methods():
    old = [{"method": "dpo", "seed": 0}, {"method": "grpo", "seed": 0}, {"method": "grpo", "seed": 1}]
    meta = {"task": "arithmetic", "live": {"method": "dpo"}, "betas": {"dpo": [0.1], "grpo": [0.01]},
            "lrs": {"dpo": [1e-4], "grpo": [3e-4]}, "chosen": {"dpo": {"beta": 0.1}, "grpo": {"beta": 0.01}}}
    new = [{"method": "grpo", "seed": 0, "fresh": True}]
    new_meta = {"task": "arithmetic", "betas": {"grpo": [0.04]}, "lrs": {"grpo": [3e-4]},
                "chosen": {"grpo": {"beta": 0.04}}}
    records, merged = sd.merge_methods(old, meta, new, new_meta, ["grpo"])
    assert records == [old[0], new[0]]
    assert merged["chosen"] == {"dpo": {"beta": 0.1}, "grpo": {"beta": 0.04}}
    assert merged["betas"]["grpo"] == [0.04] and merged["live"] == {"method": "dpo"}
    assert meta["chosen"]["grpo"] == {"beta": 0.01}  # the stored meta is not mutated
    with pytest.raises(ValueError, match="cannot merge task"):
        sd.merge_methods(old, meta, new, {**new_meta, "task": "length"}, ["grpo"])
