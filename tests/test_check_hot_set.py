"""check.hot_share (notebook 10, exercise 1) names the property each typical wrong answer breaks."""

import numpy as np
import pytest

import teachkit.check as check
from teachkit.sparse.model import stats

EX = check.hot_share
EXPECTED = {
    "returns the number of neurons, not the share": "not a count",
    "takes the neurons in their index order, not hottest first": "hottest neurons are counted first",
    "sorts coldest first": "hottest neurons are counted first",
    "stops one neuron short (counts the neurons strictly below the target)": "stops at the first neuron",
    "the share of neurons firing on more than `share` of the tokens": "stops at the first neuron",
}


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_wrong_answer_fails_the_property_that_describes_its_bug(label):
    result = EX(EX.wrong_answers[label], quiet=True)
    assert not result.passed and result.attempted
    assert EXPECTED[label] in result.failed_property


def test_the_reference_is_the_library_statistic_the_notebook_uses():
    rng = np.random.default_rng(0)
    for _ in range(100):
        f = rng.exponential(size=40) * (rng.random(40) < 0.7)
        share = float(rng.choice([0.5, 0.8, 0.9]))
        assert EX.reference(f, share) == stats.hot_share(f, share)


def test_a_failure_names_the_property_and_points_at_the_next_hint(capsys):
    EX(EX.wrong_answers["sorts coldest first"])
    out = capsys.readouterr().out
    assert "failed: the hottest neurons are counted first" in out
    assert "check.hint('hot_share', 2)" in out
