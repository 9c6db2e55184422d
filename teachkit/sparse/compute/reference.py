"""Pure-numpy references for every kernel in ``teachkit.sparse.compute.kernels``.

Slow, obvious and float64 inside, so they serve as the oracle in tests: a kernel is correct
when it agrees with its reference to float32 tolerance.
"""

from __future__ import annotations

import numpy as np

from .bundles import dequantize_int8, split_bundles

__all__ = ["gather_dot_ref", "down_axpy_ref", "sparse_ffn_bundled_ref",
           "sparse_ffn_bundled_int8_ref", "hidden_ref", "dense_ffn_ref", "active_set"]


def gather_dot_ref(W, idx, x):
    """``W[idx] @ x``."""
    return (W[idx].astype(np.float64) @ x.astype(np.float64)).astype(np.float32)


def down_axpy_ref(Wd_T, idx, h, out):
    """``out + h @ Wd_T[idx]`` (returns a new array)."""
    return (out + h.astype(np.float64) @ Wd_T[idx].astype(np.float64)).astype(np.float32)


def hidden_ref(bundles, x, gated: bool):
    """Every neuron's h_i = relu(gate_i·x)·(up_i·x) (gated) or relu(up_i·x), float64."""
    x = x.astype(np.float64)
    u = bundles[:, -2].astype(np.float64) @ x
    if gated:
        return np.maximum(bundles[:, 0].astype(np.float64) @ x, 0.0) * u
    return np.maximum(u, 0.0)


def sparse_ffn_bundled_ref(bundles, idx, x, out, gated: bool):
    """``out + Σ_{i∈idx} h_i · down_i`` (returns a new array)."""
    h = hidden_ref(bundles[idx], x, gated)
    return (out + h @ bundles[idx, -1].astype(np.float64)).astype(np.float32)


def sparse_ffn_bundled_int8_ref(q, scales, idx, x, out, gated: bool):
    """The bundled FFN on dequantised int8 weights."""
    return sparse_ffn_bundled_ref(dequantize_int8(q[idx], scales[idx]),
                                  np.arange(len(idx)), x, out, gated)


def dense_ffn_ref(bundles, x, gated: bool):
    """The dense FFN from the three separate matrices: ``W_down @ (act(...))``."""
    gate, up, down = split_bundles(bundles)
    x = x.astype(np.float64)
    u = up.astype(np.float64) @ x
    h = np.maximum(gate.astype(np.float64) @ x, 0.0) * u if gated else np.maximum(u, 0.0)
    return (down.astype(np.float64) @ h).astype(np.float32)


def active_set(bundles, x, gated: bool) -> np.ndarray:
    """The oracle active set: sorted int64 indices of neurons with h_i ≠ 0."""
    return np.flatnonzero(hidden_ref(bundles, x, gated) != 0.0).astype(np.int64)
