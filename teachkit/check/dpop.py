"""Exercises of notebook 06 (DPOP): the sequence-level penalty (worked) and a per-token one (graded)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ._inputs import four_logps as _four_logps, t64 as _t
from ..rlhf.dpo import dpo_loss as _dpo_ref, dpop_loss as _dpop_ref

__all__ = ["dpop_loss", "dpop_token_loss"]


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


# ------------------------------------------------------------------ DPOP, per token (notebook 06, graded)

def _dpop_token_reference(pol_c, pol_r, ref_c, ref_r, mask_c, mask_r, beta, lam):
    """Per-token log-probs (B, T); the hinge is applied to each chosen token, then summed."""
    keep_c, keep_r = mask_c.bool(), mask_r.bool()
    zero = torch.zeros((), dtype=pol_c.dtype)
    ratio_c = torch.where(keep_c, pol_c, zero) - torch.where(keep_c, ref_c, zero)
    ratio_r = torch.where(keep_r, pol_r, zero) - torch.where(keep_r, ref_r, zero)
    margin = ratio_c.sum(-1) - ratio_r.sum(-1)
    penalty = torch.clamp(-ratio_c, min=0.0).sum(-1)
    return -F.logsigmoid(beta * (margin - lam * penalty)).mean()


def _token_batch(seed):
    g = torch.Generator().manual_seed(seed)
    lengths_c, lengths_r = torch.randint(1, 6, (4,), generator=g), torch.randint(1, 6, (4,), generator=g)
    mask_c = (torch.arange(5)[None] < lengths_c[:, None]).double()
    mask_r = (torch.arange(5)[None] < lengths_r[:, None]).double()
    ref_c, ref_r = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 3, -torch.rand(4, 5, generator=g, dtype=torch.float64) * 3
    pol_c = ref_c + 0.3 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    pol_r = ref_r + 0.3 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    return pol_c, pol_r, ref_c, ref_r, mask_c, mask_r


def _tok_is_dpo_above_reference(fn):
    pol_c, pol_r, ref_c, ref_r, mask_c, mask_r = _token_batch(1)
    ref_c = pol_c - 0.1                       # every chosen token above its reference
    want = _dpo_ref((pol_c * mask_c).sum(-1), (pol_r * mask_r).sum(-1), (ref_c * mask_c).sum(-1),
                    (ref_r * mask_r).sum(-1), beta=0.1)
    assert_close(fn(pol_c, pol_r, ref_c, ref_r, mask_c, mask_r, 0.1, 5.0), want,
                 "with every chosen token above its reference (should equal DPO on the summed log-probs)")


def _tok_hinge_per_token(fn):
    # chosen tokens +1 and −0.5 against the reference: the sum (+0.5) is above, one token is below
    # margin = 0.5 − 0 ; penalty = 0.5 ; z = 0.5 − 2·0.5 = −0.5 ; −log σ(1·(−0.5))
    one = torch.ones(1, 2, dtype=torch.float64)
    got = fn(_t(-1.0, -2.5)[None], _t(-1.0, -1.0)[None], _t(-2.0, -2.0)[None], _t(-1.0, -1.0)[None], one, one, 1.0, 2.0)
    assert_close(got, math.log1p(math.exp(0.5)),
                 "chosen tokens +1 and −0.5 against the reference (sum +0.5), λ = 2, β = 1: one token is below, "
                 "so the penalty is 0.5 (a sum of hinges, not a hinge of the sum)")


def _tok_rejected_free(fn):
    # the rejected tokens fall far below their reference: that is what DPO wants, no penalty
    one = torch.ones(1, 2, dtype=torch.float64)
    got = fn(_t(-1.0, -1.0)[None], _t(-5.0, -5.0)[None], _t(-1.0, -1.0)[None], _t(-1.0, -1.0)[None], one, one, 0.5, 5.0)
    assert_close(got, math.log1p(math.exp(-0.5 * 8.0)), "rejected tokens 4 nats below their reference (no penalty)")


def _tok_nan_padding(fn):
    pol_c, pol_r, ref_c, ref_r, mask_c, mask_r = _token_batch(3)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    dirty = [torch.where(m.bool(), x, nan) for x, m in ((pol_c, mask_c), (pol_r, mask_r), (ref_c, mask_c), (ref_r, mask_r))]
    assert_close(fn(*dirty, mask_c, mask_r, 0.1, 5.0),
                 _dpop_token_reference(pol_c, pol_r, ref_c, ref_r, mask_c, mask_r, 0.1, 5.0), "with NaN under mask 0")


def _tok_wrong_sequence_hinge(pc, pr, rc, rr, mc, mr, beta, lam):
    keep_c, keep_r = mc.bool(), mr.bool()
    sc = torch.where(keep_c, pc - rc, 0).sum(-1)
    sr = torch.where(keep_r, pr - rr, 0).sum(-1)
    return -F.logsigmoid(beta * (sc - sr - lam * torch.clamp(-sc, min=0))).mean()


def _tok_wrong_penalises_rejected(pc, pr, rc, rr, mc, mr, beta, lam):
    keep_c, keep_r = mc.bool(), mr.bool()
    dc, dr = torch.where(keep_c, pc - rc, 0), torch.where(keep_r, pr - rr, 0)
    penalty = torch.clamp(-dc, min=0).sum(-1) + torch.clamp(-dr, min=0).sum(-1)
    return -F.logsigmoid(beta * (dc.sum(-1) - dr.sum(-1) - lam * penalty)).mean()


def _tok_wrong_multiply(pc, pr, rc, rr, mc, mr, beta, lam):
    dc, dr = (pc - rc) * mc, (pr - rr) * mr
    return -F.logsigmoid(beta * (dc.sum(-1) - dr.sum(-1) - lam * torch.clamp(-dc, min=0).sum(-1))).mean()


def _tok_wrong_mean_penalty(pc, pr, rc, rr, mc, mr, beta, lam):
    keep_c, keep_r = mc.bool(), mr.bool()
    dc, dr = torch.where(keep_c, pc - rc, 0), torch.where(keep_r, pr - rr, 0)
    penalty = torch.clamp(-dc, min=0).sum(-1) / mc.sum(-1)
    return -F.logsigmoid(beta * (dc.sum(-1) - dr.sum(-1) - lam * penalty)).mean()


dpop_token_loss = Exercise(
    name="dpop_token_loss",
    reference=_dpop_token_reference,
    properties=[
        ("with every chosen token above its reference it equals DPO on the summed log-probs", _tok_is_dpo_above_reference),
        ("each chosen token below its reference is penalised, even when the sequence's sum is above",
         _tok_hinge_per_token),
        ("the rejected tokens are never penalised", _tok_rejected_free),
        ("it matches the reference on random batches of different lengths",
         matches_reference(_dpop_token_reference, lambda s: _token_batch(s) + (0.1, 5.0))),
        ("NaN under mask 0 never leaks", _tok_nan_padding),
    ],
    wrong_answers={"hinge of the summed log-ratio (the sequence-level penalty)": _tok_wrong_sequence_hinge,
                   "penalises the rejected tokens too": _tok_wrong_penalises_rejected,
                   "multiplies by the mask (NaN · 0 = NaN)": _tok_wrong_multiply,
                   "averages the penalty over tokens instead of summing": _tok_wrong_mean_penalty},
    hints=(
        "sum the per-token log-ratios for DPO's margin, but apply the hinge max(0, ·) to each chosen token "
        "before summing: a token that fell is not excused by one that rose",
        "h = Σ_t (π_c − ref_c) − Σ_t (π_r − ref_r); P = Σ_t max(0, ref_c,t − π_c,t) over real chosen tokens; "
        "L = mean of −log σ(β·(h − λP))",
        "dc = torch.where(mask_c.bool(), pol_c - ref_c, 0); dr likewise; "
        "penalty = dc.neg().clamp(min=0).sum(-1); -F.logsigmoid(beta * (dc.sum(-1) - dr.sum(-1) - lam * penalty)).mean()",
    ),
)
