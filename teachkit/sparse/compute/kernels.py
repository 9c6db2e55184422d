"""numba kernels for the sparse FFN: gathered dot, axpy down projection, fused bundles, int8.

A *neuron* i of a gated FFN is row i of ``W_gate`` and ``W_up`` plus column i of ``W_down``
(row i of ``W_downᵀ``). Stored together, neuron-major, it is a **bundle**::

    bundles[i] = [gate_i | up_i | down_i]      shape (n_neurons, 3, d)   gated (ReGLU)
    bundles[i] = [up_i | down_i]               shape (n_neurons, 2, d)   plain ReLU

The FFN of one token, restricted to an active set ``idx``, is

    h_i  = relu(gate_i · x) * (up_i · x)        (gated)      h_i = relu(up_i · x)   (plain)
    out += Σ_{i ∈ idx} h_i · down_i

If ``idx`` holds every neuron with h_i ≠ 0 (an *oracle* predictor) this equals the dense FFN
exactly, because the neurons left out contribute h_i · down_i = 0.

Every kernel streams whole contiguous rows, so it is memory-bound: its time is about
``bytes touched / memory bandwidth`` (see ``teachkit.sparse.planner.machine``). The fused kernel reads
gate and up of every listed neuron and the down row only when h_i ≠ 0, so a false positive of
the predictor costs 2·d weights, a true positive 3·d. It is software-pipelined: the down axpy
of neuron j-1 runs in the same loop as the gate/up dot products of neuron j.

int8 bundles hold ``q`` (n, n_mats, d) int8 and ``scales`` (n, n_mats) float32: weight row
``m`` of neuron ``i`` is ``q[i, m] * scales[i, m]`` (see ``teachkit.sparse.compute.bundles``).

The down projection is a sum of scaled rows (an *axpy*) into one output vector. Letting
``prange`` iterations all do ``out[k] += …`` is a data race: two threads read the same
``out[k]``, both add, one write is lost. Each thread therefore owns a private accumulator row
``partial[c]`` and the rows are summed once at the end (PowerInfer's CPU axpy does the same).

The four kernels validate their inputs (dtype, shape, contiguity, index range, a writeable
``out``, NaN/inf in ``x``/``h`` and in the int8 scales; :mod:`teachkit.sparse.compute.checks`)
and raise a ``TypeError``/``ValueError`` a learner can act on. Their ``*_unchecked`` twins skip
the checks, for inner loops whose arrays are known to be right (the pipeline's compute stages,
the benchmark's predictor); the ``_``-prefixed jitted kernels underneath check nothing either.
``parallel=False`` selects a single-threaded kernel, for callers that run their own threads.

**When a second thread pays.** Starting the pool's threads on a kernel and waiting for them
costs a wake-up (tens of microseconds on a busy 2-core VM; see :mod:`teachkit.numba_setup`
for why teachkit's idle threads sleep rather than spin), and on a shared machine the second
thread may not get a core at all. A kernel that streams fewer than :data:`SERIAL_BELOW_BYTES`
of weights therefore runs on the calling thread even with ``parallel=True``: at memory
bandwidths typical of a small VM, say 13 GB/s on one core and 20 GB/s on two, a second thread
saves ``bytes · (1/13 - 1/20) ns``, about 27 us per MiB, less than a wake-up below a MiB. The
``*_unchecked`` kernels apply the same rule (:func:`uses_threads`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .checks import check_array, check_bundles, check_index, check_input, check_int8_bundles, check_out

__all__ = ["gather_dot", "down_axpy", "sparse_ffn_bundled", "sparse_ffn_bundled_int8",
           "gather_dot_unchecked", "down_axpy_unchecked", "sparse_ffn_bundled_unchecked",
           "sparse_ffn_bundled_int8_unchecked", "uses_threads"]

_JIT = dict(nogil=True, fastmath=True, cache=True)

SERIAL_BELOW_BYTES = 1 << 20     # weights a kernel streams below which it runs on the calling thread


# --------------------------------------------------------------------------- jitted kernels
@njit(parallel=True, **_JIT)
def _gather_dot_threads(W, idx, x, out):
    d = x.shape[0]
    for j in prange(idx.shape[0]):
        r = idx[j]
        acc = np.float32(0.0)
        for k in range(d):
            acc += W[r, k] * x[k]
        out[j] = acc


@njit(**_JIT)
def _gather_dot_ser(W, idx, x, out):
    d = x.shape[0]
    for j in range(idx.shape[0]):
        r = idx[j]
        acc = np.float32(0.0)
        for k in range(d):
            acc += W[r, k] * x[k]
        out[j] = acc


@njit(**_JIT)
def _axpy_rows(WdT, idx, h, lo, hi, acc):
    d = acc.shape[0]
    for j in range(lo, hi):
        s = h[j]
        if s != 0.0:
            r = idx[j]
            for k in range(d):
                acc[k] += s * WdT[r, k]


@njit(parallel=True, **_JIT)
def _down_axpy_threads(WdT, idx, h, out, nthreads):
    n = idx.shape[0]
    d = out.shape[0]
    nchunks = max(1, min(n, nthreads))
    per = (n + nchunks - 1) // nchunks
    partial = np.zeros((nchunks, d), dtype=np.float32)   # one private row per thread
    for c in prange(nchunks):
        _axpy_rows(WdT, idx, h, c * per, min(n, (c + 1) * per), partial[c])
    for c in range(nchunks):
        for k in range(d):
            out[k] += partial[c, k]


@njit(**_JIT)
def _down_axpy_ser(WdT, idx, h, out):
    _axpy_rows(WdT, idx, h, 0, idx.shape[0], out)


@njit(**_JIT)
def _bundle_rows(B, idx, x, gated, lo, hi, acc):
    # Software pipeline: the gate/up dot products of neuron j run in the same loop as the down
    # axpy of neuron j-1, so three memory streams are in flight and no load waits for h_j
    # (finishing each neuron before the next would). The down row is read
    # only when h != 0.
    d = x.shape[0]
    last = B.shape[1] - 1                      # the down row is the last of the bundle
    h_prev = np.float32(0.0)
    r_prev = 0
    for j in range(lo, hi + 1):
        if j == hi:                            # drain: the last neuron's down row
            if h_prev != 0.0:
                for k in range(d):
                    acc[k] += h_prev * B[r_prev, last, k]
            break
        r = idx[j]
        g = np.float32(0.0)
        u = np.float32(0.0)
        if gated:
            if h_prev != 0.0:
                for k in range(d):
                    g += B[r, 0, k] * x[k]
                    u += B[r, 1, k] * x[k]
                    acc[k] += h_prev * B[r_prev, last, k]
            else:
                for k in range(d):
                    g += B[r, 0, k] * x[k]
                    u += B[r, 1, k] * x[k]
            h_prev = max(g, np.float32(0.0)) * u
        else:
            if h_prev != 0.0:
                for k in range(d):
                    u += B[r, 0, k] * x[k]
                    acc[k] += h_prev * B[r_prev, last, k]
            else:
                for k in range(d):
                    u += B[r, 0, k] * x[k]
            h_prev = max(u, np.float32(0.0))
        r_prev = r


@njit(parallel=True, **_JIT)
def _ffn_bundled_threads(B, idx, x, out, gated, nthreads):
    n = idx.shape[0]
    d = x.shape[0]
    nchunks = max(1, min(n, nthreads))
    per = (n + nchunks - 1) // nchunks
    partial = np.zeros((nchunks, d), dtype=np.float32)
    for c in prange(nchunks):
        _bundle_rows(B, idx, x, gated, c * per, min(n, (c + 1) * per), partial[c])
    for c in range(nchunks):
        for k in range(d):
            out[k] += partial[c, k]


@njit(**_JIT)
def _ffn_bundled_ser(B, idx, x, out, gated):
    _bundle_rows(B, idx, x, gated, 0, idx.shape[0], out)


@njit(**_JIT)
def _bundle_rows_i8(Q, S, idx, x, gated, lo, hi, acc):
    # the same software pipeline as _bundle_rows; hs_prev = h · scale of the down row
    d = x.shape[0]
    last = Q.shape[1] - 1
    hs_prev = np.float32(0.0)
    r_prev = 0
    for j in range(lo, hi + 1):
        if j == hi:
            if hs_prev != 0.0:
                for k in range(d):
                    acc[k] += hs_prev * np.float32(Q[r_prev, last, k])
            break
        r = idx[j]
        g = np.float32(0.0)
        u = np.float32(0.0)
        if gated:
            if hs_prev != 0.0:
                for k in range(d):
                    g += np.float32(Q[r, 0, k]) * x[k]
                    u += np.float32(Q[r, 1, k]) * x[k]
                    acc[k] += hs_prev * np.float32(Q[r_prev, last, k])
            else:
                for k in range(d):
                    g += np.float32(Q[r, 0, k]) * x[k]
                    u += np.float32(Q[r, 1, k]) * x[k]
            h = max(g * S[r, 0], np.float32(0.0)) * (u * S[r, 1])
        else:
            if hs_prev != 0.0:
                for k in range(d):
                    u += np.float32(Q[r, 0, k]) * x[k]
                    acc[k] += hs_prev * np.float32(Q[r_prev, last, k])
            else:
                for k in range(d):
                    u += np.float32(Q[r, 0, k]) * x[k]
            h = max(u * S[r, 0], np.float32(0.0))
        hs_prev = h * S[r, last]
        r_prev = r


@njit(parallel=True, **_JIT)
def _ffn_bundled_i8_threads(Q, S, idx, x, out, gated, nthreads):
    n = idx.shape[0]
    d = x.shape[0]
    nchunks = max(1, min(n, nthreads))
    per = (n + nchunks - 1) // nchunks
    partial = np.zeros((nchunks, d), dtype=np.float32)
    for c in prange(nchunks):
        _bundle_rows_i8(Q, S, idx, x, gated, c * per, min(n, (c + 1) * per), partial[c])
    for c in range(nchunks):
        for k in range(d):
            out[k] += partial[c, k]


@njit(**_JIT)
def _ffn_bundled_i8_ser(Q, S, idx, x, out, gated):
    _bundle_rows_i8(Q, S, idx, x, gated, 0, idx.shape[0], out)


# --------------------------------------------------------------------------- size dispatch
def uses_threads(n_bytes: int) -> bool:
    """Whether a kernel that streams ``n_bytes`` of weights runs on the pool's threads (else on the caller's)."""
    return n_bytes >= SERIAL_BELOW_BYTES and numba.get_num_threads() > 1


def gather_dot_unchecked(W, idx, x, out):
    """:func:`gather_dot` without its checks; threaded if :func:`uses_threads`."""
    if uses_threads(idx.shape[0] * W.shape[1] * W.itemsize):
        _gather_dot_threads(W, idx, x, out)
    else:
        _gather_dot_ser(W, idx, x, out)


def down_axpy_unchecked(WdT, idx, h, out, nthreads):
    """:func:`down_axpy` without its checks, split in ``nthreads`` chunks; threaded if :func:`uses_threads`."""
    if uses_threads(idx.shape[0] * WdT.shape[1] * WdT.itemsize):
        _down_axpy_threads(WdT, idx, h, out, nthreads)
    else:
        _down_axpy_ser(WdT, idx, h, out)


def sparse_ffn_bundled_unchecked(B, idx, x, out, gated, nthreads):
    """:func:`sparse_ffn_bundled` without its checks, split in ``nthreads`` chunks; threaded if :func:`uses_threads`."""
    if uses_threads(idx.shape[0] * B.shape[1] * B.shape[2] * B.itemsize):
        _ffn_bundled_threads(B, idx, x, out, gated, nthreads)
    else:
        _ffn_bundled_ser(B, idx, x, out, gated)


def sparse_ffn_bundled_int8_unchecked(Q, S, idx, x, out, gated, nthreads):
    """:func:`sparse_ffn_bundled_int8` without its checks, in ``nthreads`` chunks; threaded if :func:`uses_threads`."""
    if uses_threads(idx.shape[0] * Q.shape[1] * Q.shape[2] * Q.itemsize):
        _ffn_bundled_i8_threads(Q, S, idx, x, out, gated, nthreads)
    else:
        _ffn_bundled_i8_ser(Q, S, idx, x, out, gated)


# --------------------------------------------------------------------------- public API
def gather_dot(W, idx, x, out, parallel: bool = True) -> np.ndarray:
    """``out[j] = W[idx[j]] · x`` for float32 ``W`` (n, d): the gate/up rows of the active set."""
    check_array(W, "W", np.float32, 2)
    check_index(idx, W.shape[0])
    check_input(x, "x", W.shape[1])
    check_out(out, idx.shape[0])
    (gather_dot_unchecked if parallel else _gather_dot_ser)(W, idx, x, out)
    return out


def down_axpy(Wd_T, idx, h, out, parallel: bool = True) -> np.ndarray:
    """``out += Σ_j h[j] · Wd_T[idx[j]]``: the down projection over the active set, race-free."""
    check_array(Wd_T, "Wd_T", np.float32, 2)
    check_index(idx, Wd_T.shape[0])
    check_input(h, "h", idx.shape[0])
    check_out(out, Wd_T.shape[1])
    if parallel:
        down_axpy_unchecked(Wd_T, idx, h, out, numba.get_num_threads())
    else:
        _down_axpy_ser(Wd_T, idx, h, out)
    return out


def sparse_ffn_bundled(bundles, idx, x, out, gated: bool, parallel: bool = True) -> np.ndarray:
    """``out += Σ_{i∈idx} h_i · down_i`` over float32 bundles; returns ``out``."""
    check_bundles(bundles, gated)
    check_index(idx, bundles.shape[0])
    check_input(x, "x", bundles.shape[2])
    check_out(out, bundles.shape[2])
    if parallel:
        sparse_ffn_bundled_unchecked(bundles, idx, x, out, bool(gated), numba.get_num_threads())
    else:
        _ffn_bundled_ser(bundles, idx, x, out, bool(gated))
    return out


def sparse_ffn_bundled_int8(q, scales, idx, x, out, gated: bool,
                            parallel: bool = True) -> np.ndarray:
    """The same FFN on int8 bundles: weight row = ``q[i, m] * scales[i, m]``."""
    check_int8_bundles(q, scales, gated)
    check_index(idx, q.shape[0])
    check_input(x, "x", q.shape[2])
    check_out(out, q.shape[2])
    if parallel:
        sparse_ffn_bundled_int8_unchecked(q, scales, idx, x, out, bool(gated), numba.get_num_threads())
    else:
        _ffn_bundled_i8_ser(q, scales, idx, x, out, bool(gated))
    return out
