"""Exercises of notebook 06 (DPOP): the sequence-level penalty (worked) and a per-token one (graded)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ._inputs import LN2, four_logps as _four_logps, t64 as _t
from ..rlhf.dpo import dpo_loss as _dpo_ref, dpop_loss as _dpop_ref

__all__ = ["dpop_loss"]


# ------------------------------------------------------------------ DPOP (notebook 06)

def _dpop_is_dpo_above_reference(fn):
    pc, pr, rc, rr = _four_logps(3)
    rc = pc - 0.25
    assert_close(fn(pc, pr, rc, rr, 0.1, 50.0), _dpo_ref(pc, pr, rc, rr, beta=0.1),
                 "with every chosen log-prob above its reference (should equal DPO)")


def _dpop_penalty_inside_beta(fn):
    # chosen 1 nat below its reference: margin 1, penalty 1, λ = 50: −log σ(0.1·(1 − 50))
    assert_close(fn(_t(-2.0), _t(-3.0), _t(-1.0), _t(-1.0), 0.1, 50.0), math.log1p(math.exp(4.9)),
                 "dpop_loss(−2, −3, −1, −1, β=0.1, λ=50) (penalty inside the β bracket)")


def _dpop_pushes_chosen_up(fn):
    # chosen 0.5 nat below its reference: the penalty must add to the gradient on π_c (not just the value)
    args = [_t(-2.0, -4.0), _t(-3.0, -5.0), _t(-1.5, -3.5), _t(-3.0, -5.0)]
    grads = []
    for loss_fn in (fn, lambda *a: _dpo_ref(*a[:4], beta=a[4])):
        pc = args[0].clone().requires_grad_()
        loss_fn(pc, *(a.clone() for a in args[1:]), 0.1, 5.0).backward()
        if pc.grad is None:
            raise AssertionError("no gradient reached the chosen log-probs (did you detach the penalty?)")
        grads.append(pc.grad.abs())
    if not bool((grads[0] > 1.5 * grads[1]).all()):
        raise AssertionError(f"with the chosen log-prob below the reference, |∂loss/∂π_c| should exceed DPO's "
                             f"({grads[1].tolist()}), got {grads[0].tolist()}: the penalty must carry a gradient")


def _dpop_inputs(seed):
    return _four_logps(seed) + (0.1, 5.0)


def _dpop_reference(pc, pr, rc, rr, beta, lam):
    return _dpop_ref(pc, pr, rc, rr, beta=beta, lam=lam)


def _dpop_wrong_outside_beta(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return -F.logsigmoid(beta * margin - lam * torch.clamp(rc - pc, min=0)).mean()


def _dpop_wrong_additive(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return (-F.logsigmoid(beta * margin) + lam * torch.clamp(rc - pc, min=0)).mean()


def _dpop_wrong_detached_penalty(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return -F.logsigmoid(beta * (margin - lam * torch.clamp(rc - pc, min=0).detach())).mean()


def _dpop_wrong_penalty_sign(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return -F.logsigmoid(beta * (margin - lam * torch.clamp(pc - rc, min=0))).mean()


dpop_loss = Exercise(
    name="dpop_loss",
    reference=_dpop_reference,
    properties=[
        ("DPOP equals DPO while the chosen log-prob is above the reference", _dpop_is_dpo_above_reference),
        ("the penalty λ·max(0, ref_c − π_c) sits inside the β bracket", _dpop_penalty_inside_beta),
        ("it matches teachkit.rlhf.dpop_loss on random pairs",
         matches_reference(_dpop_reference, _dpop_inputs)),
        ("below the reference the penalty raises |∂loss/∂π_c| above DPO's (it carries a gradient)",
         _dpop_pushes_chosen_up),
    ],
    wrong_answers={"penalty outside β (inside log σ)": _dpop_wrong_outside_beta,
                   "penalty added outside log σ": _dpop_wrong_additive,
                   "penalises the chosen log-prob for rising": _dpop_wrong_penalty_sign,
                   "detaches the penalty (right value, no gradient)": _dpop_wrong_detached_penalty},
    hints=(
        'DPOP is DPO plus a penalty that switches on only when the chosen log-prob falls below the reference, placed inside the β bracket',
        'L = mean of −log σ(β·[h − λ·max(0, ref_c − π_c)]), h the DPO margin',
        'penalty = torch.clamp(rc - pc, min=0); -F.logsigmoid(beta * (margin - lam * penalty)).mean()',
    ),
)
