"""Checks of the sparse kernels' arguments, with errors a learner can act on.

The checked kernels of :mod:`teachkit.sparse.compute.kernels` call these before any numba
code runs: dtype, shape, contiguity, index range, a writeable ``out``, NaN/inf in ``x``/``h``
and in the int8 scales. Each raises a ``TypeError``/``ValueError`` that says what to change
(``.astype(np.float32)``, ``np.ascontiguousarray``, a valid index range, ...).
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_array", "check_index", "check_input", "check_out", "check_bundles", "check_int8_bundles"]


def check_array(a, name: str, dtype, ndim: int) -> np.ndarray:
    """Validate an array: numpy, of ``dtype``, ``ndim``-D, C-contiguous."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__} "
                        f"(torch tensors: call .numpy() first)")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype.name}; "
                        f"convert with {name}.astype(np.{np.dtype(dtype).name})")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return a


def check_index(idx, n_rows: int, name: str = "idx") -> np.ndarray:
    """Validate an index list: 1-D, int64, every entry in [0, n_rows)."""
    if not isinstance(idx, np.ndarray):
        raise TypeError(f"{name} must be a numpy int64 array, got {type(idx).__name__}")
    if idx.dtype != np.int64:
        raise TypeError(f"{name} must have dtype int64, got {idx.dtype.name}; "
                        f"convert with {name}.astype(np.int64)")
    check_array(idx, name, np.int64, 1)
    if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
        bad = idx[(idx < 0) | (idx >= n_rows)][0]
        raise ValueError(f"{name} holds {int(bad)}, out of range for {n_rows} rows "
                         f"(valid indices are 0..{n_rows - 1})")
    return idx


def _check_vec(v, name: str, length: int) -> np.ndarray:
    check_array(v, name, np.float32, 1)
    if v.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {v.shape[0]}")
    return v


def check_input(x, name: str, length: int) -> np.ndarray:
    """An input vector: float32 of the right length and free of NaN/inf (which would spread)."""
    _check_vec(x, name, length)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf at position {int(np.flatnonzero(~np.isfinite(x))[0])}; "
                         f"the kernel would spread it into every output")
    return x


def check_out(out, length: int) -> np.ndarray:
    """The output vector: float32, right length, and writeable (the kernel adds into it)."""
    _check_vec(out, "out", length)
    if not out.flags.writeable:
        raise ValueError("out is read-only; the kernel adds into it in place: pass a writeable "
                         "array, e.g. out.copy() or np.zeros(d, np.float32)")
    return out


def check_bundles(bundles, gated: bool) -> np.ndarray:
    """Validate a float32 bundle array (n, 3, d) for gated or (n, 2, d) for plain FFNs."""
    check_array(bundles, "bundles", np.float32, 3)
    want = 3 if gated else 2
    if bundles.shape[1] != want:
        kind = "gated: [gate|up|down]" if gated else "plain: [up|down]"
        raise ValueError(f"bundles must have shape (n_neurons, {want}, d) for a {kind} FFN, "
                         f"got {bundles.shape}")
    return bundles


def check_int8_bundles(q, scales, gated: bool):
    """Validate int8 bundles ``q`` (n, n_mats, d) with float32 ``scales`` (n, n_mats)."""
    check_array(q, "q", np.int8, 3)
    check_array(scales, "scales", np.float32, 2)
    want = 3 if gated else 2
    if q.shape[1] != want:
        raise ValueError(f"q must have shape (n_neurons, {want}, d), got {q.shape}")
    if scales.shape != q.shape[:2]:
        raise ValueError(f"scales must have shape {q.shape[:2]} (one per neuron and matrix), "
                         f"got {scales.shape}")
    bad = ~(np.isfinite(scales) & (scales > 0))
    if bad.any():
        i, m = np.argwhere(bad)[0]
        raise ValueError(f"scales[{i}, {m}] = {scales[i, m]}: every scale must be finite and > 0 "
                         f"(quantize_int8 gives 1.0 for an all-zero row)")
    return q, scales
