"""Per-token estimators of KL(π‖π_ref) from samples y ~ π (J. Schulman, "Approximating KL Divergence",
blog post of 7 March 2020, joschu.net/blog/kl-approx.html, which names them k1, k2, k3).

Let ℓ = log π(y) − log π_ref(y) for a token y sampled from π, and r = π_ref(y)/π(y) = e^{−ℓ}.

    k1 = ℓ                    unbiased (E_π[ℓ] = KL), high variance, can be negative
    k2 = ½ ℓ²                 biased, low variance, ≥ 0
    k3 = r − 1 − log r        unbiased (E_π[r] = 1), low variance, ≥ 0  (GRPO's "D_KL")

Why k3 is unbiased: E_π[r − 1] = Σ_y π_ref(y) − 1 = 0, so E_π[k3] = E_π[−log r] = E_π[ℓ] = KL.
Why k3 ≥ 0: e^d ≥ 1 + d for every real d, with d = −ℓ.
Near 0, k3 = ½ℓ² − ⅙ℓ³ + ...: k2 and k3 agree to second order.

The gradients differ when the estimator is put *in the loss* and differentiated on-policy:
∇E[k1] has zero expectation (E_π[∇log π] = 0), k2's gradient is that of KL(π‖π_ref), and k3's
is that of the *forward* KL(π_ref‖π). Notebook 04 shows this.

Numerics: computing ``exp(d) − d − 1`` in float32 cancels catastrophically when d is small
(at d = 1e-6 it can even come out negative). We use the Taylor series for |d| < 0.1 and
``expm1(d) − d`` elsewhere; both are accurate to a few ulp and never negative.
"""

from __future__ import annotations

import torch

from .validate import check_floating, check_not_empty, check_same_shape

__all__ = ["kl_k1", "kl_k2", "kl_k3"]

_SERIES_BELOW = 0.1


def _log_ratio(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    check_floating("logp", logp)
    check_floating("ref_logp", ref_logp)
    check_same_shape(logp=logp, ref_logp=ref_logp)
    check_not_empty("logp", logp)
    return logp - ref_logp


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref, per token (same shape as the inputs)."""
    return _log_ratio(logp, ref_logp)


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (log π − log π_ref)², per token."""
    return 0.5 * _log_ratio(logp, ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = e^d − d − 1 with d = log π_ref − log π, per token; never negative, exact near 0."""
    d = -_log_ratio(logp, ref_logp)
    small = d.abs() < _SERIES_BELOW
    # Feed each branch only the inputs it is used for, so the unused branch cannot overflow
    # and send inf * 0 = NaN into the gradient through torch.where.
    ds = torch.where(small, d, torch.zeros_like(d))
    dl = torch.where(small, torch.ones_like(d), d)
    series = ds * ds * (0.5 + ds * (1 / 6 + ds * (1 / 24 + ds * (1 / 120 + ds / 720))))
    direct = torch.where(dl == torch.inf, dl, torch.expm1(dl) - dl)  # e^d − d at d = +inf is inf, not inf − inf
    return torch.where(small, series, direct).clamp_min(0.0)  # clamp: a guard, never needed in tests
