"""Exercise of notebook 14: how many reads in flight are enough, read off the planner's cost model."""

from __future__ import annotations

import math
import numbers
import random
from types import SimpleNamespace

from ._core import Exercise

__all__ = ["enough_io_depth"]

def _reference(x: dict) -> int:
    """The smallest io_depth from which on the pipelined t_layer no longer changes (s_read > 0)."""
    need = max(1, math.ceil(x["n_act"] * (1 - x["h"])))    # QD must cover every miss: one wave, all submitted
    return 1 if need <= x["c"] else need                   # the staging rows alone give QD = c


def _inputs(**over) -> dict:
    """A plan like notebook 14's: 6 KiB bundles, 80 us + 13 us per read, clusters of 16."""
    x = dict(n_act=200.0, h=0.8, c=16, io_depth=4, bundle=6144, a=80e-6, b=13e-6, s_call=70e-6, s_read=5e-6,
             bw_fused=10e9, bw_kernel=25e9, c_unit=5e-6, t_pre=150e-6)
    x.update(over)
    return x


def random_inputs(seed: int) -> tuple[dict, float, float, float, int]:
    rng = random.Random(seed)
    x = _inputs(n_act=rng.uniform(50, 600), h=rng.uniform(0.0, 0.99), c=rng.choice((16, 32, 64)),
                io_depth=rng.choice((1, 2, 4, 16, 64)), bundle=rng.choice((3072, 6144, 12288)),
                a=rng.uniform(20e-6, 200e-6), b=rng.uniform(2e-6, 40e-6), s_call=rng.uniform(0, 150e-6),
                s_read=rng.uniform(0.5e-6, 10e-6), bw_fused=rng.uniform(3e9, 40e9), bw_kernel=rng.uniform(3e9, 40e9),
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


def searched_depth(x: dict, fixed: float, bw_mem: float, c_layer: float, n_layers: int) -> int:
    """The answer by brute force: plan.predict's t_layer for every io_depth up to well past the misses."""
    top = math.ceil(x["n_act"]) + 2 * int(x["c"]) + 2
    t = [predict_t_layer({**x, "io_depth": d}, fixed, bw_mem, c_layer, n_layers) for d in range(1, top + 1)]
    d = top
    while d > 1 and abs(t[d - 2] - t[-1]) <= 1e-12 * t[-1]:
        d -= 1
    return d


def _call(fn, x: dict) -> int:
    got = fn(dict(x))
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        raise AssertionError(f"return an io_depth, a whole number of reads (an int), got {type(got).__name__}")
    if float(got) != int(got):
        raise AssertionError(f"an io_depth is a whole number of reads, got {got}: how many reads can be in flight?")
    return int(got)


def _expect(fn, x: dict, what: str) -> None:
    got, want = _call(fn, x), _reference(x)
    if got != want:
        raise AssertionError(f"{what}: expected io_depth {want}, got {got}")


def _hand(fn):
    # n_miss = 202 x 0.25 = 50.5 misses: QD 50 leaves a second wave and half a read unsubmitted, QD 51 covers them
    _expect(fn, _inputs(n_act=202.0, h=0.75), "202 active neurons, h = 0.75: n_miss = 50.5, clusters of 16 "
            "(a whole number of reads in flight must cover 50.5 misses)")


def _covered(fn):
    x = _inputs(n_act=60.0, h=0.8, c=16)
    got = _call(fn, x)
    if got == 16:
        raise AssertionError("12 misses, clusters of 16: you returned QD (16 reads in flight), not io_depth. The "
                             "staging rows already put 16 reads in flight at io_depth 1, so which io_depth is the "
                             "smallest that gives the same t_layer?")
    _expect(fn, x, "12 misses, clusters of 16: QD = max(io_depth, 16) covers them at any io_depth")


def _no_misses(fn):
    _expect(fn, _inputs(h=1.0), "h = 1: nothing to read, io_depth changes nothing")


def _matches_search(fn):
    for seed in (0, 1, 8, 13, 15, 21):                     # seeds 8, 13 and 21: a cluster covers the misses
        x, *rest = random_inputs(seed)
        want = searched_depth(x, *rest)
        got = _call(fn, x)
        if got != want:
            raise AssertionError(f"random inputs #{seed} ({x}): plan.predict's t_layer stops changing from "
                                 f"io_depth {want} on, you returned {got}")


def _wrong_ignores_cluster(x):
    return max(1, math.ceil(x["n_act"] * (1 - x["h"])))


def _wrong_returns_qd(x):
    return max(math.ceil(x["n_act"] * (1 - x["h"])), x["c"])


def _wrong_rounds_down(x):
    need = max(1, math.floor(x["n_act"] * (1 - x["h"])))
    return 1 if need <= x["c"] else need


def _wrong_counts_active(x):
    need = math.ceil(x["n_act"])
    return 1 if need <= x["c"] else need


enough_io_depth = Exercise(
    name="enough_io_depth",
    reference=_reference,
    properties=[
        ("the hand case: 50.5 misses, clusters of 16 -> 51", _hand),
        ("a cluster covers the misses: 12 misses, clusters of 16 -> 1", _covered),
        ("nothing to read (h = 1) -> 1", _no_misses),
        ("it matches a brute-force search over io_depth with plan.predict on random inputs", _matches_search),
    ],
    wrong_answers={"ignores the cluster size (QD = max(io_depth, c))": _wrong_ignores_cluster,
                   "returns QD, not io_depth": _wrong_returns_qd,
                   "rounds the misses down": _wrong_rounds_down,
                   "counts the active neurons, not the misses": _wrong_counts_active},
    hints=(
        "io_depth enters t_layer only through QD = max(io_depth, c), and QD only through min(n_miss, QD) reads "
        "submitted at once and ceil(n_miss / QD) waves of the burst: which QD makes both stop changing?",
        "both stop once QD >= n_miss, i.e. QD >= ceil(n_miss) (reads are whole). If ceil(n_miss) <= c the staging "
        "rows already give that QD at io_depth 1; otherwise io_depth itself must reach ceil(n_miss)",
        "import math; need = max(1, math.ceil(x['n_act'] * (1 - x['h']))); return 1 if need <= x['c'] else need",
    ),
)
