"""Predictor training is sound: loss falls, it learns a planted rule, thresholds trade off."""

import numpy as np
import pytest

from teachkit.sparse.model.predictor import Predictor, recall_precision, threshold_sweep, train_predictor
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack


def _planted(n=3000, d=24, d_ff=40, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, d_ff))
    b = rng.normal(-1.0, 0.5, d_ff)
    X = rng.standard_normal((n, d)).astype(np.float32) * 2 + 1     # not standardised
    return X, (X @ W + b) > 0


def test_recall_precision_hand_computed():
    true = np.array([1, 1, 0, 0, 1], bool)
    pred = np.array([1, 0, 1, 0, 1], bool)
    assert recall_precision(pred, true) == pytest.approx((2 / 3, 2 / 3))
    assert recall_precision(np.ones(5, bool), true) == pytest.approx((1.0, 3 / 5))
    with pytest.raises(ValueError, match="same shape"):
        recall_precision(pred[:3], true)


@pytest.mark.parametrize("kind", ["lowrank", "mlp"])
def test_predictor_learns_a_planted_linear_rule(kind):
    X, M = _planted()
    p = train_predictor(X[:2500], M[:2500], kind=kind, rank=24, epochs=25, lr=1e-2, seed=1)
    assert p.history[-1] < 0.5 * p.history[0]                    # training loss falls
    r, prec = recall_precision(p.predict_mask(X[2500:]), M[2500:])
    assert r > 0.9 and prec > 0.9                                # generalises to held-out rows
    base_r, base_p = recall_precision(np.zeros_like(M[2500:]), M[2500:])
    assert base_r == 0.0


def test_threshold_trades_recall_for_precision():
    X, M = _planted(seed=2)
    p = train_predictor(X, M, kind="lowrank", rank=4, epochs=5, seed=0)   # deliberately weak
    rows = threshold_sweep(p, X, M, thresholds=(0.05, 0.3, 0.7))
    recalls, fracs = [r[1] for r in rows], [r[3] for r in rows]
    assert recalls[0] >= recalls[1] >= recalls[2] and recalls[0] > recalls[2]
    assert fracs[0] > fracs[2]


def test_predictor_is_deterministic_and_numpy_matches_predict():
    X, M = _planted(n=500)
    a = train_predictor(X, M, kind="mlp", rank=8, epochs=2, seed=5)
    b = train_predictor(X, M, kind="mlp", rank=8, epochs=2, seed=5)
    np.testing.assert_array_equal(a.W2, b.W2)
    idx = a.predict(X[0], threshold=0.3)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, np.flatnonzero(a.predict_mask(X[:1], 0.3)[0]))
    q = Predictor.from_payload(a.to_payload())
    np.testing.assert_array_equal(q.logits(X[:3]), a.logits(X[:3]))


def test_predictor_on_synthetic_layer_reaches_high_recall():
    stack = SyntheticStack(SyntheticConfig(d=256, d_ff=512, n_layers=1, rank=16, seed=0))
    X = stack.hidden_states(0, 3000)
    M = stack.preactivations(0, X) > 0
    p = train_predictor(X[:2500], M[:2500], kind="lowrank", rank=32, epochs=15, lr=1e-2)
    r, prec = recall_precision(p.predict_mask(X[2500:], 0.2), M[2500:])
    assert r > 0.85 and prec > 0.5


def test_bad_input_is_rejected():
    X, M = _planted(n=50)
    with pytest.raises(ValueError, match="same N"):
        train_predictor(X[:10], M[:9])
    with pytest.raises(ValueError, match="kind"):
        train_predictor(X, M, kind="forest")
    p = train_predictor(X, M, rank=2, epochs=1)
    with pytest.raises(ValueError, match="last dimension 24"):
        p.logits(np.ones((2, 5)))
    with pytest.raises(ValueError, match="threshold"):
        p.predict(X[0], threshold=1.5)
    with pytest.raises(ValueError, match="one input vector"):
        p.predict(X[:2])
