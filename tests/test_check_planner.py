"""check.layer_time (notebook 14): the planner's pipelined t_layer, checked against plan.predict."""

import pytest

import teachkit.check as check
from teachkit.check import planner

EX = check.layer_time
EXPECTED = {
    "adds the lanes instead of taking the longer": "the hand case",
    "forgets t_submit": "the hand case",
    "forgets the tail (the landed clusters' compute)": "the hand case",
    "QD = io_depth, ignoring the cluster size": "the hand case",
}


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_wrong_answer_is_rejected(label):
    result = EX(EX.wrong_answers[label], quiet=True)
    assert not result.passed and result.attempted
    assert EXPECTED[label] in result.failed_property


@pytest.mark.parametrize("label,prop", [
    ("adds the lanes instead of taking the longer", "max(compute lane, I/O lane)"),
    ("forgets t_submit", "plan.predict"),
    ("forgets the tail (the landed clusters' compute)", "plan.predict"),
    ("QD = io_depth, ignoring the cluster size", "QD = max(io_depth, c)"),
])
def test_each_wrong_answer_breaks_its_own_property(label, prop):
    """Run alone, the property that names the bug rejects it too."""
    [(desc, run)] = [p for p in EX.properties if prop in p[0]]
    with pytest.raises(AssertionError):
        run(EX.wrong_answers[label])


def test_the_reference_is_plan_predict():
    for seed in range(20):
        x, *rest = planner.random_inputs(seed)
        assert abs(EX.reference(x) - planner.predict_t_layer(x, *rest)) <= 1e-9 * EX.reference(x)


def test_the_sum_answer_is_told_to_take_the_max():
    result = EX(EX.wrong_answers["adds the lanes instead of taking the longer"], quiet=True)
    assert "the hand case" in result.failed_property
    probe = check.Exercise(name="layer_time_probe", reference=EX.reference, properties=EX.properties[1:2],
                                 wrong_answers={}, hints=EX.hints)
    assert "LONGER" in probe(EX.wrong_answers["adds the lanes instead of taking the longer"], quiet=True).message


def test_a_non_number_is_named():
    result = EX(lambda x: [1.0], quiet=True)
    assert not result.passed and "a float" in result.message
