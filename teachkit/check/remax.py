"""Exercises of notebook 03 (ReMax): the REINFORCE loss and the variance-minimising baseline."""

from __future__ import annotations

import math

import torch

from ._core import Exercise, assert_close, check_output, matches_reference
from ._inputs import poison as _poison, prefix_mask as _prefix_mask, t32 as _t
from ..rlhf.reinforce import reinforce_loss as _reinforce_ref

__all__ = ["reinforce_loss"]


# ------------------------------------------------------------------ REINFORCE (notebook 03)

def _reinforce_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(4, 5, generator=g) * 3, torch.randn(4, generator=g), _prefix_mask(g, 4, 5)


def _reinforce_hand(fn):
    got = fn(_t([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]]), _t([2.0, -1.0]), _t([[1, 1, 0], [1, 0, 0]]))
    assert_close(got, 5.5 / 3, "logp [[−1, −2, _], [−0.5, _, _]], A = [2, −1]")


def _reinforce_nan(fn):
    logp, adv, mask = _reinforce_inputs(6)
    assert_close(fn(_poison(logp, mask), adv, mask), _reinforce_ref(logp, adv, mask), "with NaN under mask 0")


reinforce_loss = Exercise(
    name="reinforce_loss",
    reference=_reinforce_ref,
    properties=[
        ("two sequences computed by hand (−Σ A·logp / number of tokens)", _reinforce_hand),
        ("it matches teachkit.rlhf.reinforce_loss on random batches",
         matches_reference(_reinforce_ref, _reinforce_inputs)),
        ("NaN under mask 0 never leaks", _reinforce_nan),
    ],
    wrong_answers={
        "ascends the loss (sign flipped)": lambda lp, a, m: -_reinforce_ref(lp, a, m),
        "averages per sequence instead of per token":
            lambda lp, a, m: (-(a[:, None] * torch.where(m.bool(), lp, 0)).sum(1) / m.sum(1)).mean(),
        "multiplies by the mask (NaN · 0 = NaN)": lambda lp, a, m: -(a[:, None] * lp * m).sum() / m.sum(),
    },
    hints=(
        'each sequence has one advantage; every one of its tokens is weighted by it, and the loss is a mean over all real tokens',
        'L = −Σ_{b,t} A_b · logp_{b,t} / (number of real tokens)',
        '-(adv[:, None] * torch.where(mask.bool(), logp, 0)).sum() / mask.sum()',
    ),
)
