"""REINFORCE with a per-sequence advantage: the loss ReMax (and plain RLOO) minimise.

The score-function identity ∇E_π[r] = E_π[r ∇log π(y)] and log π(y) = Σ_t log π(y_t | y_<t) give

    ∇J ≈ Σ_t A(x, y) ∇log π(y_t | x, y_<t),     A = r(x, y) − b(x),

for any baseline b that does not look at y. As a loss whose gradient is −∇J (token-mean, as in
the ReMax code):

    L = −Σ_{b,t} A_b · logp_{b,t} · mask_{b,t} / Σ mask.

Its *value* means nothing (it shifts with the baseline); only its gradient does.
"""

from __future__ import annotations

import torch

from .masking import check_mask, check_tensor, masked_sum

__all__ = ["reinforce_loss"]


def reinforce_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−Σ A·logp·mask / Σ mask with ``logp``, ``mask`` (B, T) and per-sequence ``advantages`` (B,)."""
    check_tensor("logp", logp, ndim=2)
    check_tensor("advantages", advantages, ndim=1)
    if advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must hold one value per sequence: logp{tuple(logp.shape)} has "
                         f"{logp.shape[0]} sequences but advantages{tuple(advantages.shape)} has {advantages.shape[0]}")
    m = check_mask(mask, logp)
    logp = torch.where(m, logp, torch.zeros((), dtype=logp.dtype, device=logp.device))
    total = masked_sum(-advantages.unsqueeze(1) * logp, m)
    return total / m.sum().clamp(min=1).to(logp.dtype)
