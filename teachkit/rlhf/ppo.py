"""PPO's clipped surrogate and clipped value loss (Schulman et al. 2017; TRL's PPO for RLHF).

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

from .masking import check_mask, check_same_shape, check_tensor, masked_mean

__all__ = ["ppo_policy_loss", "ppo_value_loss", "clip_fraction"]


def _select(mask: torch.Tensor, *xs: torch.Tensor) -> list[torch.Tensor]:
    """Zero every input under mask 0 *before* any arithmetic, so NaN there reaches neither value nor gradient."""
    return [torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)) for x in xs]


def _check_eps(clip_eps: float) -> None:
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be positive, got {clip_eps}")


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """Masked mean over tokens of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)); all inputs (B, T). Returns a 0-dim tensor."""
    check_tensor("logp", logp, ndim=2)
    check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages)
    m = check_mask(mask, logp)
    _check_eps(clip_eps)
    logp, old_logp, advantages = _select(m, logp, old_logp, advantages)
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    return masked_mean(torch.maximum(unclipped, clipped), m)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """½ masked mean of max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²); inputs (B, T)."""
    check_tensor("values", values, ndim=2)
    check_same_shape(values=values, old_values=old_values, returns=returns)
    m = check_mask(mask, values)
    _check_eps(clip_eps)
    values, old_values, returns = _select(m, values, old_values, returns)
    clipped = torch.maximum(torch.minimum(values, old_values + clip_eps), old_values - clip_eps)
    loss = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, m)


@torch.no_grad()
def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                  clip_eps: float = 0.2) -> torch.Tensor:
    """Fraction of masked tokens whose ratio lies outside [1 − ε, 1 + ε] (a diagnostic, 0-dim)."""
    check_same_shape(logp=logp, old_logp=old_logp)
    m = check_mask(mask, logp)
    logp, old_logp = _select(m, logp, old_logp)
    outside = (torch.exp(logp - old_logp) - 1).abs() > clip_eps
    return masked_mean(outside.to(logp.dtype), m)
