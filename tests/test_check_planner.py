"""check.enough_io_depth (notebook 14): how many reads in flight the planner's cost model can use."""

import pytest

import teachkit.check as check
from teachkit.check import planner

EX = check.enough_io_depth
EXPECTED = {
    "ignores the cluster size (QD = max(io_depth, c))": "a cluster covers the misses",
    "returns QD, not io_depth": "a cluster covers the misses",
    "rounds the misses down": "the hand case",
    "counts the active neurons, not the misses": "the hand case",
}


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_wrong_answer_is_rejected(label):
    result = EX(EX.wrong_answers[label], quiet=True)
    assert not result.passed and result.attempted
    assert EXPECTED[label] in result.failed_property


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_wrong_answer_fails_the_brute_force_search_too(label):
    """The search over io_depth through plan.predict, run alone, rejects every slip as well."""
    [(desc, run)] = [p for p in EX.properties if "brute-force" in p[0]]
    with pytest.raises(AssertionError):
        run(EX.wrong_answers[label])


def test_the_reference_is_the_brute_force_search():
    for seed in range(30):
        x, *rest = planner.random_inputs(seed)
        assert EX.reference(x) == planner.searched_depth(x, *rest), seed


def test_the_search_sees_both_cases():
    """Random inputs cover misses a cluster covers (answer 1) and misses beyond it."""
    answers = [EX.reference(planner.random_inputs(seed)[0]) for seed in range(30)]
    assert 1 in answers and any(a > 16 for a in answers)


def test_returning_qd_is_told_so():
    result = EX(EX.wrong_answers["returns QD, not io_depth"], quiet=True)
    assert "not io_depth" in result.message


def test_a_non_number_is_named():
    result = EX(lambda x: [1], quiet=True)
    assert not result.passed and "an int" in result.message
    assert not EX(lambda x: 50.5, quiet=True).passed
