"""The pipeline's compute stages: the kernels that compute a cluster.

A *stage* is one step a cluster of neurons goes through in one FFN layer (PowerInfer-2, arXiv:2406.06282v3, §4.3):
a read on the I/O lane (``bundle_read``, or ``gate_read`` then ``updown_read``) or a compute
on the compute lane. A neuron's bundle holds its rows side by side (see
:mod:`teachkit.sparse.compute.bundles`): the first row (gate, or up for a plain ReLU FFN), then up
(gated FFN only), then down. Neuron i adds ``h_i · down_i`` to the output, with
``h_i = relu(gate_i · x) · (up_i · x)`` (gated) or ``h_i = relu(up_i · x)`` (plain). The
first row alone decides whether the neuron fires, so the compute is cut in two stages:

* :func:`gate_compute`: ``g = first_row · x`` for each bundle of the cluster;
* :func:`updown_compute`: for the neurons with ``g > 0`` only, ``h = relu(g)·(up·x)`` (or
  ``relu(g)``) and ``out += h · down``.

That cut is what lets the pipeline read the gate part of a bundle first and up/down only for
neurons whose gate fired (PowerInfer-2's two-phase loading), and compute one cluster's gate
while another cluster's up/down is still in flight. Work already in memory has nothing to wait
for between the two stages, so :func:`fused_compute` runs both in one pass (on every core for
batches of 1 MiB of weights or more; smaller ones on the calling thread, see ``kernels``).

The kernels release the GIL (``nogil``), so they run while reads are in flight and the I/O thread lands them. int8 weights
come as a ``(Q, S)`` tuple (weights, one scale per row) and go to the ``_i8`` variants.
:func:`scatter_rows` is the landing copy: arrived bytes, from the reader's staging rows into
the cache rows their cluster computes from.

The runtime times every stage in a :class:`teachkit.sparse.runtime.trace.Trace`.
"""

from __future__ import annotations

import numpy as np
import numba
from numba import njit

from . import kernels as K

__all__ = ["gate_compute", "updown_compute", "fused_compute", "scatter_rows"]

_JIT = dict(nogil=True, fastmath=True, cache=True)


# --------------------------------------------------------------------------- stage kernels
@njit(**_JIT)
def _first_rows(W, rows, x, g):
    for j in range(rows.shape[0]):
        r = rows[j]
        acc = np.float32(0.0)
        for k in range(x.shape[0]):
            acc += W[r, 0, k] * x[k]
        g[j] = acc


@njit(**_JIT)
def _rest_rows(W, rows, x, g, gated, out):
    last = W.shape[1] - 1
    for j in range(rows.shape[0]):
        if g[j] <= 0.0:
            continue
        r = rows[j]
        h = g[j]
        if gated:
            u = np.float32(0.0)
            for k in range(x.shape[0]):
                u += W[r, 1, k] * x[k]
            h = h * u
        if h != 0.0:
            for k in range(out.shape[0]):
                out[k] += h * W[r, last, k]


@njit(**_JIT)
def _first_rows_i8(Q, S, rows, x, g):
    for j in range(rows.shape[0]):
        r = rows[j]
        acc = np.float32(0.0)
        for k in range(x.shape[0]):
            acc += np.float32(Q[r, 0, k]) * x[k]
        g[j] = acc * S[r, 0]


@njit(**_JIT)
def _rest_rows_i8(Q, S, rows, x, g, gated, out):
    last = Q.shape[1] - 1
    for j in range(rows.shape[0]):
        if g[j] <= 0.0:
            continue
        r = rows[j]
        h = g[j]
        if gated:
            u = np.float32(0.0)
            for k in range(x.shape[0]):
                u += np.float32(Q[r, 1, k]) * x[k]
            h = h * u * S[r, 1]
        if h != 0.0:
            hs = h * S[r, last]
            for k in range(out.shape[0]):
                out[k] += hs * np.float32(Q[r, last, k])


def gate_compute(W, rows, x, g) -> np.ndarray:
    """``g[j] = first_row(W[rows[j]]) · x`` (the gate, or the up row of a plain FFN)."""
    if isinstance(W, tuple):
        _first_rows_i8(W[0], W[1], rows, x, g)
    else:
        _first_rows(W, rows, x, g)
    return g


def fused_compute(W, rows, x, out, gated: bool) -> np.ndarray:
    """Both stages in one pass: ``out += Σ_j h_j · down(W[rows[j]])``.

    For work already in memory, where there is nothing to wait for between the stages. It
    is the fused bundled kernel of notebook 11 (private per-thread accumulators, see ``kernels``).
    """
    if isinstance(W, tuple):
        K.sparse_ffn_bundled_int8_unchecked(W[0], W[1], rows, x, out, gated, numba.get_num_threads())
    else:
        K.sparse_ffn_bundled_unchecked(W, rows, x, out, gated, numba.get_num_threads())
    return out


def updown_compute(W, rows, x, g, gated: bool, out) -> np.ndarray:
    """``out += Σ_j h_j · down(W[rows[j]])`` with ``h = relu(g)·(up·x)`` (gated) or ``relu(g)``."""
    if isinstance(W, tuple):
        _rest_rows_i8(W[0], W[1], rows, x, g, gated, out)
    else:
        _rest_rows(W, rows, x, g, gated, out)
    return out


@njit(nogil=True, cache=True)
def scatter_rows(src, srows, lo, hi, dst, drows, dst_lo):
    """Copy elements [lo, hi) of staging row ``srows[j]`` into row ``drows[j]`` of ``dst`` at ``dst_lo``."""
    for j in range(srows.shape[0]):
        dst[drows[j], dst_lo:dst_lo + hi - lo] = src[srows[j], lo:hi]
