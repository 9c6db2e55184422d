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

from ..toy.masking import select_or_zero
from .masking import masked_sum
from .validate import check_one_per_row, check_token_batch

__all__ = ["reinforce_loss"]


def reinforce_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−Σ A·logp·mask / Σ mask with ``logp``, ``mask`` (B, T) and per-sequence ``advantages`` (B,)."""
    m = check_token_batch(mask, logp=logp)
    check_one_per_row("advantages", advantages, logp, "logp")
    logp = select_or_zero(logp, m)
    total = masked_sum(-advantages.unsqueeze(1) * logp, m)
    return total / m.sum().to(total.dtype)
