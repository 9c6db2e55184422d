"""The neuron-bundle layout and its int8 quantisation.

A dense FFN stores ``W_gate, W_up`` as (d_ff, d) and ``W_down`` as (d, d_ff) (``nn.Linear``
weights). Neuron i needs row i of gate and up and **column** i of down, which is scattered
with stride d_ff in memory. Transposing down makes it a contiguous row too, and stacking the
three rows gives one contiguous bundle per neuron: a sparse kernel then reads one 3·d·4-byte
block per active neuron, and a flash file one random read (PowerInfer-2, arXiv:2406.06282v3, §4.4).

int8 with one symmetric scale per row::

    scale = max|w| / 127,   q = round(w / scale)  ∈ [-127, 127],   w ≈ q · scale

keeps the error of every weight below scale / 2 and moves 4× fewer bytes than float32.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_bundles", "split_bundles", "quantize_int8", "dequantize_int8"]


def _weight(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {getattr(a, 'shape', type(a).__name__)}")
    return a


def make_bundles(w_up, w_down, w_gate=None) -> np.ndarray:
    """Bundle ``w_up`` (d_ff, d), ``w_down`` (d, d_ff) and optional ``w_gate`` (d_ff, d).

    Returns float32 C-contiguous (d_ff, 3, d) = [gate_i | up_i | down_i] if ``w_gate`` is
    given, else (d_ff, 2, d) = [up_i | down_i].
    """
    w_up, w_down = _weight(w_up, "w_up"), _weight(w_down, "w_down")
    d_ff, d = w_up.shape
    if w_down.shape != (d, d_ff):
        raise ValueError(f"w_down must have shape (d, d_ff) = {(d, d_ff)} like nn.Linear(d_ff, d)"
                         f".weight, got {w_down.shape}")
    mats = [w_up, w_down.T]
    if w_gate is not None:
        w_gate = _weight(w_gate, "w_gate")
        if w_gate.shape != w_up.shape:
            raise ValueError(f"w_gate must have the shape of w_up {w_up.shape}, got {w_gate.shape}")
        mats = [w_gate] + mats
    return np.ascontiguousarray(np.stack(mats, axis=1), dtype=np.float32)


def split_bundles(bundles: np.ndarray):
    """Inverse of :func:`make_bundles`: ``(w_gate or None, w_up, w_down)`` as dense matrices."""
    if bundles.ndim != 3 or bundles.shape[1] not in (2, 3):
        raise ValueError(f"bundles must have shape (n, 2 or 3, d), got {bundles.shape}")
    gate = bundles[:, 0] if bundles.shape[1] == 3 else None
    return gate, bundles[:, -2], np.ascontiguousarray(bundles[:, -1].T)


def quantize_int8(bundles: np.ndarray):
    """Symmetric per-row int8: returns ``(q int8 (n, m, d), scales float32 (n, m))``."""
    if not isinstance(bundles, np.ndarray) or bundles.ndim != 3:
        raise ValueError(f"bundles must be a 3-D array (n, n_mats, d), got "
                         f"{getattr(bundles, 'shape', type(bundles).__name__)}")
    b = bundles.astype(np.float32, copy=False)
    amax = np.abs(b).max(axis=2)
    scales = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(b / scales[:, :, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q), np.ascontiguousarray(scales)


def dequantize_int8(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``q * scales`` as float32 bundles."""
    return (q.astype(np.float32) * scales[:, :, None]).astype(np.float32)
