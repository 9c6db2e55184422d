"""Exercise of notebook 14: the planner's cost model for one layer (the pipelined ``t_layer``)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

from ._core import Exercise, assert_close

__all__ = ["layer_time"]

KEYS = ("n_act", "h", "c", "io_depth", "bundle", "a", "b", "s_call", "s_read", "bw_fused", "bw_kernel",
        "c_unit", "t_pre")


def _parts(x: dict) -> dict:
    """Every term of the pipelined cost model for one layer (read unit 'bundle'), in seconds."""
    n_miss = x["n_act"] * (1 - x["h"])
    qd = max(x["io_depth"], x["c"])
    n_units = max(1.0, math.ceil(n_miss / x["c"]))
    t_submit = x["s_call"] * min(1.0, n_miss) + x["s_read"] * min(n_miss, qd)
    t_io = x["a"] * math.ceil(n_miss / qd) + x["b"] * n_miss
    t_hits = x["n_act"] * x["h"] * x["bundle"] / x["bw_fused"] + 2 * x["c_unit"]
    t_tail = n_miss * x["bundle"] / x["bw_kernel"] + n_units * x["c_unit"]
    return {"n_miss": n_miss, "qd": qd, "n_units": n_units, "t_submit": t_submit, "t_io": t_io,
            "t_hits": t_hits, "t_tail": t_tail}


def _ref_layer_time(x: dict) -> float:
    return _ref_layer_time_qd(x, max(x["io_depth"], x["c"]))


def _inputs(**over) -> dict:
    """A plan like notebook 14's: 200 active neurons, 6 KiB bundles, 80 us + 13 us per read."""
    x = dict(n_act=200.0, h=0.8, c=16, io_depth=4, bundle=6144, a=80e-6, b=13e-6, s_call=70e-6, s_read=5e-6,
             bw_fused=10e9, bw_kernel=25e9, c_unit=5e-6, t_pre=150e-6)
    x.update(over)
    return x


def _call(fn, x: dict) -> float:
    got = fn(dict(x))
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise AssertionError(f"return t_layer as a number of seconds (a float), got {type(got).__name__}")
    return float(got)


def _hand(fn):
    # n_miss = 200 x 0.2 = 40, QD = max(4, 16) = 16, 3 waves, 3 units (clusters of 16)
    # t_submit = 70 + 5 x 16 = 150 us;  t_io = 80 x 3 + 13 x 40 = 760 us
    # t_hits = 160 x 6144 B / 10 GB/s + 2 x 5 us = 108.304 us;  t_tail = 40 x 6144 B / 25 GB/s + 3 x 5 us = 24.8304 us
    # lanes: compute 133.1344 us, I/O 760 + 24.8304 / 3 = 768.2768 us
    # t_layer = 150 + 150 + 768.2768 = 1068.2768 us
    assert_close(_call(fn, _inputs()), 1068.2768e-6, ("the hand case: n_miss = 40, QD = 16 (3 waves, 3 clusters); t_submit 150 us, t_io 760 us, "
                  "t_hits 108.304 us, t_tail 24.8304 us (s)"),
                 rtol=1e-6, atol=0.0)


def _max_not_sum(fn):
    x = _inputs()
    p = _parts(x)
    got, want = _call(fn, x), _ref_layer_time(x)
    summed = x["t_pre"] + p["t_submit"] + p["t_hits"] + p["t_tail"] + p["t_io"]
    if abs(got - summed) < 1e-9 * summed:
        raise AssertionError(f"you returned {got * 1e6:.1f} us = t_pre + t_submit + compute + I/O: the two lanes run "
                             f"at the same time, so the layer takes the LONGER one, max(compute lane, I/O lane); "
                             f"expected {want * 1e6:.1f} us")
    assert_close(got, want, "the hand case (s)", rtol=1e-6, atol=0.0)


def _queue_depth(fn):
    # io_depth 1 but clusters of 16: the engine still has 16 reads in flight, so 16 misses are ONE wave
    x = _inputs(n_act=20.0, h=0.2, io_depth=1, c=16)
    got, want = _call(fn, x), _ref_layer_time(x)
    assert_close(got, want, "io_depth = 1, clusters of 16, 16 misses: QD = max(io_depth, c) = 16, one wave (s)",
                 rtol=1e-6, atol=0.0)
    x = _inputs(n_act=200.0, h=0.5, io_depth=64, c=16)
    assert_close(_call(fn, x), _ref_layer_time(x), "io_depth = 64, clusters of 16: QD = 64 (s)", rtol=1e-6, atol=0.0)


def _no_misses(fn):
    x = _inputs(h=1.0)
    assert_close(_call(fn, x), _ref_layer_time(x), "h = 1 (nothing to read: no submit, no burst, one unit) (s)",
                 rtol=1e-6, atol=1e-12)


def random_inputs(seed: int) -> tuple[dict, float, float, float, int]:
    rng = random.Random(seed)
    x = _inputs(n_act=rng.uniform(50, 600), h=rng.uniform(0.0, 0.99), c=rng.choice((16, 32, 64)),
                io_depth=rng.choice((1, 2, 4, 16, 64)), bundle=rng.choice((3072, 6144, 12288)),
                a=rng.uniform(20e-6, 200e-6), b=rng.uniform(2e-6, 40e-6), s_call=rng.uniform(0, 150e-6),
                s_read=rng.uniform(0, 10e-6), bw_fused=rng.uniform(3e9, 40e9), bw_kernel=rng.uniform(3e9, 40e9),
                c_unit=rng.uniform(0, 20e-6))
    fixed, bw_mem, c_layer, n_layers = rng.uniform(1e6, 50e6), rng.uniform(5e9, 40e9), rng.uniform(0, 200e-6), 4
    x["t_pre"] = fixed / (n_layers * bw_mem) + c_layer
    return x, fixed, bw_mem, c_layer, n_layers


def predict_t_layer(x: dict, fixed: float, bw_mem: float, c_layer: float, n_layers: int) -> float:
    """t_layer as the planner itself computes it: ``plan.predict``'s token time over L."""
    from ..sparse.planner.plan import MachineProfile, ModelProfile, predict

    bundle = int(x["bundle"])
    spec = SimpleNamespace(bundle_bytes=bundle, stride=bundle, d=bundle // 12, dtype="float32")
    mp = ModelProfile(n_layers, 4096, None, x["n_act"], int(x["n_act"]) + 1, [])
    machine = MachineProfile(io={"random": {4096: {1: 1e8}}, "burst": {"a": x["a"], "b": x["b"]}}, bw_mem=bw_mem,
                             bw_kernel=x["bw_kernel"], bw_fused=x["bw_fused"], unit_overhead=x["c_unit"],
                             layer_overhead=c_layer, submit_call=x["s_call"], submit_read=x["s_read"])
    terms = predict(spec, mp, machine, fixed, 0, 0, int(x["c"]), "bundle", io_depth=int(x["io_depth"]),
                    hit_rate=x["h"])
    return terms["t_token"] / n_layers


def _matches_planner(fn):
    for seed in range(6):
        x, *rest = random_inputs(seed)
        want = predict_t_layer(x, *rest)
        assert_close(_call(fn, x), want, f"plan.predict's t_layer on random inputs #{seed} ({x}) (s)",
                     rtol=1e-6, atol=0.0)


def _wrong_sum(x):
    p = _parts(x)
    return x["t_pre"] + p["t_submit"] + p["t_hits"] + p["t_tail"] + p["t_io"]


def _wrong_no_submit(x):
    p = _parts(x)
    return x["t_pre"] + max(p["t_hits"] + p["t_tail"], p["t_io"] + p["t_tail"] / p["n_units"])


def _wrong_no_tail(x):
    p = _parts(x)
    return x["t_pre"] + p["t_submit"] + max(p["t_hits"], p["t_io"])


def _ref_layer_time_qd(x: dict, qd: int) -> float:
    """The cost model with the queue depth forced to ``qd`` (a wrong answer's helper)."""
    n_miss = x["n_act"] * (1 - x["h"])
    n_units = max(1.0, math.ceil(n_miss / x["c"]))
    t_submit = x["s_call"] * min(1.0, n_miss) + x["s_read"] * min(n_miss, qd)
    t_io = x["a"] * math.ceil(n_miss / qd) + x["b"] * n_miss
    t_hits = x["n_act"] * x["h"] * x["bundle"] / x["bw_fused"] + 2 * x["c_unit"]
    t_tail = n_miss * x["bundle"] / x["bw_kernel"] + n_units * x["c_unit"]
    return x["t_pre"] + t_submit + max(t_hits + t_tail, t_io + t_tail / n_units)


layer_time = Exercise(
    name="layer_time",
    reference=_ref_layer_time,
    properties=[
        ("the hand case: n_act 200, h 0.8, clusters of 16, io_depth 4 -> 1068.2768 us", _hand),
        ("the two lanes overlap: max(compute lane, I/O lane), not their sum", _max_not_sum),
        ("reads in flight: QD = max(io_depth, c)", _queue_depth),
        ("nothing to read (h = 1): no submit, no burst", _no_misses),
        ("it matches plan.predict's t_layer (its t_token / L) on random inputs", _matches_planner),
    ],
    wrong_answers={"adds the lanes instead of taking the longer": _wrong_sum,
                   "forgets t_submit": _wrong_no_submit,
                   "forgets the tail (the landed clusters' compute)": _wrong_no_tail,
                   "QD = io_depth, ignoring the cluster size": lambda x: _ref_layer_time_qd(x, x["io_depth"])},
    hints=(
        "n_miss = n_act (1 - h) reads, QD = max(io_depth, c) of them in flight; after t_pre and t_submit the layer "
        "runs two lanes at once and takes the longer: compute (t_hits + t_tail) and I/O (t_io + the last "
        "cluster's share of t_tail)",
        "t_submit = s_call min(1, n_miss) + s_read min(n_miss, QD); t_io = a ceil(n_miss / QD) + b n_miss; "
        "t_hits = n_act h bundle / bw_fused + 2 c_unit; n_units = max(1, ceil(n_miss / c)); "
        "t_tail = n_miss bundle / bw_kernel + n_units c_unit; "
        "t_layer = t_pre + t_submit + max(t_hits + t_tail, t_io + t_tail / n_units)",
        "import math; n_miss = x['n_act'] * (1 - x['h']); qd = max(x['io_depth'], x['c']); "
        "n_units = max(1, math.ceil(n_miss / x['c'])); ... each term as in hint 2 ...; "
        "return x['t_pre'] + t_submit + max(t_hits + t_tail, t_io + t_tail / n_units)",
    ),
)
