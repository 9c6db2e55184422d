"""Activation statistics: how sparse is the FFN, per token, per neuron, per batch?

All functions take an activation matrix ``H`` of shape (tokens, neurons) (post-ReLU values or
a boolean "fired" mask) and count a neuron as active for a token when its value is > 0.

* ``activity_per_token``: fraction of neurons active for each token (PowerInfer: about 10% of
  an MLP block's neurons per inference step; Song et al., arXiv:2312.12456v2, §3.2, footnote 3).
* ``firing_frequency``: for each neuron, the fraction of tokens on which it fires. Sorted in
  decreasing order it is *skewed*: a few *hot* neurons fire on many tokens, the long tail of
  *cold* neurons rarely. PowerInfer reports a power law ``f(r) ≈ C r^(-α)`` for OPT and Llama;
  whether a given model follows one is a measurement, not an assumption: ``compare_fits`` fits
  both a power law (straight on log-log axes) and an exponential in rank (straight on log-linear
  axes) and reports the R² of each. (The small LM of notebook 10 is skewed but fits the
  exponential better than the power law.)
* ``hot_share``: the smallest fraction of neurons that accounts for ``share`` of all firings
  (OPT-30B: 26% of an MLP block's neurons give 80% of its activations; Song et al.,
  arXiv:2312.12456v2, §3.1, Fig. 4a).
* ``union_activity``: fraction of neurons active for *at least one* token of a window of k
  tokens. It climbs towards 1 quickly with k, which is why a prompt (prefill) is dense.
"""

from __future__ import annotations

import numpy as np

__all__ = ["active_mask", "activity_per_token", "firing_frequency", "hot_share",
           "fit_power_law", "fit_exponential", "compare_fits", "union_activity", "consecutive_overlap"]


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


def _ranked(freq, top: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.sort(np.asarray(freq, dtype=np.float64))[::-1]
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    f = f[f > 0][: max(2, int(top * len(f)))]
    if len(f) < 2:
        raise ValueError("need at least two neurons that fire to fit a rank/frequency curve")
    return np.arange(1, len(f) + 1, dtype=np.float64), f


def _line_fit(u, v) -> tuple[float, float, float]:
    """Least squares v ≈ a + b u; returns (b, a, R²)."""
    b, a = np.polyfit(u, v, 1)
    resid = v - (a + b * u)
    ss_tot = float(((v - v.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return float(b), float(a), r2


def fit_power_law(freq, top: float = 0.5) -> tuple[float, float]:
    """Least-squares fit of log f = log C - α log r over the ``top`` share of ranks with f > 0.

    Returns ``(alpha, C)``. A fit always returns numbers: check its R² with
    :func:`compare_fits` before calling the curve a power law.
    """
    r, f = _ranked(freq, top)
    slope, intercept, _ = _line_fit(np.log(r), np.log(f))
    return -slope, float(np.exp(intercept))


def fit_exponential(freq, top: float = 0.5) -> tuple[float, float]:
    """Least-squares fit of log f = log C - λ r (an exponential in rank); returns ``(lam, C)``."""
    r, f = _ranked(freq, top)
    slope, intercept, _ = _line_fit(r, np.log(f))
    return -slope, float(np.exp(intercept))


def compare_fits(freq, top: float = 0.5) -> dict:
    """R² of log f against log r (power law) and against r (exponential), same ranks.

    Returns ``{"power_law": (alpha, C, r2), "exponential": (lam, C, r2)}``. A power law is the
    better description only if its R² is the higher one (and close to 1).
    """
    r, f = _ranked(freq, top)
    a1, c1, r2_pow = _line_fit(np.log(r), np.log(f))
    a2, c2, r2_exp = _line_fit(r, np.log(f))
    return {"power_law": (-a1, float(np.exp(c1)), r2_pow),
            "exponential": (-a2, float(np.exp(c2)), r2_exp)}


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
