"""Exercises of notebook 05 (DPO): the DPO loss (worked) and IPO (graded)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ._inputs import LN2, four_logps as _four_logps, t64 as _t
from ..rlhf.dpo import dpo_loss as _dpo_ref

__all__ = ["dpo_loss"]


def _dpo_reference(pc, pr, rc, rr, beta):
    return _dpo_ref(pc, pr, rc, rr, beta=beta)


def _dpo_matches_reference(fn):
    for beta in (0.1, 2.0):
        matches_reference(_dpo_reference, lambda seed: _four_logps(seed) + (beta,))(fn)


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
