"""DPO and its one-line cousins: DPOP, IPO, SimPO (off-policy preference optimisation
from fixed pairs; Rafailov et al. arXiv:2305.18290v3, §4, Eq. 7 for the loss).

Public API (a contract; the training loops and the showdown rely on these signatures):

    sequence_logps(token_logps, mask, average=False)                         -> (B,)
    implicit_rewards(pol_c, pol_r, ref_c, ref_r, beta=0.1)                   -> ((B,), (B,))
    dpo_loss (pol_c, pol_r, ref_c, ref_r, beta=0.1)                          -> 0-dim
    dpop_loss(pol_c, pol_r, ref_c, ref_r, beta=0.1, lam=50.0, form="a")      -> 0-dim
    ipo_loss (pol_c, pol_r, ref_c, ref_r, beta=0.1)                          -> 0-dim
    simpo_loss(chosen_mean_logps, rejected_mean_logps, beta=2.0, gamma=0.5)  -> 0-dim

``pol_c`` is ``policy_chosen_logps`` and so on: (B,) *summed* completion log-probs.

From the RLHF objective to the DPO loss
---------------------------------------
The RLHF objective is  max_π  E_{y~π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)).
Its maximiser has a closed form,  π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x),  so the reward
that makes a policy optimal is  r(x, y) = β·log π*(y|x)/π_ref(y|x) + β·log Z(x).
Put that reward into the Bradley–Terry likelihood  P(y_w ≻ y_l) = σ(r_w − r_l):  Z(x) cancels,
and maximum likelihood on preference pairs becomes

    L_DPO = −E log σ( β·[ log π(y_w)/π_ref(y_w) − log π(y_l)/π_ref(y_l) ] ).

The *implicit reward* of a completion is  r̂ = β·log π(y)/π_ref(y).  At π = π_ref every log-ratio
is 0, so the loss is log 2 ≈ 0.6931: a free unit test.

DPOP (Smaug, Pal et al. 2024, arXiv:2402.13228v2, §4, Eq. 3)
-----------------------------------------------------------
DPO constrains only the *difference* of the two log-ratios, so both can fall: on pairs that
differ in one token, the chosen log-prob often drops below the reference while accuracy rises.
DPOP subtracts  λ·max(0, log π_ref(y_w) − log π(y_w))  *inside* the β bracket:

    L_DPOP = −E log σ( β·[ h − λ·max(0, ref_c − π_c) ] ),   h = (π_c − ref_c) − (π_r − ref_r).

The penalty P = max(0, ref_c − π_c) is 0 while the chosen log-prob is at or above the reference
(then DPOP = DPO). Three placements of P circulate (``form``):

    (a)  −log σ(β·[h − λP])        inside β: the form treated as canonical (Eq. 3 as the authors'
                                   revision v2 of 3 July 2024 brackets it, per abacusai/smaug#2)
    (b)  −log σ(β·h − λP)          inside log σ, outside β (one MLX port)
    (c)  −log σ(β·h) + λP          outside log σ, a plain additive term (SamPO, several MLX ports)

Inside the sigmoid, (a) and (b), the penalty's gradient is weighted by σ(−β·z) like DPO's, so it
switches off once the pair is well separated; (c) always pushes. With λ = 50, (b) weighs the
penalty 1/β = 10 times more than (a) does.

IPO (Azar et al. 2023, arXiv:2310.12036v2, §5, Eq. 17) and SimPO (Meng et al. 2024, arXiv:2405.14734v3, §2)
-------------------------------------------------------------------------------------------------------------
IPO regresses the margin h to a finite target,  (h − 1/(2β))²,  which stops DPO's margin from
growing without bound on separable data. SimPO drops the reference and uses length-averaged
log-probs with a target margin γ:  −log σ(β·(ℓ̄_w − ℓ̄_l) − γ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .masking import masked_sum
from .validate import (check_choice, check_floating, check_mask, check_mask_selects, check_not_empty,
                       check_number, check_pair_batch)

__all__ = ["sequence_logps", "implicit_rewards", "dpo_loss", "dpop_loss", "ipo_loss", "simpo_loss", "DPOP_FORMS"]


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """(B, T) per-token log-probs -> (B,) summed (DPO) or length-averaged (ORPO, SimPO) log-probs."""
    check_not_empty("token_logps", check_floating("token_logps", token_logps, ndim=2))
    mask = check_mask_selects(check_mask(mask, token_logps, "token_logps"))
    total = masked_sum(token_logps, mask, dim=-1)
    if not average:
        return total
    lengths = mask.sum(dim=-1)
    if torch.any(lengths == 0):
        raise ValueError("mask: a completion has an all-zero mask row, so its average log-prob is undefined; "
                         "every completion needs at least one token")
    return total / lengths.to(total.dtype)


def implicit_rewards(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                     ref_rejected_logps, beta: float = 0.1):
    """DPO's implicit rewards  r̂ = β·log π(y)/π_ref(y)  for chosen and rejected: two (B,) tensors."""
    check_pair_batch(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    beta = check_number("beta", beta, low=0.0, low_open=True)
    return (beta * (policy_chosen_logps - ref_chosen_logps),
            beta * (policy_rejected_logps - ref_rejected_logps))


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> torch.Tensor:
    """Mean over pairs of  −log σ(β[(π_c − ref_c) − (π_r − ref_r)]).  Inputs (B,), returns 0-dim."""
    check_pair_batch(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    beta = check_number("beta", beta, low=0.0, low_open=True)
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * margin).mean()


DPOP_FORMS = ("a", "b", "c")


def dpop_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
              beta: float = 0.1, lam: float = 50.0, form: str = "a") -> torch.Tensor:
    """DPO-Positive, averaged over pairs. With P = max(0, ref_c − π_c) and h the DPO margin:

    form "a" (default):  −log σ(β·[h − λP]);   "b":  −log σ(β·h − λP);   "c":  −log σ(β·h) + λP.
    """
    check_pair_batch(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    beta = check_number("beta", beta, low=0.0, low_open=True)
    lam = check_number("lam", lam, low=0.0)
    check_choice("form", form, DPOP_FORMS)
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    penalty = torch.clamp(ref_chosen_logps - policy_chosen_logps, min=0.0)
    if form == "a":
        return -F.logsigmoid(beta * (margin - lam * penalty)).mean()
    if form == "b":
        return -F.logsigmoid(beta * margin - lam * penalty).mean()
    return (-F.logsigmoid(beta * margin) + lam * penalty).mean()


def ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> torch.Tensor:
    """IPO:  mean of (h − 1/(2β))²  with h the DPO log-ratio margin. The margin settles at 1/(2β)."""
    check_pair_batch(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                     ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    beta = check_number("beta", beta, low=0.0, low_open=True)
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return ((margin - 1.0 / (2.0 * beta)) ** 2).mean()


def simpo_loss(chosen_mean_logps, rejected_mean_logps, beta: float = 2.0, gamma: float = 0.5) -> torch.Tensor:
    """SimPO:  −log σ(β·(ℓ̄_w − ℓ̄_l) − γ)  on length-averaged log-probs; no reference model."""
    check_pair_batch(chosen_mean_logps=chosen_mean_logps, rejected_mean_logps=rejected_mean_logps)
    beta = check_number("beta", beta, low=0.0, low_open=True)
    gamma = check_number("gamma", gamma, low=0.0)
    return -F.logsigmoid(beta * (chosen_mean_logps - rejected_mean_logps) - gamma).mean()
