"""The GRPO loss (DeepSeekMath, Shao et al. 2024) and its three token aggregations.

Per token of completion i (one advantage A_i per completion, broadcast over its tokens):

    ℓ_{i,t} = −min(ρ_{i,t} A_i, clip(ρ_{i,t}, 1−ε, 1+ε) A_i) + β·k3_{i,t},
    ρ = exp(logp − old_logp),   k3 = π_ref/π − log(π_ref/π) − 1   (KL *in the loss*, not the reward).

Aggregation over the (B, T) grid of per-token terms, m the mask and |o_i| = Σ_t m_{i,t}:

    "seq-mean-token-mean"      (1/B) Σ_i (1/|o_i|) Σ_t ℓ_{i,t}     the paper; length-biased
    "token-mean"               Σ_{i,t} ℓ_{i,t} / Σ_i |o_i|          DAPO
    "seq-mean-token-sum-norm"  Σ_{i,t} ℓ_{i,t} / (B·T)              Dr. GRPO (T: the generation budget)

Length bias of the paper's form: each token of completion i is weighted 1/|o_i|. A wrong answer
(A < 0) is pushed down less per token the longer it is, so lengthening wrong answers is cheap;
a right answer (A > 0) is pushed up more when it is short.

Why the loss sits near 0: at the first update of a batch ρ = 1, so with β = 0 and equal lengths
the loss is −mean_i(A_i), and group-centred advantages have mean 0. The gradient is not 0.
"""

from __future__ import annotations

import torch

from .kl import kl_k3
from .masking import check_mask, check_same_shape, check_tensor, masked_mean, masked_sum

__all__ = ["grpo_loss", "aggregate_loss", "AGGREGATIONS"]

AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor,
                   aggregation: str = "seq-mean-token-mean") -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a 0-dim tensor by one of ``AGGREGATIONS``; mask-0 entries never count."""
    check_tensor("per_token", per_token, ndim=2)
    m = check_mask(mask, per_token)
    if aggregation == "seq-mean-token-mean":
        return masked_mean(per_token, m, dim=1).mean()
    if aggregation == "token-mean":
        return masked_mean(per_token, m)
    if aggregation == "seq-mean-token-sum-norm":
        return masked_sum(per_token, m) / per_token.numel()
    raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04,
              aggregation: str = "seq-mean-token-mean") -> torch.Tensor:
    """GRPO loss: −min(ρA, clip(ρ)A) + β·k3 per token, aggregated; ``advantages`` is (B,).

    ``ref_logp`` may be None when ``beta == 0`` (no reference model needed).
    """
    check_tensor("logp", logp, ndim=2)
    check_tensor("advantages", advantages, ndim=1)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be positive, got {clip_eps}")
    if not beta >= 0:
        raise ValueError(f"beta must be ≥ 0, got {beta}")
    if ref_logp is None:
        if beta != 0:
            raise ValueError("ref_logp is None but beta > 0: the KL term needs the reference log-probs")
        ref_logp = logp.detach()
    check_same_shape(logp=logp, old_logp=old_logp, ref_logp=ref_logp)
    if advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must hold one value per completion: logp{tuple(logp.shape)} has "
                         f"{logp.shape[0]} rows but advantages{tuple(advantages.shape)} has {advantages.shape[0]}")
    m = check_mask(mask, logp)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp, old_logp, ref_logp = (torch.where(m, x, zero) for x in (logp, old_logp, ref_logp))
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    if beta:
        per_token = per_token + beta * kl_k3(logp, ref_logp)
    return aggregate_loss(per_token, m, aggregation)
