"""TDPO: token-level DPO with a sequential KL (Zeng et al., ICML 2024; issue 5).

Public API (a contract):

    sequential_kl(policy_logits, ref_logits, mask)                         -> (B,)
    tdpo_loss(chosen_logratios, rejected_logratios, chosen_seq_kl,
              rejected_seq_kl, beta=0.1, alpha=0.5, variant=2)             -> 0-dim

The token-level view
--------------------
A completion is a sequence of decisions. At each position t the policy picks a token from a
distribution π_θ(·|x, y_<t) over the whole vocabulary, and the reference has its own π_ref(·|x, y_<t).
TDPO measures how far the policy has moved *at every position*, over the full vocabulary, not just
on the token that was written:

    SeqKL(x, y) = Σ_t  KL( π_ref(·|x, y_<t) ‖ π_θ(·|x, y_<t) )
                = Σ_t  Σ_v  π_ref(v|·) · (log π_ref(v|·) − log π_θ(v|·)).

Writing the token-level RLHF objective and solving it as DPO does gives a Bradley–Terry model
whose margin has an extra term: the difference of the sequential KLs of the two completions.
With the summed log-ratios  m = Σ_t log π_θ(y_t)/π_ref(y_t)  (exactly DPO's):

    TDPO1:  z = (m_w − m_l) − (SeqKL_l − SeqKL_w)
    TDPO2:  z = (m_w − m_l) − α·(SeqKL_l − sg[SeqKL_w])          (sg = stop-gradient)
    loss  = −log σ(β·z),  averaged over pairs.

DPO pushes the rejected completion away without limit, and the sequential KL on the rejected side
grows fastest. TDPO's extra term charges for that growth; TDPO2 stops the gradient through the
chosen-side KL so only the rejected side is held back, and α sets how hard. With α = 0 TDPO2 is
DPO, and so is TDPO1 at π = π_ref (both KLs are 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dpo import _check_logps
from .masking import check_mask, check_same_shape, check_tensor

__all__ = ["sequential_kl", "tdpo_loss", "tdpo_rewards"]


def sequential_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t mask_t · KL(π_ref(·|t) ‖ π_θ(·|t)) over the full vocabulary. Logits (B, T, V), mask (B, T).

    Positions where the mask is 0 are replaced *before* any arithmetic, so padding logits (even NaN
    or inf) change neither the value nor the gradient. Gradients flow into ``policy_logits`` only
    through the KL, and into ``ref_logits`` if that tensor requires grad (usually it does not).
    """
    check_tensor("policy_logits", policy_logits, ndim=3)
    check_tensor("ref_logits", ref_logits, ndim=3)
    check_same_shape(policy_logits=policy_logits, ref_logits=ref_logits)
    if not policy_logits.is_floating_point() or not ref_logits.is_floating_point():
        raise TypeError("policy_logits and ref_logits must be floating-point tensors")
    check_tensor("mask", mask, ndim=2)
    if tuple(mask.shape) != tuple(policy_logits.shape[:2]):
        raise ValueError(f"mask must be (B, T) = {tuple(policy_logits.shape[:2])} to match the logits "
                         f"(B, T, V) = {tuple(policy_logits.shape)}, got mask{tuple(mask.shape)}")
    keep = check_mask(mask, mask)[..., None]                       # (B, T, 1) bool
    zero = torch.zeros((), dtype=policy_logits.dtype, device=policy_logits.device)
    pol_logp = F.log_softmax(torch.where(keep, policy_logits, zero), dim=-1)
    ref_logp = F.log_softmax(torch.where(keep, ref_logits, zero), dim=-1)
    ref_p = ref_logp.exp()
    # 0·log 0 = 0: tokens the reference never emits contribute nothing (and no NaN).
    per_token = torch.where(ref_p > 0, ref_p * (ref_logp - pol_logp), zero)
    per_position = per_token.sum(dim=-1)                           # (B, T)
    return torch.where(keep[..., 0], per_position, zero).sum(dim=-1)


def tdpo_loss(chosen_logratios, rejected_logratios, chosen_seq_kl, rejected_seq_kl,
              beta: float = 0.1, alpha: float = 0.5, variant: int = 2) -> torch.Tensor:
    """TDPO1 or TDPO2 loss, averaged over pairs. All inputs (B,); logratios are summed (π − π_ref)."""
    _check_logps(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
                 chosen_seq_kl=chosen_seq_kl, rejected_seq_kl=rejected_seq_kl)
    if variant not in (1, 2) or isinstance(variant, bool):
        raise ValueError(f"variant must be 1 (TDPO1) or 2 (TDPO2), got {variant!r}")
    if not isinstance(beta, (int, float)) or beta <= 0:
        raise ValueError(f"beta must be a number > 0, got {beta!r}")
    if not isinstance(alpha, (int, float)) or alpha < 0:
        raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
    margin = chosen_logratios - rejected_logratios
    if variant == 1:
        z = margin - (rejected_seq_kl - chosen_seq_kl)
    else:
        z = margin - alpha * (rejected_seq_kl - chosen_seq_kl.detach())
    return -F.logsigmoid(beta * z).mean()


def tdpo_rewards(chosen_logratios, rejected_logratios, chosen_seq_kl, rejected_seq_kl, beta: float = 0.1):
    """TDPO's implicit rewards  β·(logratio + SeqKL)  for chosen and rejected (detached), as in the paper's code."""
    _check_logps(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
                 chosen_seq_kl=chosen_seq_kl, rejected_seq_kl=rejected_seq_kl)
    return ((beta * (chosen_logratios + chosen_seq_kl)).detach(),
            (beta * (rejected_logratios + rejected_seq_kl)).detach())
