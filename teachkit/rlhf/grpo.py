"""The GRPO loss (DeepSeekMath, Shao et al. 2024, arXiv:2402.03300v3, §4.1.1, Eqs. 3–4) and its three
token aggregations.

Per token of completion i (one advantage A_i per completion, broadcast over its tokens):

    ℓ_{i,t} = −min(ρ_{i,t} A_i, clip(ρ_{i,t}, 1−ε, 1+ε) A_i) + β·k3_{i,t},
    ρ = exp(logp − old_logp),   k3 = π_ref/π − log(π_ref/π) − 1   (KL *in the loss*, not the reward).

Aggregation over the (B, T) grid of per-token terms, m the mask and |o_i| = Σ_t m_{i,t}:

    "seq-mean-token-mean"      (1/B) Σ_i (1/|o_i|) Σ_t ℓ_{i,t}     the paper; length-biased
    "token-mean"               Σ_{i,t} ℓ_{i,t} / Σ_i |o_i|          DAPO (arXiv:2503.14476v2, §3.3, Eq. 12)
    "seq-mean-token-sum-norm"  Σ_{i,t} ℓ_{i,t} / (B·T)              Dr. GRPO (arXiv:2503.20783v2, §3.2;
                                                                    T: the generation budget)

Length bias of the paper's form: each token of completion i is weighted 1/|o_i|. A wrong answer
(A < 0) is pushed down less per token the longer it is, so lengthening wrong answers is cheap;
a right answer (A > 0) is pushed up more when it is short.

Why the loss sits near 0: at the first update of a batch ρ = 1, so with β = 0 and equal lengths
the loss is −mean_i(A_i), and group-centred advantages have mean 0. The gradient is not 0.
"""

from __future__ import annotations

import torch

from ..toy.masking import select_or_zero
from .kl import kl_k3
from .masking import masked_mean, masked_sum
from .validate import check_choice, check_number, check_one_per_row, check_token_batch

__all__ = ["grpo_loss", "aggregate_loss", "AGGREGATIONS"]

AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor,
                   aggregation: str = "seq-mean-token-mean") -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a 0-dim tensor by one of ``AGGREGATIONS``; mask-0 entries never count.

    A row whose mask is all 0 counts as a row of 0 loss in the "seq-mean" forms (as in TRL).
    """
    m = check_token_batch(mask, per_token=per_token)
    check_choice("aggregation", aggregation, AGGREGATIONS)
    if aggregation == "seq-mean-token-mean":
        return masked_mean(per_token, m, dim=1).mean()
    if aggregation == "token-mean":
        return masked_mean(per_token, m)
    return masked_sum(per_token, m) / per_token.numel()


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04,
              aggregation: str = "seq-mean-token-mean") -> torch.Tensor:
    """GRPO loss: −min(ρA, clip(ρ)A) + β·k3 per token, aggregated; ``advantages`` is (B,).

    ``ref_logp`` may be None when ``beta == 0`` (no reference model needed).
    """
    check_choice("aggregation", aggregation, AGGREGATIONS)
    clip_eps = check_number("clip_eps", clip_eps, low=0.0, low_open=True)
    beta = check_number("beta", beta, low=0.0)
    if ref_logp is None:
        if beta != 0:
            raise ValueError("ref_logp is None but beta > 0: the KL term needs the reference log-probs "
                             "(pass ref_logp, or set beta=0)")
        ref_logp = logp.detach() if isinstance(logp, torch.Tensor) else logp
    m = check_token_batch(mask, logp=logp, old_logp=old_logp, ref_logp=ref_logp)
    check_one_per_row("advantages", advantages, logp, "logp")
    logp, old_logp, ref_logp = (select_or_zero(x, m) for x in (logp, old_logp, ref_logp))
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    if beta:
        per_token = per_token + beta * kl_k3(logp, ref_logp)
    return aggregate_loss(per_token, m, aggregation)
