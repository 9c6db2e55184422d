"""Activation statistics: how sparse is the FFN, per token, per neuron, per batch?

All functions take an activation matrix ``H`` of shape (tokens, neurons) (post-ReLU values or
a boolean "fired" mask) and count a neuron as active for a token when its value is > 0.

* ``activity_per_token``: fraction of neurons active for each token (PowerInfer: ~10%).
* ``firing_frequency``: for each neuron, the fraction of tokens on which it fires. Sorted in
  decreasing order it follows roughly a power law ``f(r) ≈ C r^(-α)``: a few *hot* neurons fire
  on most tokens, the long tail of *cold* neurons rarely.
* ``hot_share``: the smallest fraction of neurons that accounts for ``share`` of all firings
  (OPT-30B: 26% of neurons give 80% of activations, PowerInfer §3.1).
* ``union_activity``: fraction of neurons active for *at least one* token of a window of k
  tokens. It climbs towards 1 quickly with k, which is why a prompt (prefill) is dense.
"""

from __future__ import annotations

import numpy as np

__all__ = ["active_mask", "activity_per_token", "firing_frequency", "hot_share",
           "fit_power_law", "union_activity", "consecutive_overlap"]


def active_mask(H) -> np.ndarray:
    H = np.asarray(H)
    if H.ndim != 2:
        raise ValueError(f"expected activations of shape (tokens, neurons), got {H.shape}")
    return H > 0


def activity_per_token(H) -> np.ndarray:
    return active_mask(H).mean(axis=1)


def firing_frequency(H) -> np.ndarray:
    return active_mask(H).mean(axis=0)


def hot_share(freq, share: float = 0.8) -> float:
    """Smallest fraction of neurons whose firings add up to ``share`` of all firings."""
    f = np.sort(np.asarray(freq, dtype=np.float64))[::-1]
    if f.sum() == 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(f) / f.sum(), share) + 1)
    return min(k, len(f)) / len(f)


def fit_power_law(freq, top: float = 0.5) -> tuple[float, float]:
    """Least-squares fit of log f = log C - α log r over the ``top`` share of ranks with f > 0.

    Returns ``(alpha, C)``.
    """
    f = np.sort(np.asarray(freq, dtype=np.float64))[::-1]
    f = f[f > 0][: max(2, int(top * len(f)))]
    if len(f) < 2:
        raise ValueError("need at least two neurons that fire to fit a power law")
    r = np.arange(1, len(f) + 1)
    slope, intercept = np.polyfit(np.log(r), np.log(f), 1)
    return float(-slope), float(np.exp(intercept))


def union_activity(H, window: int) -> float:
    """Mean fraction of neurons active for at least one token of consecutive ``window``-token
    blocks: the activity a batch, or a prompt, of that many tokens sees."""
    A = active_mask(H)
    if window < 1 or window > len(A):
        raise ValueError(f"window must be in [1, {len(A)}], got {window}")
    n = (len(A) // window) * window
    return float(A[:n].reshape(-1, window, A.shape[1]).any(axis=1).mean())


def consecutive_overlap(H, lag: int = 1) -> float:
    """Mean Jaccard overlap of the active sets of tokens t and t+lag (1 = identical sets)."""
    A = active_mask(H)
    a, b = A[:-lag], A[lag:]
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return float(np.mean(inter[union > 0] / union[union > 0]))
