"""Exercises of notebooks 10 (activation sparsity) and 11 (neuron clusters and kernels)."""

from __future__ import annotations

import warnings

import numba
import numpy as np

from ._core import Exercise, assert_close, matches_reference
from .races import shared_writes_in_prange

__all__ = ["recall_precision", "union_activity",
           "sparse_ffn_parallel", "bandwidth_bound_ms"]


# ------------------------------------------------------------------ notebook 10
def _acts(seed):
    rng = np.random.default_rng(seed)
    return (np.maximum(rng.standard_normal((12, 9)) - 0.8, 0),)


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
def _ref_ffn(bundles, idx, x):
    b = np.asarray(bundles, np.float64)[np.asarray(idx, np.int64)]
    x = np.asarray(x, np.float64)
    h = np.maximum(b[:, 0] @ x, 0) * (b[:, 1] @ x)
    return h @ b[:, 2]


def _ffn_inputs(seed):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((40, 3, 16)).astype(np.float32)
    idx = [rng.permutation(40)[:13], np.array([5, 5, 9, 30, 5]), np.zeros(0)][seed % 3]
    return B, idx.astype(np.int64), rng.standard_normal(16).astype(np.float32)


def _colliding_inputs(n_adds=2_000_000, n_rows=64, d=8):
    """Cell 13's collision: every neuron has h = 1 and down row of ones, so each output is n_adds."""
    B = np.zeros((n_rows, 3, d), np.float32)
    B[:, 0, 0] = B[:, 1, 0] = 1.0
    B[:, 2] = 1.0
    return B, (np.arange(n_adds) % n_rows).astype(np.int64), np.ones(d, np.float32)


def _ffn_is_parallel_numba(fn):
    if not isinstance(fn, numba.core.dispatcher.Dispatcher):
        raise AssertionError(f"{getattr(fn, '__name__', 'your function')} is a plain Python function: "
                             "decorate it with @njit(parallel=True) (from numba import njit, prange)")
    if not fn.targetoptions.get("parallel"):
        raise AssertionError("it is compiled with @njit but without parallel=True, so prange runs on one "
                             "thread: write @njit(parallel=True)")


def _compiled_quietly(fn, *args):
    """Call ``fn``; numba's "no parallel transformation" warning (a stub has no loop) is not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaPerformanceWarning)
        return fn(*args)


def _ffn_hand(fn):
    B = np.array([[[1, 0, 0], [0, 1, 0], [1, 1, 1]], [[-1, 0, 0], [5, 5, 5], [9, 9, 9]],
                  [[1, 1, 1], [1, 1, 1], [2, 0, 0]]], np.float32)
    got = _compiled_quietly(fn, B, np.array([0, 1], np.int64), np.array([2, -3, 0], np.float32))
    if got is None:
        raise AssertionError("it returns None: return a new array of shape (d,), the FFN output")
    assert_close(got, np.array([-6.0, -6.0, -6.0]), "2 neurons, d = 3 (the output has one value per model "
                 "dimension, shape (3,)); neuron 0: relu(2) * (-3) = -6 times down [1,1,1]; neuron 1: relu(-2) = 0")


def _ffn_keeps_inputs(fn):
    B, idx, x = _ffn_inputs(1)
    args = (B.copy(), idx.copy(), x.copy())
    fn(*args)
    for name, before, after in zip(("bundles", "idx", "x"), (B, idx, x), args):
        if not np.array_equal(before, after):
            raise AssertionError(f"it changed its input `{name}`: work on copies or private arrays, "
                                 "never write into an input")


def _ffn_skips_zero_h(fn):
    B = np.ones((3, 3, 4), np.float32)
    B[1, 0] = -1.0                                      # neuron 1: gate · x < 0, so h = 0
    B[1, 2] = np.nan                                    # a down row that must not be read
    got = fn(B, np.arange(3, dtype=np.int64), np.ones(4, np.float32))
    assert_close(got, np.full(4, 32.0), "neuron 1 has h = 0 and NaN in its down row: the NaN reached "
                 "the output, so the kernel read (and multiplied) a down row it does not need")


def _ffn_no_lost_update(fn):
    shared = shared_writes_in_prange(fn)
    if shared:
        raise AssertionError(
            "inside the prange loop, " + "; ".join(shared) + ": another iteration may write the same "
            "element at the same moment, and one of the two updates is lost. Write only to a private "
            "row indexed by the loop variable (partial[c, k]), and add the rows after the loop")
    if numba.config.NUMBA_NUM_THREADS < 2:
        print("   (only one numba thread on this machine: a race through a helper function cannot show here)")
    old = numba.get_num_threads()
    numba.set_num_threads(min(4, numba.config.NUMBA_NUM_THREADS))
    try:
        B, idx, x = _colliding_inputs()
        for run in range(8):                            # a race may miss a run, rarely eight
            got = np.asarray(fn(B, idx, x))
            if not np.array_equal(got, np.full(B.shape[2], float(len(idx)))):
                raise AssertionError(
                    f"run {run}: expected {len(idx):,} in every entry, got {got[0]:,.0f} in the first: "
                    f"updates were lost on {numba.get_num_threads()} threads. Two prange iterations "
                    "added into the same output entry; give each its own partial row")
    finally:
        numba.set_num_threads(old)


@numba.njit
def _h(B, i, x):
    g = np.float32(0.0)
    u = np.float32(0.0)
    for k in range(x.shape[0]):
        g += B[i, 0, k] * x[k]
        u += B[i, 1, k] * x[k]
    return max(g, np.float32(0.0)) * u


@numba.njit(parallel=True)
def _wrong_racy(B, idx, x):
    out = np.zeros(x.shape[0], np.float32)
    for j in numba.prange(idx.shape[0]):
        i = idx[j]
        h = _h(B, i, x)
        if h != 0.0:
            for k in range(out.shape[0]):
                out[k] += h * B[i, 2, k]                # every iteration writes the same out[k]
    return out


@numba.njit(parallel=True)
def _wrong_h_per_neuron(B, idx, x):
    h = np.zeros(idx.shape[0], np.float32)
    for j in numba.prange(idx.shape[0]):
        h[j] = _h(B, idx[j], x)
    return h                                            # the activations, not the output (shape (k,))


@numba.njit
def _add_chunk(B, idx, x, row, lo, hi, skip_zero):
    for j in range(lo, hi):
        h = _h(B, idx[j], x)
        if h != 0.0 or not skip_zero:
            for k in range(row.shape[0]):
                row[k] += h * B[idx[j], 2, k]


@numba.njit(parallel=True)
def _chunked(B, idx, x, skip_zero):
    nchunks = numba.get_num_threads()
    partial = np.zeros((nchunks, x.shape[0]), np.float32)
    per = (idx.shape[0] + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        _add_chunk(B, idx, x, partial[c], c * per, min(idx.shape[0], (c + 1) * per), skip_zero)
    return partial.sum(axis=0)


@numba.njit(parallel=True)
def _ref_parallel(B, idx, x):
    """The reference kernel (check.solution prints the same, written out in one function)."""
    return _chunked(B, idx, x, True)


@numba.njit(parallel=True)
def _wrong_reads_every_down_row(B, idx, x):
    return _chunked(B, idx, x, False)                  # multiplies the down row by h = 0 too


@numba.njit(parallel=True)
def _wrong_sorts_idx(B, idx, x):
    idx.sort()                                          # sorts the caller's array in place
    return _chunked(B, idx, x, True)


def _wrong_plain_numpy(B, idx, x):
    return _ref_ffn(B, idx, x).astype(np.float32)


sparse_ffn_parallel = Exercise(
    name="sparse_ffn_parallel",
    reference=_ref_parallel,
    properties=[("it is a numba kernel compiled with @njit(parallel=True)", _ffn_is_parallel_numba),
                ("it returns the gated FFN output, shape (d,): a negative up value passes, "
                 "a negative gate gives h = 0", _ffn_hand),
                ("it leaves bundles, idx and x unchanged", _ffn_keeps_inputs),
                ("it matches the dense reference on random bundles (idx unsorted, repeated, empty)",
                 matches_reference(_ref_ffn, _ffn_inputs, rtol=1e-4, atol=1e-4)),
                ("it does not read the down row of a neuron with h = 0", _ffn_skips_zero_h),
                ("no two prange iterations write the same element: no shared array written in the loop "
                 "body, and no update lost when 2,000,000 neurons add into the same 8 outputs on 2+ threads, "
                 "8 runs (the collision of section 3)", _ffn_no_lost_update)],
    wrong_answers={"plain numpy, not a numba kernel": _wrong_plain_numpy,
                   "returns h, one value per neuron (wrong shape)": _wrong_h_per_neuron,
                   "sorts idx in place (mutates an input)": _wrong_sorts_idx,
                   "reads the down row even when h = 0": _wrong_reads_every_down_row,
                   "racy out[k] += under prange": _wrong_racy},
    hints=(
        'two prange iterations that add into the same out[k] can lose an update (section 3); give each '
        'chunk of neurons its own private partial row, add the rows after the parallel loop, and skip '
        'the down row when h = 0',
        'nchunks = numba.get_num_threads(); chunk c takes idx[c·per : (c+1)·per]; for each neuron '
        'h = relu(gate_i · x) · (up_i · x) and, if h ≠ 0, partial[c] += h · down_i; return Σ_c partial[c]',
        '@njit(parallel=True)\ndef sparse_ffn_parallel(B, idx, x):\n    partial = np.zeros((nchunks, d), '
        'np.float32)\n    for c in prange(nchunks):\n        for j in range(c * per, min(n, (c + 1) * per)):\n'
        '            ... h ...; if h != 0: partial[c] += h * B[idx[j], 2]\n    return partial.sum(axis=0)',
    ),
)


def _ref_bound(k, n_pos, d, bytes_per_weight, scale_bytes, bandwidth_GBps):
    return (2 * k + n_pos) * (d * bytes_per_weight + scale_bytes) / (bandwidth_GBps * 1e9) * 1e3


_HAND = 1000, 4096, 20.0       # 1000 listed neurons, d = 4096, 20 GB/s


def _bound_close(got, want, what, slips=None):
    """assert_close, with a word on the usual slips when the answer is off by a telling factor."""
    try:
        got = float(got)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}: expected one number (ms), got {type(got).__name__}") from None
    if np.isclose(got, want, rtol=1e-6, atol=0):
        return
    slips = {1e-3: "1000x too small: that is seconds; return milliseconds",
             1e3: "1000x too large: that is microseconds, or GB taken as 1e6 bytes; return milliseconds",
             8.0: "8x too large: bytes_per_weight is already in bytes, not bits",
             1.5: "1.5x too large: a neuron with h = 0 has its gate and up rows read, not its down row",
             0.5: "half of it: the gate and up rows of every listed neuron are read, h = 0 or not",
             1e9 / 2**30: "GB/s means 1e9 bytes per second here, not 2**30", **(slips or {})}
    why = next((say for f, say in slips.items() if want and np.isclose(got / want, f, rtol=1e-5)), "")
    raise AssertionError(f"{what}: expected {want:.6g} ms, got {got:.6g} ms" + (f" ({why})" if why else ""))


def _bound_all_fire(fn):
    k, d, bw = _HAND
    _bound_close(fn(k, k, d, 4, 0, bw), _ref_bound(k, k, d, 4, 0, bw),
                 f"{k} listed fp32 neurons (no scales), all firing (n_pos = k), d = {d}, at {bw:g} GB/s: "
                 "three rows each")


def _bound_none_fire(fn):
    k, d, bw = _HAND
    _bound_close(fn(k, 0, d, 4, 0, bw), _ref_bound(k, 0, d, 4, 0, bw),
                 f"{k} listed fp32 neurons, none firing (n_pos = 0): the gate and up rows only")
    _bound_close(fn(k, k // 4, d, 4, 0, bw), _ref_bound(k, k // 4, d, 4, 0, bw),
                 f"{k} listed fp32 neurons, {k // 4} firing: 2·{k} + {k // 4} rows")


def _bound_int8_rows(fn):
    k, d, bw = _HAND
    want = _ref_bound(k, k // 2, d, 1, 4, bw)
    rows = 2 * k + k // 2
    _bound_close(fn(k, k // 2, d, 1, 4, bw), want,
                 f"the same neurons, {k // 2} firing, in int8 with one float32 scale per row "
                 f"(bytes_per_weight = 1, scale_bytes = 4): {rows} rows of {d} + 4 bytes",
                 {rows * d / (bw * 1e9) * 1e3 / want: "each row read also brings its scale_bytes of scale",
                  rows * d * 5 / (bw * 1e9) * 1e3 / want: "the scale is one per row, not one per weight",
                  (4 * d + 4) / (d + 4): "bytes_per_weight is 1 here: read it from the argument, not 4"})


def _bound_inputs(s):
    k = 50 * (s + 1)
    fmt = [(4, 0), (1, 4), (2, 2)][s % 3]                                          # fp32, int8 + fp32 scale, fp16 + fp16 scale
    return k, (k * (s % 3)) // 2, 256 * (s + 1), *fmt, 7.5 + 3 * s           # n_pos 0, k/2, k


def _rate(rows, d, b, s, bw):
    return rows * (d * b + s) / (bw * 1e9) * 1e3


bandwidth_bound_ms = Exercise(
    name="bandwidth_bound_ms",
    reference=_ref_bound,
    properties=[("when every listed neuron fires (n_pos = k) all three rows of each are read: 1000 fp32 "
                 "neurons of d = 4096 at 20 GB/s need 2.4576 ms", _bound_all_fire),
                ("a listed neuron with h = 0 costs its gate and up rows, not its down row: n_pos = 0 gives "
                 "1.6384 ms, n_pos = 250 gives 1.8432 ms", _bound_none_fire),
                ("an int8 row is d bytes plus its float32 scale: 1000 neurons, 500 firing, d = 4096 take "
                 "0.5125 ms, a little more than a quarter of fp32's 2.048 ms", _bound_int8_rows),
                ("it matches the reference for other sizes, formats, activities and bandwidths",
                 matches_reference(_ref_bound, _bound_inputs))],
    wrong_answers={
        "ignores n_pos: all three rows of every listed neuron": lambda k, p, d, b, s, bw: _rate(3 * k, d, b, s, bw),
        "only the firing neurons, three rows each": lambda k, p, d, b, s, bw: _rate(3 * p, d, b, s, bw),
        "the down row of every neuron, gate and up only where h > 0":
            lambda k, p, d, b, s, bw: _rate(k + 2 * p, d, b, s, bw),
        "returns seconds, not milliseconds": lambda k, p, d, b, s, bw: _rate(2 * k + p, d, b, s, bw) / 1e3,
        "counts bits as bytes": lambda k, p, d, b, s, bw: _rate(2 * k + p, d, b, s, bw) * 8,
        "hard-codes fp32 (4 bytes per weight)": lambda k, p, d, b, s, bw: _rate(2 * k + p, d, 4, s, bw),
        "GB/s taken as 2**30 bytes per second": lambda k, p, d, b, s, bw: _rate(2 * k + p, d, b, s, bw) * 1e9 / 2**30,
        "forgets the scales": lambda k, p, d, b, s, bw: _rate(2 * k + p, d, b, 0, bw),
        "a scale per weight, not per row": lambda k, p, d, b, s, bw: _rate(2 * k + p, d, b + s, 0, bw),
    },
    hints=(
        'the time can be no less than the bytes the fused kernel must read divided by the bandwidth; '
        'it reads the gate and up rows of every listed neuron (it needs them to compute h), the down '
        'row only when h ≠ 0, and each row it reads comes with that row\'s scale',
        'bytes = (2·k + n_pos) · (d · bytes_per_weight + scale_bytes); ms = bytes / (bandwidth_GBps · 1e9) · 1e3 '
        '(1 GB = 1e9 bytes)',
        'rows = 2 * k + n_pos\nreturn rows * (d * bytes_per_weight + scale_bytes) / (bandwidth_GBps * 1e9) * 1e3',
    ),
)
