"""check.sparse_ffn_parallel (notebook 11): each typical wrong kernel is rejected by the property it breaks."""

import textwrap

import numba
import numpy as np
import pytest

import teachkit.check as check
from teachkit.check.races import shared_writes_in_prange

EX = check.sparse_ffn_parallel
PROPS = [desc for desc, _ in EX.properties]


def failed_property(fn):
    result = EX(fn, quiet=True)
    assert not result.passed and result.attempted, result
    return result.failed_property, result.message


@pytest.mark.parametrize("label,prop,says", [
    ("plain numpy, not a numba kernel", 0, "plain Python function"),
    ("returns h, one value per neuron (wrong shape)", 1, "expected shape (3,), got (2,)"),
    ("sorts idx in place (mutates an input)", 2, "changed its input `idx`"),
    ("reads the down row even when h = 0", 4, "the NaN reached the output"),
    ("racy out[k] += under prange", 5, "out[k] += h * B[i, 2, k]"),
])
def test_a_typical_wrong_kernel_fails_the_property_it_breaks(label, prop, says):
    name, message = failed_property(EX.wrong_answers[label])
    assert name == PROPS[prop], (name, message)
    assert says in message, message


def test_njit_without_parallel_is_told_to_add_it():
    serial = numba.njit(EX.reference.py_func)
    name, message = failed_property(serial)
    assert name == PROPS[0] and "parallel=True" in message


def test_none_is_told_to_return_the_output():
    @numba.njit(parallel=True)
    def returns_nothing(B, idx, x):
        return None

    name, message = failed_property(returns_nothing)
    assert name == PROPS[1] and "returns None" in message


def test_the_source_check_finds_shared_writes_and_spares_private_ones():
    src = textwrap.dedent("""
        def kernel(out, partial, idx, h):
            for j in prange(idx.shape[0]):
                i = idx[j]
                row = partial[j]
                row[0] += h[i]                      # bound inside the loop: private
                partial[j, 1] += h[i]               # starts with the loop variable
                partial[j][2] += h[i]
                out[i] += h[i]                      # idx may repeat: shared
                out[0] = h[i]                       # shared
            for k in range(3):
                out[k] += 1.0                       # not in a prange loop
    """)
    ns = {}
    path = _source_file(src)
    exec(compile(src, path, "exec"), ns)
    assert shared_writes_in_prange(ns["kernel"]) == ["line 8: out[i] += h[i]", "line 9: out[0] = h[i]"]
    assert shared_writes_in_prange(EX.reference) == []
    exec(EX.solution_source(), ns)
    assert shared_writes_in_prange(ns["sparse_ffn_parallel"]) == []


def _source_file(src: str) -> str:
    """Register ``src`` in linecache, as IPython does for a cell, so inspect can read it back."""
    import linecache

    path = "<test-kernel>"
    linecache.cache[path] = (len(src), None, src.splitlines(True), path)
    return path


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="a race needs two numba threads")
def test_a_race_through_a_helper_is_caught_by_running_it():
    # the source check cannot see into a helper, so the collision run must: it is timing-bound
    # (on a machine busy elsewhere one run may see no collision), hence three tries
    outcomes = [EX(_racy_through_helper, quiet=True) for _ in range(3)]
    rejected = [r for r in outcomes if not r.passed]
    if not rejected:
        pytest.skip("no update was lost in 3 × 8 runs: the other core was busy (a race needs two free cores)")
    assert {r.failed_property for r in rejected} == {PROPS[5]}
    assert "updates were lost" in rejected[0].message


@numba.njit
def _add_row(out, h, down):
    for k in range(out.shape[0]):
        out[k] += h * down[k]


@numba.njit(parallel=True)
def _racy_through_helper(B, idx, x):
    out = np.zeros(x.shape[0], np.float32)
    for j in numba.prange(idx.shape[0]):
        i = idx[j]
        g = np.float32(0.0)
        u = np.float32(0.0)
        for k in range(x.shape[0]):
            g += B[i, 0, k] * x[k]
            u += B[i, 1, k] * x[k]
        h = max(g, np.float32(0.0)) * u
        if h != 0.0:
            _add_row(out, h, B[i, 2])
    return out


def test_the_reference_and_the_printed_solution_pass_on_the_colliding_input():
    assert EX(EX.reference, quiet=True).passed
    ns: dict = {}
    exec(EX.solution_source(), ns)
    B = np.ones((4, 3, 8), np.float32)
    assert EX(ns["sparse_ffn_parallel"], quiet=True).passed
    np.testing.assert_allclose(ns["sparse_ffn_parallel"](B, np.arange(4, dtype=np.int64), np.ones(8, np.float32)),
                               np.full(8, 4 * 64, np.float32))  # h = 8 · 8 per neuron
