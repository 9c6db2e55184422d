"""The numba kernels agree with their numpy references, and reject bad input clearly."""

import numpy as np
import pytest

from teachkit.sparse.compute import kernels as K
from teachkit.sparse.compute import reference as R
from teachkit.sparse.compute.bundles import dequantize_int8, make_bundles, quantize_int8, split_bundles


def _bundles(n=64, d=32, gated=True, seed=0):
    rng = np.random.default_rng(seed)
    mats = (rng.standard_normal((n, 3 if gated else 2, d)) / np.sqrt(d)).astype(np.float32)
    return np.ascontiguousarray(mats)


def _x(d=32, seed=1):
    return np.random.default_rng(seed).standard_normal(d).astype(np.float32)


@pytest.mark.parametrize("parallel", [True, False])
def test_gather_dot_hand_computed(parallel):
    W = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    x = np.array([1, -1], dtype=np.float32)
    out = np.zeros(2, np.float32)
    K.gather_dot(W, np.array([2, 0], np.int64), x, out, parallel=parallel)
    np.testing.assert_array_equal(out, [-1.0, -1.0])


@pytest.mark.parametrize("parallel", [True, False])
def test_down_axpy_hand_computed_accumulates(parallel):
    WdT = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3]], dtype=np.float32)
    out = np.ones(3, np.float32)
    K.down_axpy(WdT, np.array([0, 2], np.int64), np.array([2, -1], np.float32), out,
                parallel=parallel)
    np.testing.assert_array_equal(out, [3.0, 1.0, -2.0])


@pytest.mark.parametrize("parallel", [True, False])
def test_gather_dot_and_axpy_match_reference(parallel):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((500, 96)).astype(np.float32)
    idx = np.sort(rng.choice(500, 77, replace=False)).astype(np.int64)
    x = rng.standard_normal(96).astype(np.float32)
    out = np.empty(77, np.float32)
    K.gather_dot(W, idx, x, out, parallel=parallel)
    np.testing.assert_allclose(out, R.gather_dot_ref(W, idx, x), rtol=1e-4, atol=1e-4)
    h = rng.standard_normal(77).astype(np.float32)
    acc = rng.standard_normal(96).astype(np.float32)
    want = R.down_axpy_ref(W, idx, h, acc)
    K.down_axpy(W, idx, h, acc, parallel=parallel)
    np.testing.assert_allclose(acc, want, rtol=1e-4, atol=1e-4)


def test_bundled_hand_computed_gated_and_plain():
    # d = 2, neuron 0: gate=(1,0) up=(0,1) down=(1,1); neuron 1: gate=(-1,0) -> relu 0
    B = np.array([[[1, 0], [0, 1], [1, 1]], [[-1, 0], [1, 1], [5, 5]]], dtype=np.float32)
    x = np.array([2, 3], dtype=np.float32)
    out = np.zeros(2, np.float32)
    K.sparse_ffn_bundled(B, np.array([0, 1], np.int64), x, out, gated=True)
    np.testing.assert_allclose(out, [6.0, 6.0])           # h0 = relu(2) * 3 = 6, h1 = 0
    plain = np.ascontiguousarray(B[:, 1:])                  # [up | down]
    out = np.zeros(2, np.float32)
    K.sparse_ffn_bundled(plain, np.array([0, 1], np.int64), x, out, gated=False)
    np.testing.assert_allclose(out, [3 + 25, 3 + 25])       # relu(3)*(1,1) + relu(5)*(5,5)


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("parallel", [True, False])
def test_bundled_matches_reference_on_any_index_list(gated, parallel):
    B, x = _bundles(gated=gated), _x()
    idx = np.array([5, 3, 60, 3, 0], np.int64)               # unsorted, with a repeat
    out = np.full(32, 0.5, np.float32)
    want = R.sparse_ffn_bundled_ref(B, idx, x, out, gated)
    K.sparse_ffn_bundled(B, idx, x, out, gated, parallel=parallel)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gated", [True, False])
def test_oracle_sparse_ffn_equals_dense(gated):
    B, x = _bundles(n=400, d=48, gated=gated, seed=7), _x(48, seed=8)
    idx = R.active_set(B, x, gated)
    assert 0 < len(idx) < 400                               # really sparse, really active
    out = np.zeros(48, np.float32)
    K.sparse_ffn_bundled(B, idx, x, out, gated)
    np.testing.assert_allclose(out, R.dense_ffn_ref(B, x, gated), rtol=1e-4, atol=1e-5)


def test_missing_an_active_neuron_changes_the_output():
    B, x = _bundles(n=400, d=48, seed=7), _x(48, seed=8)
    idx = R.active_set(B, x, True)
    out = np.zeros(48, np.float32)
    K.sparse_ffn_bundled(B, idx[1:], x, out, True)
    assert not np.allclose(out, R.dense_ffn_ref(B, x, True), rtol=1e-4, atol=1e-5)


def test_accumulates_over_clusters_like_one_call():
    B, x = _bundles(n=300), _x()
    idx = np.arange(300, dtype=np.int64)
    whole = K.sparse_ffn_bundled(B, idx, x, np.zeros(32, np.float32), True)
    parts = np.zeros(32, np.float32)
    for chunk in np.array_split(idx, 7):
        K.sparse_ffn_bundled(B, np.ascontiguousarray(chunk), x, parts, True)
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-5)


def test_empty_index_leaves_out_untouched():
    B, x = _bundles(), _x()
    out = np.arange(32, dtype=np.float32)
    K.sparse_ffn_bundled(B, np.zeros(0, np.int64), x, out, True)
    np.testing.assert_array_equal(out, np.arange(32, dtype=np.float32))


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("parallel", [True, False])
def test_int8_matches_dequantised_reference(gated, parallel):
    B, x = _bundles(n=200, d=64, gated=gated, seed=4), _x(64, seed=5)
    q, s = quantize_int8(B)
    idx = np.arange(0, 200, 3, dtype=np.int64)
    out = np.zeros(64, np.float32)
    want = R.sparse_ffn_bundled_int8_ref(q, s, idx, x, out, gated)
    K.sparse_ffn_bundled_int8(q, s, idx, x, out, gated, parallel=parallel)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_int8_quantisation_error_is_below_half_a_step():
    B = _bundles(n=50, d=40, seed=9)
    q, s = quantize_int8(B)
    assert q.dtype == np.int8 and s.shape == (50, 3)
    assert np.abs(q).max() == 127
    err = np.abs(dequantize_int8(q, s) - B)
    assert np.all(err <= s[:, :, None] / 2 + 1e-7)


def test_make_bundles_layout_and_inverse():
    rng = np.random.default_rng(0)
    wg, wu = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    wd = rng.standard_normal((3, 5))                        # nn.Linear(d_ff=5, d=3).weight
    B = make_bundles(wu, wd, wg)
    assert B.shape == (5, 3, 3) and B.dtype == np.float32 and B.flags.c_contiguous
    np.testing.assert_allclose(B[2, 2], wd[:, 2], rtol=1e-6)  # down_i = column i of W_down
    g, u, d = split_bundles(B)
    np.testing.assert_allclose(d, wd, rtol=1e-6)
    np.testing.assert_allclose(g, wg, rtol=1e-6)
    with pytest.raises(ValueError, match="w_down must have shape"):
        make_bundles(wu, wd.T)


# ---------------------------------------------------------------- bad input, clear errors
def test_wrong_dtype_is_a_type_error():
    B, x = _bundles(), _x()
    with pytest.raises(TypeError, match="dtype float32.*float64"):
        K.sparse_ffn_bundled(B.astype(np.float64), np.arange(3, dtype=np.int64), x,
                             np.zeros(32, np.float32), True)
    with pytest.raises(TypeError, match="idx must have dtype int64"):
        K.sparse_ffn_bundled(B, np.arange(3, dtype=np.int32), x, np.zeros(32, np.float32), True)
    with pytest.raises(TypeError, match="numpy array"):
        K.gather_dot([[1.0]], np.zeros(1, np.int64), x, np.zeros(1, np.float32))


def test_wrong_shape_is_a_value_error():
    B, x = _bundles(), _x()
    with pytest.raises(ValueError, match=r"\(n_neurons, 2, d\)"):
        K.sparse_ffn_bundled(B, np.arange(3, dtype=np.int64), x, np.zeros(32, np.float32),
                             gated=False)
    with pytest.raises(ValueError, match="x must have length 32"):
        K.sparse_ffn_bundled(B, np.arange(3, dtype=np.int64), x[:10].copy(),
                             np.zeros(32, np.float32), True)
    with pytest.raises(ValueError, match="out must have length 3"):
        K.gather_dot(B[:, 0].copy(), np.arange(3, dtype=np.int64), x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.gather_dot(B[:, 0], np.arange(3, dtype=np.int64), x, np.zeros(3, np.float32))
    q, s = quantize_int8(B)
    with pytest.raises(ValueError, match="scales must have shape"):
        K.sparse_ffn_bundled_int8(q, np.ascontiguousarray(s[:, :2]), np.arange(3, dtype=np.int64),
                                  x, np.zeros(32, np.float32), True)


@pytest.mark.parametrize("bad", [64, -1, 1000])
def test_index_out_of_range_is_a_value_error(bad):
    B, x = _bundles(n=64), _x()
    idx = np.array([0, bad], np.int64)
    with pytest.raises(ValueError, match=f"holds {bad}, out of range for 64 rows"):
        K.sparse_ffn_bundled(B, idx, x, np.zeros(32, np.float32), True)
    with pytest.raises(ValueError, match="out of range"):
        K.down_axpy(B[:, 2].copy(), idx, np.ones(2, np.float32), np.zeros(32, np.float32))


def test_read_only_out_nan_input_and_bad_scales_are_clear_errors():
    B, x = _bundles(), _x()
    idx = np.arange(3, dtype=np.int64)
    ro = np.zeros(32, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        K.sparse_ffn_bundled(B, idx, x, ro, True)
    with pytest.raises(ValueError, match="out is read-only"):
        K.down_axpy(B[:, 2].copy(), idx, np.ones(3, np.float32), ro)
    xn = x.copy()
    xn[5] = np.nan
    with pytest.raises(ValueError, match="x holds NaN or inf at position 5"):
        K.sparse_ffn_bundled(B, idx, xn, np.zeros(32, np.float32), True)
    with pytest.raises(ValueError, match="h holds NaN or inf"):
        K.down_axpy(B[:, 2].copy(), idx, np.array([1, np.inf, 0], np.float32),
                    np.zeros(32, np.float32))
    q, s = quantize_int8(B)
    for bad in (np.nan, 0.0, -1.0):
        s2 = s.copy()
        s2[4, 1] = bad
        with pytest.raises(ValueError, match=r"scales\[4, 1\].*finite and > 0"):
            K.sparse_ffn_bundled_int8(q, s2, idx, x, np.zeros(32, np.float32), True)


def _threads():
    import numba
    return numba.config.NUMBA_NUM_THREADS


# 400k additions of 1.0 into 8 outputs: a racy kernel loses some whenever threads overlap;
# private accumulators never do (all partial sums are exact integers in float32). On one thread
# there is no race to lose, so the tests would prove nothing: they are skipped.
needs_two_threads = pytest.mark.skipif(_threads() < 2, reason="a race needs >= 2 numba threads")
N_ADD = 400_000


@needs_two_threads
def test_parallel_down_axpy_loses_no_update():
    from teachkit.sparse.planner.machine import numba_threads

    rows = np.ones((64, 8), np.float32)
    idx = (np.arange(N_ADD) % 64).astype(np.int64)
    with numba_threads(_threads()):
        out = K.down_axpy(rows, idx, np.ones(N_ADD, np.float32), np.zeros(8, np.float32))
    np.testing.assert_array_equal(out, np.full(8, N_ADD, np.float32))


@needs_two_threads
@pytest.mark.parametrize("int8", [False, True])
def test_parallel_fused_kernels_lose_no_update(int8):
    # gate = up = e_0 and x = e_0, so h_i = relu(1) * 1 = 1; down = ones: every call adds 1
    from teachkit.sparse.planner.machine import numba_threads

    B = np.zeros((64, 3, 8), np.float32)
    B[:, 0, 0] = B[:, 1, 0] = 1.0
    B[:, 2] = 1.0
    x = np.zeros(8, np.float32)
    x[0] = 1.0
    idx = (np.arange(N_ADD) % 64).astype(np.int64)
    with numba_threads(_threads()):
        if int8:
            q, s = quantize_int8(B)
            out = K.sparse_ffn_bundled_int8(q, s, idx, x, np.zeros(8, np.float32), True)
        else:
            out = K.sparse_ffn_bundled(B, idx, x, np.zeros(8, np.float32), True)
    np.testing.assert_array_equal(out, np.full(8, N_ADD, np.float32))
