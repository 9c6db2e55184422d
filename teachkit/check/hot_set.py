"""Exercise 1 of notebook 10 (activation sparsity): the hot set, the share of neurons that gives
most of the firings."""

from __future__ import annotations

import numpy as np

from ._core import Exercise, assert_close, matches_reference

__all__ = ["hot_share"]


def _ref_hot_share(freq, share):
    f = np.sort(np.asarray(freq, dtype=np.float64))[::-1]          # hottest first
    k = int(np.searchsorted(np.cumsum(f) / f.sum(), share) + 1)      # first k reaching `share`
    return min(k, len(f)) / len(f)


def _is_a_share(fn):
    f = np.random.default_rng(0).random(20)
    got = float(fn(f, 0.8))
    if not 0 < got <= 1:
        raise AssertionError(f"hot_share(20 random frequencies, 0.8) returned {got:g}: a share of the "
                             "neurons lies in (0, 1] (divide the count by the number of neurons)")


def _hottest_first(fn):
    f = np.array([0.05, 0.6, 0.1, 0.25])
    assert_close(fn(f, 0.8), 0.5, "hot_share([0.05, 0.6, 0.1, 0.25], 0.8): the two hottest (0.6 + 0.25 of "
                 "a total 1.0) reach 80%, so the share is 2/4")


def _uniform(fn):
    assert_close(fn(np.ones(10), 0.75), 0.8, "hot_share(ten equal frequencies, 0.75): 7 neurons give 70%, too "
                 "few, 8 give 80%, so the share is 8/10")


def _inputs(seed):
    rng = np.random.default_rng(seed)
    f = rng.exponential(size=64) * (rng.random(64) < 0.8)           # some neurons never fire
    return f, (0.5, 0.8, 0.9)[seed % 3]


hot_share = Exercise(
    name="hot_share",
    reference=_ref_hot_share,
    properties=[("it returns a share of the neurons, between 0 and 1, not a count", _is_a_share),
                ("it stops at the first neuron that reaches the target, not one before or after", _uniform),
                ("the hottest neurons are counted first", _hottest_first),
                ("it matches the reference on random frequencies (with neurons that never fire)",
                 matches_reference(_ref_hot_share, _inputs))],
    wrong_answers={
        "returns the number of neurons, not the share":
            lambda f, s: float(np.searchsorted(np.cumsum(np.sort(f)[::-1]) / np.sum(f), s) + 1),
        "takes the neurons in their index order, not hottest first":
            lambda f, s: (np.searchsorted(np.cumsum(f) / np.sum(f), s) + 1) / len(f),
        "sorts coldest first":
            lambda f, s: (np.searchsorted(np.cumsum(np.sort(f)) / np.sum(f), s) + 1) / len(f),
        "stops one neuron short (counts the neurons strictly below the target)":
            lambda f, s: np.searchsorted(np.cumsum(np.sort(f)[::-1]) / np.sum(f), s) / len(f),
        "the share of neurons firing on more than `share` of the tokens":
            lambda f, s: float((np.asarray(f) > s).mean()),
    },
    hints=(
        'sort the frequencies from the hottest neuron down and add them up until the running total reaches '
        '`share` of the grand total; answer with how many neurons that took, as a share of all neurons',
        'k = the smallest k with f_(1) + ... + f_(k) >= share · Σ f (f sorted in decreasing order); return k / n',
        'f = np.sort(f)[::-1]; k = np.searchsorted(np.cumsum(f) / f.sum(), share) + 1; return k / len(f)',
    ),
)
