"""Exercises of notebook 05 (DPO): the DPO loss (worked) and IPO (graded)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ._inputs import LN2, four_logps as _four_logps, t64 as _t
from ..rlhf.dpo import dpo_loss as _dpo_ref, ipo_loss as _ipo_ref

__all__ = ["dpo_loss", "ipo_loss"]


def _dpo_reference(pc, pr, rc, rr, beta):
    return _dpo_ref(pc, pr, rc, rr, beta=beta)


def _dpo_matches_reference(fn):
    for beta in (0.1, 2.0):
        matches_reference(_dpo_reference, lambda seed, beta=beta: _four_logps(seed) + (beta,))(fn)


# ------------------------------------------------------------------ DPO (notebook 05)

def _dpo_ln2_at_reference(fn):
    pc, pr, _, _ = _four_logps(7)
    assert_close(fn(pc, pr, pc.clone(), pr.clone(), 0.1), LN2, "loss at π = π_ref (should be ln 2)")


def _dpo_hand_value(fn):
    # margin = (−1 − −1.5) − (−2 − −1.5) = 1  ->  −log σ(β·1) with β = 0.5
    assert_close(fn(_t(-1.0), _t(-2.0), _t(-1.5), _t(-1.5), 0.5), math.log1p(math.exp(-0.5)),
                 "dpo_loss(−1, −2, −1.5, −1.5, β=0.5)")


def _dpo_stable(fn):
    # margins +200 and −200 with β = 1 in float32: −log σ(200) ≈ 0, −log σ(−200) = 200
    pc = torch.tensor([200.0, 0.0], dtype=torch.float32)
    zero = torch.zeros(2, dtype=torch.float32)
    got = fn(pc, torch.tensor([0.0, 200.0], dtype=torch.float32), zero.clone(), zero.clone(), 1.0)
    if not bool(torch.isfinite(torch.as_tensor(got)).all()):
        raise AssertionError(f"the loss at margins ±200 (float32) must be finite, got {float(got)}: "
                             "use F.logsigmoid, not log(sigmoid(·))")
    assert_close(got, 100.0, "mean DPO loss for margins +200 and −200 (β = 1, float32)", rtol=1e-4)


def _dpo_wrong_naive_log_sigmoid(pc, pr, rc, rr, beta):
    return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()


def _dpo_wrong_no_reference(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - pr)).mean()


def _dpo_wrong_sign(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean()


def _dpo_wrong_no_beta(pc, pr, rc, rr, beta):
    return -F.logsigmoid((pc - rc) - (pr - rr)).mean()


def _dpo_wrong_sum(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()


dpo_loss = Exercise(
    name="dpo_loss",
    reference=_dpo_reference,
    properties=[
        ("the loss is ln 2 when the policy equals the reference", _dpo_ln2_at_reference),
        ("a single pair with margin 1 and β = 0.5 gives −log σ(0.5)", _dpo_hand_value),
        ("it matches teachkit.rlhf.dpo_loss on random pairs (β = 0.1 and β = 2)", _dpo_matches_reference),
        ("it stays finite for margins of ±200 in float32 (−log σ(−200) = 200)", _dpo_stable),
    ],
    wrong_answers={"forgets the reference log-probs": _dpo_wrong_no_reference,
                   "prefers the rejected completion (sign flipped)": _dpo_wrong_sign,
                   "ignores β": _dpo_wrong_no_beta,
                   "sums over pairs instead of averaging": _dpo_wrong_sum,
                   "naive −log(sigmoid(·)) overflows": _dpo_wrong_naive_log_sigmoid},
    hints=(
        "the loss is a Bradley–Terry likelihood whose reward is β times the log-ratio to the reference, so each completion's log-prob is measured against the reference's",
        'L = mean over pairs of −log σ(β·[(π_c − ref_c) − (π_r − ref_r)])',
        'margin = (pc - rc) - (pr - rr); return -F.logsigmoid(beta * margin).mean()',
    ),
)


# ------------------------------------------------------------------ IPO (notebook 05, graded)

def _ipo_reference(pc, pr, rc, rr, beta):
    return _ipo_ref(pc, pr, rc, rr, beta=beta)


def _ipo_at_reference(fn):
    pc, pr, _, _ = _four_logps(2)
    for beta in (0.5, 0.1):
        assert_close(fn(pc, pr, pc.clone(), pr.clone(), beta), (1 / (2 * beta)) ** 2,
                     f"loss at π = π_ref (margin h = 0) with β = {beta}")


def _ipo_zero_at_target(fn):
    # β = 0.25: target margin 1/(2β) = 2; chosen up 1.5 nats, rejected down 0.5 nats against the reference
    pc = _t(-1.5).requires_grad_()
    loss = fn(pc, _t(-4.5), _t(-3.0), _t(-4.0), 0.25)
    assert_close(loss.detach(), 0.0, "loss at margin h = 1/(2β) = 2 (β = 0.25)", atol=1e-12)
    loss.backward()
    assert pc.grad is not None, "the loss must be differentiable in the policy log-probs"
    assert_close(pc.grad, torch.zeros(1), "gradient at h = 1/(2β): the target is the minimum, so it must be 0", atol=1e-12)


def _ipo_hand_value(fn):
    # h = (−1 − −2) − (−3 − −1) = 3, β = 0.25: (3 − 2)² = 1 for the first pair; h = 0 gives 4 for the second
    got = fn(_t(-1.0, -2.0), _t(-3.0, -2.0), _t(-2.0, -2.0), _t(-1.0, -2.0), 0.25)
    assert_close(got, (1.0 + 4.0) / 2, "two pairs with margins h = 3 and h = 0, β = 0.25 (mean of squares)")


def _ipo_matches_reference(fn):
    for beta in (0.1, 1.0):
        matches_reference(_ipo_reference, lambda seed, beta=beta: _four_logps(seed) + (beta,))(fn)


def _ipo_wrong_dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def _ipo_wrong_target_beta_half(pc, pr, rc, rr, beta):
    return (((pc - rc) - (pr - rr) - beta / 2) ** 2).mean()


def _ipo_wrong_scaled(pc, pr, rc, rr, beta):
    return ((beta * ((pc - rc) - (pr - rr)) - 0.5) ** 2).mean()


def _ipo_wrong_no_reference(pc, pr, rc, rr, beta):
    return ((pc - pr - 1 / (2 * beta)) ** 2).mean()


def _ipo_wrong_square_of_mean(pc, pr, rc, rr, beta):
    return (((pc - rc) - (pr - rr)).mean() - 1 / (2 * beta)) ** 2


ipo_loss = Exercise(
    name="ipo_loss",
    reference=_ipo_reference,
    properties=[
        ("at π = π_ref (margin 0) the loss is (1/(2β))²: IPO regresses the margin to 1/(2β)", _ipo_at_reference),
        ("the loss and its gradient are 0 at the target margin h = 1/(2β)", _ipo_zero_at_target),
        ("each pair's squared error is averaged over pairs (two pairs by hand)", _ipo_hand_value),
        ("it matches teachkit.rlhf.ipo_loss on random pairs (β = 0.1 and β = 1)", _ipo_matches_reference),
    ],
    wrong_answers={"DPO's −log σ(βh) instead of a squared error": _ipo_wrong_dpo,
                   "target β/2 instead of 1/(2β)": _ipo_wrong_target_beta_half,
                   "(βh − ½)²: the right minimum, but β² times too small": _ipo_wrong_scaled,
                   "forgets the reference log-probs": _ipo_wrong_no_reference,
                   "squares the mean margin instead of averaging the squares": _ipo_wrong_square_of_mean},
    hints=(
        "IPO keeps DPO's margin h (the chosen log-ratio to the reference minus the rejected one) but pulls it "
        "towards a finite target instead of pushing it up for ever; the target is where the loss is smallest",
        "L = mean over pairs of (h − 1/(2β))², h = (π_c − ref_c) − (π_r − ref_r)",
        "h = (pc - rc) - (pr - rr); return ((h - 1 / (2 * beta)) ** 2).mean()",
    ),
)
