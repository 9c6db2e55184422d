"""Exercises of notebooks 10 (activation sparsity) and 11 (neuron clusters and kernels)."""

from __future__ import annotations

import numpy as np

from ._core import Exercise, assert_close, matches_reference

__all__ = ["firing_frequency", "recall_precision", "union_activity",
           "gather_dot", "down_axpy", "sparse_ffn", "bandwidth_bound_ms"]


# ------------------------------------------------------------------ notebook 10
def _acts(seed):
    rng = np.random.default_rng(seed)
    return (np.maximum(rng.standard_normal((12, 9)) - 0.8, 0),)


def _ref_freq(H):
    return (np.asarray(H) > 0).mean(axis=0)


def _freq_hand(fn):
    H = np.array([[0.0, 2.0, -1.0], [1.0, 3.0, 0.0]])
    assert_close(fn(H), np.array([0.5, 1.0, 0.0]),
                 "firing_frequency([[0,2,-1],[1,3,0]]) (a negative value is not a firing)")


firing_frequency = Exercise(
    name="firing_frequency",
    reference=_ref_freq,
    properties=[("for [[0,2,-1],[1,3,0]] the frequencies are [0.5, 1, 0]", _freq_hand),
                ("it matches the reference on random activations",
                 matches_reference(_ref_freq, _acts))],
    wrong_answers={"averages the values, not the firings": lambda H: np.asarray(H).mean(0),
                   "averages over neurons (per-token activity)":
                       lambda H: (np.asarray(H) > 0).mean(1),
                   "counts nonzero values, negatives included": lambda H: (np.asarray(H) != 0).mean(0)},
    hints=(
        'a neuron fires on a token when its activation is strictly positive; count that per neuron over tokens',
        'freq_n = (1/T) Σ_t [H[t, n] > 0]',
        '(np.asarray(H) > 0).mean(axis=0)',
    ),
)


def _ref_rp(pred, true):
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    tp = (pred & true).sum()
    return float(tp / true.sum()), float(tp / pred.sum())


def _rp_hand(fn):
    true = np.array([1, 1, 1, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 1, 1, 1], bool)
    assert_close(fn(pred, true), (2 / 3, 2 / 5), "recall, precision for 2 hits, 1 miss, 3 extra")


def _rp_inputs(seed):
    rng = np.random.default_rng(seed)
    true = rng.random((20, 30)) < 0.2
    pred = true ^ (rng.random((20, 30)) < 0.1)
    return pred, true


recall_precision = Exercise(
    name="recall_precision",
    reference=_ref_rp,
    properties=[("2 hits, 1 missed, 3 false alarms gives recall 2/3 and precision 2/5", _rp_hand),
                ("it matches the reference on random masks", matches_reference(_ref_rp, _rp_inputs))],
    wrong_answers={"recall and precision swapped": lambda p, t: _ref_rp(p, t)[::-1],
                   "accuracy for both": lambda p, t: (float((np.asarray(p) == np.asarray(t)).mean()),) * 2},
    hints=(
        'recall asks how many of the truly active neurons were predicted; precision how many predicted ones were truly active',
        'recall = |pred ∧ true| / |true|, precision = |pred ∧ true| / |pred|',
        'hits = (pred & true).sum(); return hits / true.sum(), hits / pred.sum()',
    ),
)


def _ref_union(H, window):
    A = np.asarray(H) > 0
    n = (len(A) // window) * window
    return float(A[:n].reshape(-1, window, A.shape[1]).any(axis=1).mean())


def _union_hand(fn):
    H = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]], float)
    assert_close(fn(H, 2), 0.375, "two windows of 2 tokens: 2/4 and 1/4 neurons active")
    assert_close(fn(H, 1), 0.25, "window 1 is the per-token activity")
    H5 = np.vstack([H, [[1, 1, 1, 1]]])
    assert_close(fn(H5, 2), 0.375, "5 tokens, window 2: the partial last block is dropped")


def _wrong_union_partial(H, window):
    A = np.asarray(H) > 0
    return float(np.mean([A[s:s + window].any(0).mean() for s in range(0, len(A), window)]))


union_activity = Exercise(
    name="union_activity",
    reference=_ref_union,
    properties=[("on hand-made examples the union over 2 tokens is 0.375, a partial block dropped", _union_hand),
                ("it matches the reference on random activations",
                 matches_reference(_ref_union, lambda s: (_acts(s)[0], 3)))],
    wrong_answers={"mean per-token activity (no union)":
                       lambda H, w: float((np.asarray(H) > 0).mean()),
                   "union over all tokens at once":
                       lambda H, w: float((np.asarray(H) > 0).any(0).mean()),
                   "keeps the partial last block": _wrong_union_partial},
    hints=(
        'a neuron is needed for a block of tokens if it fires on any of them; cut the tokens into whole blocks of `window`',
        'mean over blocks and neurons of any_{t in block}[H[t, n] > 0], the partial last block dropped',
        'n = len(A) // window * window; A[:n].reshape(-1, window, N).any(axis=1).mean()',
    ),
)


# ------------------------------------------------------------------ notebook 11
def _ref_gather(W, idx, x):
    return W[idx] @ x


def _gather_inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((30, 8)), rng.choice(30, 6, replace=False), rng.standard_normal(8)


def _gather_hand(fn):
    W = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    assert_close(fn(W, np.array([2, 0]), np.array([1.0, 3.0])), np.array([8.0, 1.0]),
                 "rows [2, 0] of [[1,0],[0,1],[2,2]] times [1, 3]")


gather_dot = Exercise(
    name="gather_dot",
    reference=_ref_gather,
    properties=[("rows [2, 0] give [8, 1] in the hand example", _gather_hand),
                ("it matches W[idx] @ x on random inputs", matches_reference(_ref_gather, _gather_inputs))],
    wrong_answers={"first len(idx) rows": lambda W, idx, x: W[: len(idx)] @ x,
                   "indices sorted, order of idx lost": lambda W, idx, x: W[np.sort(idx)] @ x},
    hints=(
        'only the selected rows of W are multiplied, and the outputs come in the order of idx',
        'out[j] = W[idx[j]] · x',
        'W[idx] @ x, or a loop over j',
    ),
)


def _ref_axpy(WdT, idx, h, out):
    out = out.copy()
    for j, i in enumerate(idx):
        out += h[j] * WdT[i]
    return out


def _axpy_inputs(seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((25, 6)), np.array([3, 7, 7, 20]), rng.standard_normal(4),
            rng.standard_normal(6))


def _axpy_returns_array(fn):
    out = np.ones(3)
    got = fn(np.eye(3), np.array([0, 2]), np.array([2.0, -1.0]), out)
    if got is None:
        raise AssertionError("down_axpy returns None: return the output array (out plus the scaled rows)")
    if np.shape(got) != (3,):
        raise AssertionError(f"expected an array of shape (3,) (one value per model dimension), got shape {np.shape(got)}")


def _axpy_accumulates(fn):
    WdT = np.eye(3)
    got = fn(WdT, np.array([0, 2]), np.array([2.0, -1.0]), np.ones(3))
    assert_close(got, np.array([3.0, 1.0, 0.0]), "out starts at [1,1,1] and must be added to")


def _wrong_in_place_no_return(WdT, idx, h, out):
    for j, i in enumerate(idx):
        out += h[j] * WdT[i]


def _wrong_race(WdT, idx, h, out):
    out = out.copy()
    if len(idx):
        out += h[-1] * WdT[idx[-1]]          # as if every earlier thread's write were lost
    return out


down_axpy = Exercise(
    name="down_axpy",
    reference=_ref_axpy,
    properties=[("it returns the output array", _axpy_returns_array),
                ("it adds to `out` rather than overwriting it", _axpy_accumulates),
                ("it matches the reference, repeated indices included",
                 matches_reference(_ref_axpy, _axpy_inputs))],
    wrong_answers={"overwrites out": lambda WdT, idx, h, out: h @ WdT[idx],
                   "adds in place and returns None": _wrong_in_place_no_return,
                   "lost updates (a race)": _wrong_race},
    hints=(
        'each active neuron adds its down row, scaled by its activation, to what `out` already holds; return the result',
        'out + Σ_j h[j] · WdT[idx[j]] (a repeated index adds twice)',
        'out = out.copy(); for j, i in enumerate(idx): out += h[j] * WdT[i]; return out',
    ),
)


def _ref_ffn(bundles, idx, x):
    b = bundles[idx]
    h = np.maximum(b[:, 0] @ x, 0) * (b[:, 1] @ x)
    return h @ b[:, 2]


def _ffn_inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((40, 3, 5)), np.arange(0, 40, 3), rng.standard_normal(5)


def _wrong_relu_product(B, idx, x):
    b = B[idx]
    return np.maximum((b[:, 0] @ x) * (b[:, 1] @ x), 0) @ b[:, 2]


def _wrong_no_relu(B, idx, x):
    b = B[idx]
    return ((b[:, 0] @ x) * (b[:, 1] @ x)) @ b[:, 2]


def _ffn_hand(fn):
    B = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[-1.0, 0.0], [5.0, 5.0], [9.0, 9.0]]])
    assert_close(fn(B, np.array([0, 1]), np.array([2.0, -3.0])), np.array([-6.0, -6.0]),
                 "neuron 0: relu(2) * (-3) = -6 times down [1,1]; neuron 1 has relu(-2) = 0")


sparse_ffn = Exercise(
    name="sparse_ffn",
    reference=_ref_ffn,
    properties=[("a negative up value passes through (only the gate has the ReLU)", _ffn_hand),
                ("it matches the reference on random bundles", matches_reference(_ref_ffn, _ffn_inputs))],
    wrong_answers={"ReLU on the product": _wrong_relu_product, "no ReLU at all": _wrong_no_relu},
    hints=(
        'only the gate has a ReLU; the up projection passes negative values through',
        'h_i = relu(gate_i · x) · (up_i · x), output Σ_{i in idx} h_i · down_i',
        'b = bundles[idx]; h = np.maximum(b[:, 0] @ x, 0) * (b[:, 1] @ x); h @ b[:, 2]',
    ),
)


def _ref_bound(n_active, d, n_mats, bytes_per_weight, bandwidth_GBps):
    return n_active * n_mats * d * bytes_per_weight / (bandwidth_GBps * 1e9) * 1e3


def _bound_inputs(s):
    return 100 * (s + 1), 512 * (s + 1), 2 + s % 2, 4 - 3 * (s % 2), 10.0 + s


def _bound_hand(fn):
    assert_close(fn(1000, 4096, 3, 4, 20.0), 2.4576, "1000 fp32 bundles of 3x4096 at 20 GB/s (ms)")
    assert_close(fn(1000, 4096, 3, 1, 20.0), 0.6144, "the same in int8")


bandwidth_bound_ms = Exercise(
    name="bandwidth_bound_ms",
    reference=_ref_bound,
    properties=[("1000 fp32 bundles (3 x 4096) at 20 GB/s need at least 2.4576 ms", _bound_hand),
                ("it matches the reference for other sizes",
                 matches_reference(_ref_bound, _bound_inputs))],
    wrong_answers={"forgets the number of matrices": lambda n, d, m, b, bw: n * d * b / (bw * 1e9) * 1e3,
                   "counts bits as bytes": lambda n, d, m, b, bw: n * m * d * b * 8 / (bw * 1e9) * 1e3},
    hints=(
        'the time can be no less than the bytes that must be read divided by the bandwidth',
        'bytes = n_active · n_mats · d · bytes_per_weight; ms = bytes / (GB/s · 1e9) · 1e3',
        'n_active * n_mats * d * bytes_per_weight / (bandwidth_GBps * 1e9) * 1e3',
    ),
)
