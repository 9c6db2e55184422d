"""check.sparse_ffn_parallel (notebook 11): each typical wrong kernel is rejected by the property it breaks."""

import numba
import numpy as np
import pytest

import teachkit.check as check

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


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="a race needs two numba threads")
def test_the_racy_kernel_loses_updates_and_is_rejected_by_the_race_property():
    # a race is a matter of timing: on a loaded machine one check may see no collision, so try three
    outcomes = [EX(EX.wrong_answers["racy out[k] += under prange"], quiet=True) for _ in range(3)]
    rejected = [r for r in outcomes if not r.passed]
    assert rejected, "the racy kernel passed three checks in a row"
    assert {r.failed_property for r in rejected} == {PROPS[5]}
    assert "updates were lost" in rejected[0].message


def test_the_reference_and_the_printed_solution_pass_on_the_colliding_input():
    assert EX(EX.reference, quiet=True).passed
    ns: dict = {}
    exec(EX.solution_source(), ns)
    B = np.ones((4, 3, 8), np.float32)
    assert EX(ns["sparse_ffn_parallel"], quiet=True).passed
    np.testing.assert_allclose(ns["sparse_ffn_parallel"](B, np.arange(4, dtype=np.int64), np.ones(8, np.float32)),
                               np.full(8, 4 * 64, np.float32))  # h = 8 · 8 per neuron
