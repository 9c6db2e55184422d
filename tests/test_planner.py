"""The planner: its constraints (budget, cold region), its cost model's terms, trace replay."""

from dataclasses import replace

import numpy as np
import pytest

from teachkit.sparse.flash.aio import BYTES_PER_SLOT
from teachkit.sparse.flash.unit_reads import JobTable
from teachkit.sparse.flash.format import FlashSpec
from teachkit.sparse.planner.plan import MachineProfile, choose_plan, explain, predict, profile_model

IO = {"random": {4096: {1: 50e6, 4: 150e6}, 16384: {1: 150e6, 4: 500e6}, 65536: {1: 500e6, 4: 1e9}}}
SPEC = FlashSpec(n_layers=2, n_neurons=256, n_mats=3, d=256)
MACHINE = MachineProfile(io=IO, bw_mem=10e9, bw_kernel=10e9)
SLOW_KERNELS = MachineProfile(io=IO, bw_mem=10e9, bw_kernel=5e9)


def _profile(seed=0, n_tok=30):
    rng = np.random.default_rng(seed)
    p = np.minimum(0.9, 3.0 / np.arange(1, 257))
    traces = [[np.flatnonzero(rng.random(256) < p) for _ in range(2)] for _ in range(n_tok)]
    return profile_model(traces, 256)


def test_profile_counts_frequencies():
    traces = [[np.array([0, 1])], [np.array([1, 2])]]
    mp = profile_model(traces, 4)
    np.testing.assert_allclose(mp.freq[0], [0.5, 1.0, 0.5, 0.0])
    assert mp.mean_active == 2 and mp.max_active == 2
    with pytest.raises(ValueError):
        profile_model([], 4)


def test_plan_fits_the_budget_and_holds_a_layer():
    mp = _profile()
    budget, fixed, extra = 1_200_000, 100_000, 10_000
    plan = choose_plan(SPEC, mp, MACHINE, budget, fixed, extra)
    bundle, n, L, cs = SPEC.bundle_bytes, SPEC.n_neurons, SPEC.n_layers, plan.cluster_size
    rows = max(plan.io_depth, cs)
    staging = (rows + 64) * SPEC.stride + rows * (BYTES_PER_SLOT + JobTable.BYTES_PER_ROW)   # + prefill chunk, AIO/job tables
    prefill = 64 * 4 * (64 * 3 + 2 * SPEC.d)                             # max_prompt rows of H, U, X, out
    n_cl = max(1, plan.hot_neurons // cs)
    tables = 8 * (3 * L * n + L * n_cl * (cs + 1) + 4 * (plan.hot_slots + plan.cold_slots) + 4) + plan.cold_slots
    used = fixed + extra + staging + prefill + tables + (plan.hot_neurons * L + plan.cold_slots) * bundle
    assert used <= budget < used + bundle + 33                           # the cold region takes what is left
    assert plan.cold_slots >= mp.max_active
    assert plan.predicted_tok_s == pytest.approx(plan.terms["tok_s"])
    with pytest.raises(ValueError, match="no plan fits"):
        choose_plan(SPEC, mp, MACHINE, 500_000, fixed, extra)


def test_explain_prints_the_reads_the_engine_has_in_flight():
    """The staging rows hold a whole cluster: io_depth 1 with clusters of 16 is 16 reads in flight."""
    plan = choose_plan(SPEC, _profile(), MACHINE, 1_200_000, 100_000, 10_000, io_depth=(1,))
    assert plan.io_depth == 1 and plan.cluster_size > 1
    text = explain(plan)
    assert f"{plan.cluster_size} reads in flight (io_depth 1)" in text
    deep = replace(plan, io_depth=4 * plan.cluster_size)
    assert f"{4 * plan.cluster_size} reads in flight (io_depth {4 * plan.cluster_size})" in explain(deep)


def test_cost_model_terms_are_consistent():
    mp = _profile()
    t = predict(SPEC, mp, SLOW_KERNELS, fixed_bytes=1_000_000, hot_neurons=0, cold_slots=100, cluster_size=32,
                read_unit="bundle", hit_rate=0.5)
    assert t["t_fixed"] == pytest.approx(1e-4)
    assert t["misses_per_token"] == pytest.approx(2 * mp.mean_active * 0.5)
    serial = predict(SPEC, mp, SLOW_KERNELS, 1_000_000, 0, 100, 32, "bundle", pipelined=False, hit_rate=0.5)
    assert serial["t_token"] == pytest.approx(serial["t_fixed"] + serial["t_compute"] + serial["t_io"])
    assert t["tok_s"] > serial["tok_s"]                       # overlap can only help
    perfect = predict(SPEC, mp, SLOW_KERNELS, 1_000_000, 0, 100, 32, "bundle", hit_rate=1.0)
    assert perfect["t_io"] == 0 and perfect["tok_s"] > t["tok_s"]


def test_more_budget_never_predicts_slower():
    mp = _profile(seed=1)
    speeds = [choose_plan(SPEC, mp, MACHINE, b, 100_000, 10_000).predicted_tok_s
              for b in (1_000_000, 1_300_000, 1_700_000)]
    assert speeds == sorted(speeds)


def test_calibration_fits_the_time_the_model_leaves_out_on_the_second_pass():
    from teachkit.sparse.planner.plan import calibrate_layer_overhead

    calls = []

    def time_token(t):                      # first pass slow (cache filling), second pass 10 ms
        calls.append(t)
        return 0.050 if calls.count(t) == 1 else 0.010

    got = calibrate_layer_overhead(time_token, range(3), model_token_s=0.002, n_layers=4)
    assert got == pytest.approx((0.010 - 0.002) / 4)          # only the all-in-memory pass counts
    assert calls == [0, 1, 2, 0, 1, 2]
    assert calibrate_layer_overhead(lambda t: 0.001, range(2), 0.002, 4) == 0.0   # never negative


def test_layer_overhead_adds_to_every_layer_of_the_chain():
    mp = _profile()
    base = predict(SPEC, mp, SLOW_KERNELS, 1_000_000, 0, 100, 32, "bundle", hit_rate=0.5)
    more = predict(SPEC, mp, replace(SLOW_KERNELS, layer_overhead=1e-4), 1_000_000, 0, 100, 32, "bundle",
                   hit_rate=0.5)
    assert more["t_token"] == pytest.approx(base["t_token"] + SPEC.n_layers * 1e-4)


def test_split_reads_cost_two_bursts():
    mp = _profile()
    machine = replace(SLOW_KERNELS, io=dict(IO, burst={"a": 1e-4, "b": 1e-5}))
    kw = dict(hit_rate=0.5, io_depth=64)
    whole = predict(SPEC, mp, machine, 1_000_000, 0, 100, 32, "bundle", **kw)
    split = predict(SPEC, mp, machine, 1_000_000, 0, 100, 32, "split", **kw)
    assert split["t_io"] == pytest.approx(2 * whole["t_io"])
    n_miss = mp.mean_active * 0.5
    assert whole["t_io"] == pytest.approx(SPEC.n_layers * (1e-4 * np.ceil(n_miss / 64) + 1e-5 * n_miss))


def test_submitting_reads_costs_each_layer_that_reads():
    mp = _profile()
    machine = replace(SLOW_KERNELS, submit_call=1e-4, submit_read=2e-6)
    base = predict(SPEC, mp, SLOW_KERNELS, 1_000_000, 0, 100, 4, "bundle", hit_rate=0.5, io_depth=4)
    more = predict(SPEC, mp, machine, 1_000_000, 0, 100, 4, "bundle", hit_rate=0.5, io_depth=4)
    n_miss = mp.mean_active * 0.5
    assert n_miss > 4                                        # more misses than the 4 reads in flight
    per_layer = 1e-4 + 2e-6 * 4                              # only what goes out at once: QD = max(io_depth, c)
    assert base["t_submit"] == 0 and more["t_submit"] == pytest.approx(SPEC.n_layers * per_layer)
    assert more["t_token"] == pytest.approx(base["t_token"] + more["t_submit"])   # on the chain, before both lanes
    serial = predict(SPEC, mp, machine, 1_000_000, 0, 100, 32, "bundle", pipelined=False, hit_rate=0.5)
    assert serial["t_token"] == pytest.approx(serial["t_fixed"] + serial["t_submit"] + serial["t_compute"] +
                                              serial["t_io"])
    split = predict(SPEC, mp, machine, 1_000_000, 0, 100, 4, "split", hit_rate=0.5, io_depth=4)
    assert split["t_submit"] == pytest.approx(2 * more["t_submit"])              # gate reads, then up/down reads
    perfect = predict(SPEC, mp, machine, 1_000_000, 0, 100, 32, "bundle", hit_rate=1.0)
    assert perfect["t_submit"] == 0                                              # nothing to read, nothing to submit


def test_submit_cost_fit_is_robust_and_counts_only_the_reads_in_flight():
    from teachkit.sparse.planner.plan import fit_submit_cost

    reads = np.array([5, 10, 20, 30, 40, 64, 100, 200, 12, 25])
    seconds = 50e-6 + 3e-6 * np.minimum(reads, 64)
    seconds[3] *= 4                                          # one submit slowed by another program
    call, per_read = fit_submit_cost(reads, seconds, qd=64)
    assert call == pytest.approx(50e-6, rel=1e-6) and per_read == pytest.approx(3e-6, rel=1e-6)
    assert fit_submit_cost([], [], 64) == (0.0, 0.0)
    assert fit_submit_cost([8, 8], [1e-4, 2e-4], 64) == (pytest.approx(1.5e-4), 0.0)   # one size: no slope
    assert fit_submit_cost([4, 8], [2e-4, 1e-4], 64)[1] == 0.0                  # never a negative cost per read
