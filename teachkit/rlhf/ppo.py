"""PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347v2, Eq. 7) and clipped value loss
(not in the paper: the value clipping of TRL's PPO for RLHF).

Policy loss. With ρ_t = π_θ(y_t)/π_old(y_t) = exp(logp − old_logp), PPO maximises
E[min(ρA, clip(ρ, 1−ε, 1+ε)A)]; as a loss (to minimise) that is

    L^π = masked_mean( max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)) ).

The min/max makes the objective pessimistic: once ρ has moved more than ε in the direction that
A rewards, the clipped branch wins and its gradient is 0, so one batch cannot push the policy far.
In the first minibatch of a fresh batch π_θ = π_old, so ρ = 1 and L^π = −masked_mean(A).

Value loss, clipped around the rollout-time values V_old:

    L^V = ½ masked_mean( max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²) ).
"""

from __future__ import annotations

import torch

from ..toy.masking import select_or_zero
from .masking import masked_mean
from .validate import check_number, check_token_batch

__all__ = ["ppo_policy_loss", "ppo_value_loss", "clip_fraction"]


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """Masked mean over tokens of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)); all inputs (B, T). Returns a 0-dim tensor."""
    m = check_token_batch(mask, logp=logp, old_logp=old_logp, advantages=advantages)
    clip_eps = check_number("clip_eps", clip_eps, low=0.0, low_open=True)
    # select every input *before* any arithmetic, so NaN under mask 0 reaches neither value nor gradient
    logp, old_logp, advantages = (select_or_zero(x, m) for x in (logp, old_logp, advantages))
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    return masked_mean(torch.maximum(unclipped, clipped), m)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """½ masked mean of max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²); inputs (B, T)."""
    m = check_token_batch(mask, values=values, old_values=old_values, returns=returns)
    clip_eps = check_number("clip_eps", clip_eps, low=0.0, low_open=True)
    values, old_values, returns = (select_or_zero(x, m) for x in (values, old_values, returns))
    clipped = torch.maximum(torch.minimum(values, old_values + clip_eps), old_values - clip_eps)
    loss = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, m)


@torch.no_grad()
def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                  clip_eps: float = 0.2) -> torch.Tensor:
    """Fraction of masked tokens whose ratio lies outside [1 − ε, 1 + ε] (a diagnostic, 0-dim).

    A NaN log-prob under mask 1 makes the fraction NaN: its ratio is neither inside nor outside.
    """
    m = check_token_batch(mask, logp=logp, old_logp=old_logp)
    clip_eps = check_number("clip_eps", clip_eps, low=0.0, low_open=True)
    logp, old_logp = select_or_zero(logp, m), select_or_zero(old_logp, m)
    distance = (torch.exp(logp - old_logp) - 1).abs()
    outside = torch.where(distance.isnan(), distance, (distance > clip_eps).to(distance.dtype))
    return masked_mean(outside, m)
