"""Exercises of notebook 03 (ReMax): the REINFORCE loss and the variance-minimising baseline."""

from __future__ import annotations

import torch

from ._core import Exercise, assert_close, matches_reference
from ._inputs import poison as _poison, prefix_mask as _prefix_mask, t32 as _t
from ..rlhf.reinforce import reinforce_loss as _reinforce_ref

__all__ = ["reinforce_loss", "optimal_baseline"]


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
        'L = −Σ_{i,t} A_i · logp_{i,t} / (number of real tokens)',
        '-(adv[:, None] * torch.where(mask.bool(), logp, 0)).sum() / mask.sum()',
    ),
)


# ------------------------------------------------------------------ the variance-minimising baseline (notebook 03, graded)

def _baseline_reference(rewards, score_sq):
    """b* = Σ_i s_i r_i / Σ_i s_i with s_i = ‖∇_θ log π(y_i)‖²: the constant b that minimises Σ_i (r_i − b)² s_i."""
    return (score_sq * rewards).sum() / score_sq.sum()


def _baseline_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10, generator=g, dtype=torch.float64) + 1.0, torch.rand(10, generator=g, dtype=torch.float64) * 4


def _baseline_equal_norms(fn):
    r = _t([1.0, 0.0, 0.0, 3.0]).double()
    assert_close(fn(r, torch.full((4,), 2.5, dtype=torch.float64)), 1.0,
                 "rewards [1, 0, 0, 3] with equal score norms (b* must be the mean reward)")


def _baseline_hand(fn):
    assert_close(fn(_t([1.0, 0.0]).double(), _t([3.0, 1.0]).double()), 0.75,
                 "rewards [1, 0] with ‖∇log π‖² = [3, 1]: (3·1 + 1·0)/(3 + 1)")


def _baseline_is_minimal(fn):
    r, s = _baseline_inputs(4)
    b = float(fn(r.clone(), s.clone()))
    second_moment = lambda c: float(((r - c) ** 2 * s).sum())  # noqa: E731
    for step in (0.05, -0.05):
        if second_moment(b + step) < second_moment(b) - 1e-12:
            raise AssertionError(f"your b = {b:.4f} is not the minimum: b {step:+} gives a smaller "
                                 f"Σ (r − b)²·‖∇log π‖² ({second_moment(b + step):.4f} < {second_moment(b):.4f})")


optimal_baseline = Exercise(
    name="optimal_baseline",
    reference=_baseline_reference,
    properties=[
        ("with equal score norms b* is the mean reward", _baseline_equal_norms),
        ("b* weights each reward by ‖∇log π‖² (two samples by hand)", _baseline_hand),
        ("no nearby constant gives a smaller Σ (r − b)²·‖∇log π‖² (the variance that b controls)", _baseline_is_minimal),
        ("it matches the reference on random samples", matches_reference(_baseline_reference, _baseline_inputs)),
    ],
    wrong_answers={"the mean reward (ignores the score norms)": lambda r, s: r.mean(),
                   "weights by the norm, not its square": lambda r, s: (s.sqrt() * r).sum() / s.sqrt().sum(),
                   "divides by the number of samples, not Σ‖∇log π‖²": lambda r, s: (s * r).sum() / len(r)},
    hints=(
        "a constant baseline b leaves the gradient's mean alone and changes only its second moment, "
        "E[(r − b)²·‖∇log π‖²]; set its derivative in b to zero",
        "b* = E[r·‖∇log π‖²] / E[‖∇log π‖²] = Σ_i s_i r_i / Σ_i s_i, with s_i = ‖∇_θ log π(y_i)‖²",
        "return (score_sq * rewards).sum() / score_sq.sum()",
    ),
)
