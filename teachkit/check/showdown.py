"""Exercises of notebook 09: the DPO gradient weight and the reward–KL frontier."""

from __future__ import annotations

import numpy as np
import torch

from ._core import Exercise, assert_close, matches_reference

__all__ = ["dpo_gradient_weight", "frontier_mask"]


# --------------------------------------------------------------------------- DPO gradient weight


def _weight_reference(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """−dL/dh of L = −log σ(β h): β·σ(−β h), elementwise on a tensor of log-ratio margins h."""
    return beta * torch.sigmoid(-beta * margin)


def _weight_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(16, generator=g, dtype=torch.float64) * 20, [0.1, 0.5, 2.0][seed % 3])


def _weight_is_beta_over_two_at_zero(fn):
    for beta in (0.1, 1.0):
        assert_close(fn(torch.zeros(3, dtype=torch.float64), beta), torch.full((3,), beta / 2),
                     f"the weight at margin 0 with β = {beta} (σ(0) = 1/2)")


def _weight_is_autograd_of_dpo_loss(fn):
    h = torch.linspace(-30, 30, 13, dtype=torch.float64, requires_grad=True)
    beta = 0.3
    loss = -torch.nn.functional.logsigmoid(beta * h).sum()
    (grad,) = torch.autograd.grad(loss, h)
    assert_close(fn(h.detach(), beta), -grad, "compared with −dL/dh from autograd")


def _weight_finite_at_huge_margins(fn):
    out = fn(torch.tensor([-1e4, 1e4], dtype=torch.float64), 1.0)
    assert torch.all(torch.isfinite(torch.as_tensor(out))), "the weight must stay finite for |h| = 1e4"


dpo_gradient_weight = Exercise(
    name="dpo_gradient_weight",
    reference=_weight_reference,
    properties=[
        ("at margin 0 the weight is β/2", _weight_is_beta_over_two_at_zero),
        ("the weight is −dL/dh of the DPO loss −log σ(β h)", _weight_is_autograd_of_dpo_loss),
        ("it matches the reference on random margins", matches_reference(_weight_reference, _weight_inputs)),
        ("it is finite for huge margins", _weight_finite_at_huge_margins),
    ],
    wrong_answers={
        "forgets the factor β": lambda h, beta: torch.sigmoid(-beta * h),
        "wrong sign inside σ": lambda h, beta: beta * torch.sigmoid(beta * h),
        "forgets β inside σ": lambda h, beta: beta * torch.sigmoid(-h),
    },
    hints=(
        'the weight is how hard one pair pushes: minus the derivative of the DPO loss with respect to its margin',
        'd/dh [−log σ(βh)] = −β·σ(−βh), so the weight is β·σ(−βh)',
        'beta * torch.sigmoid(-beta * margin)',
    ),
)


# --------------------------------------------------------------------------- reward–KL frontier


def _frontier_reference(kl, reward) -> np.ndarray:
    """True where no other run has KL ≤ and reward ≥ with at least one strict (not dominated)."""
    kl, reward = np.asarray(kl, dtype=float), np.asarray(reward, dtype=float)
    if kl.shape != reward.shape or kl.ndim != 1:
        raise ValueError("kl and reward must be 1-D arrays of the same length")
    keep = np.ones(len(kl), dtype=bool)
    for i in range(len(kl)):
        better = (kl <= kl[i]) & (reward >= reward[i]) & ((kl < kl[i]) | (reward > reward[i]))
        keep[i] = not better.any()
    return keep


def _frontier_inputs(seed: int):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2, 12).round(2), rng.uniform(0, 1, 12).round(2)


def _frontier_small_case(fn):
    kl = np.array([0.0, 0.5, 1.0, 0.6, 2.0])
    reward = np.array([0.5, 0.7, 0.9, 0.6, 0.9])
    # 0.6/0.6 is beaten by 0.5/0.7; 2.0/0.9 by 1.0/0.9 (same reward, less KL)
    want = np.array([True, True, True, False, False])
    got = np.asarray(fn(kl, reward), dtype=bool)
    assert got.shape == want.shape, f"expected a mask of shape {want.shape}, got {got.shape}"
    assert (got == want).all(), f"expected {want.tolist()}, got {got.tolist()}"


def _frontier_keeps_duplicates(fn):
    got = np.asarray(fn(np.array([1.0, 1.0]), np.array([0.5, 0.5])), dtype=bool)
    assert got.all(), "two identical runs do not dominate each other: keep both"


def _frontier_matches_random(fn):
    for seed in range(3):
        kl, reward = _frontier_inputs(seed)
        got = np.asarray(fn(kl.copy(), reward.copy()), dtype=float)
        assert_close(got, _frontier_reference(kl, reward).astype(float), f"on seeded runs #{seed}")


frontier_mask = Exercise(
    name="frontier_mask",
    reference=_frontier_reference,
    properties=[
        ("on a small hand-made set, dominated runs are dropped", _frontier_small_case),
        ("identical runs do not dominate each other", _frontier_keeps_duplicates),
        ("it matches the reference on random runs", _frontier_matches_random),
    ],
    wrong_answers={
        "keeps only the best reward": lambda kl, r: np.asarray(r) == np.max(r),
        "ignores KL ties (strict < only)": lambda kl, r: np.array(
            [not ((np.asarray(kl) < kl[i]) & (np.asarray(r) > r[i])).any() for i in range(len(kl))]),
        "keeps everything": lambda kl, r: np.ones(len(kl), dtype=bool),
    },
    hints=(
        'a run is on the frontier unless another run is at least as good on both axes (less or equal KL, more or equal reward) and strictly better on one',
        'keep_i = not ∃ j: kl_j ≤ kl_i ∧ r_j ≥ r_i ∧ (kl_j < kl_i ∨ r_j > r_i)',
        'for each i: better = (kl <= kl[i]) & (r >= r[i]) & ((kl < kl[i]) | (r > r[i])); keep[i] = not better.any()',
    ),
)
