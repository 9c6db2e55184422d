"""TDPO: token-level DPO with a sequential KL (Zeng et al., ICML 2024,
arXiv:2404.11999v5, §4).

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

from ..toy.masking import select_or_zero
from .validate import (check_choice, check_floating, check_mask, check_mask_selects, check_not_empty,
                       check_number, check_pair_batch, check_same_shape)

__all__ = ["sequential_kl", "tdpo_loss", "tdpo_rewards"]


def sequential_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t mask_t · KL(π_ref(·|t) ‖ π_θ(·|t)) over the full vocabulary. Logits (B, T, V), mask (B, T).

    Positions where the mask is 0 are replaced *before* any arithmetic, so padding logits (even NaN
    or inf) change neither the value nor the gradient. Gradients flow into ``policy_logits`` only
    through the KL, and into ``ref_logits`` if that tensor requires grad (usually it does not).
    """
    check_floating("policy_logits", policy_logits, ndim=3)
    check_floating("ref_logits", ref_logits, ndim=3)
    check_same_shape(policy_logits=policy_logits, ref_logits=ref_logits)
    check_not_empty("policy_logits", policy_logits)
    keep = check_mask_selects(check_mask(mask, policy_logits.shape[:2], "the logits' (B, T)"))[..., None]
    pol_logp = F.log_softmax(select_or_zero(policy_logits, keep), dim=-1)
    ref_logp = F.log_softmax(select_or_zero(ref_logits, keep), dim=-1)
    ref_p = ref_logp.exp()
    # 0·log 0 = 0: tokens the reference never emits contribute nothing. Test ref_p == 0, not
    # ref_p > 0, so a NaN in a kept position stays NaN instead of being dropped as "never emitted".
    per_token = torch.where(ref_p == 0, torch.zeros((), dtype=ref_p.dtype, device=ref_p.device),
                            ref_p * (ref_logp - pol_logp))
    per_position = per_token.sum(dim=-1)                           # (B, T)
    return select_or_zero(per_position, keep[..., 0]).sum(dim=-1)


def tdpo_loss(chosen_logratios, rejected_logratios, chosen_seq_kl, rejected_seq_kl,
              beta: float = 0.1, alpha: float = 0.5, variant: int = 2) -> torch.Tensor:
    """TDPO1 or TDPO2 loss, averaged over pairs. All inputs (B,); logratios are summed (π − π_ref)."""
    check_pair_batch(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
                     chosen_seq_kl=chosen_seq_kl, rejected_seq_kl=rejected_seq_kl)
    check_choice("variant", variant, (1, 2))
    beta = check_number("beta", beta, low=0.0, low_open=True)
    alpha = check_number("alpha", alpha, low=0.0)
    margin = chosen_logratios - rejected_logratios
    if variant == 1:
        z = margin - (rejected_seq_kl - chosen_seq_kl)
    else:
        z = margin - alpha * (rejected_seq_kl - chosen_seq_kl.detach())
    return -F.logsigmoid(beta * z).mean()


def tdpo_rewards(chosen_logratios, rejected_logratios, chosen_seq_kl, rejected_seq_kl, beta: float = 0.1):
    """TDPO's implicit rewards  β·(logratio + SeqKL)  for chosen and rejected (detached), as in the paper's code."""
    check_pair_batch(chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
                     chosen_seq_kl=chosen_seq_kl, rejected_seq_kl=rejected_seq_kl)
    beta = check_number("beta", beta, low=0.0, low_open=True)
    return ((beta * (chosen_logratios + chosen_seq_kl)).detach(),
            (beta * (rejected_logratios + rejected_seq_kl)).detach())
