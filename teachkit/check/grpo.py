"""Exercises of notebook 04 (GRPO): group advantages, k3, RLOO, and Dr. GRPO's aggregation."""

from __future__ import annotations

import math

import torch

from ._core import Exercise, assert_close, matches_reference
from ._inputs import poison as _poison, prefix_mask as _prefix_mask, t32 as _t
from ..rlhf.advantages import grpo_advantages as _grpo_adv_ref, rloo_advantages as _rloo_ref
from ..rlhf.grpo import grpo_loss as _grpo_loss_ref
from ..rlhf.kl import kl_k3 as _k3_ref

__all__ = ["group_advantages", "kl_k3", "rloo_advantages", "dr_grpo_loss"]


# ------------------------------------------------------------------ group advantages (notebook 04)

def _group_ref(rewards, group_size):
    return _grpo_adv_ref(rewards, group_size)


def _group_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, (12,), generator=g).float(), 4


def _group_hand(fn):
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert_close(fn(_t([1.0, 0.0, 0.0, 1.0]), 4), _t([a, -a, -a, a]),
                 "rewards [1, 0, 0, 1], G = 4 (std is Bessel-corrected, + 1e-4)")


def _group_zero_std(fn):
    s = math.sqrt(1 / 3) + 1e-4  # group [0, 1, 0]: mean 1/3, Bessel std sqrt(1/3)
    assert_close(fn(_t([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]), 3), _t([0, 0, 0, -1 / 3 / s, 2 / 3 / s, -1 / 3 / s]),
                 "a group of equal rewards [1, 1, 1] (it must give zeros) next to the group [0, 1, 0]")


def _group_zero_std_fractional(fn):
    # 0.1 and 0.7 are not exact in float32: the group mean differs from them by rounding, so
    # (r − mean)/(std + 1e-4) gives residues of 1e-4..1e-3 unless equal groups are special-cased
    got = fn(_t([0.1] * 8 + [0.7] * 8), 8)
    assert_close(got, torch.zeros(16), "two groups of equal non-integer rewards, [0.1] * 8 and [0.7] * 8 (must be 0)",
                 rtol=0.0, atol=1e-7)


def _group_wrong_no_special_case(r, G):
    g = r.view(-1, G)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).reshape(-1)


group_advantages = Exercise(
    name="group_advantages",
    reference=_group_ref,
    properties=[
        ("one group computed by hand", _group_hand),
        ("a group whose rewards are all equal gets advantage 0", _group_zero_std),
        ("equal non-integer rewards (0.1, 0.7) also get exactly 0, not rounding residue", _group_zero_std_fractional),
        ("it matches teachkit.rlhf.grpo_advantages on random groups", matches_reference(_group_ref, _group_inputs)),
    ],
    wrong_answers={
        "uses the population std (unbiased=False)": lambda r, G: (lambda g: ((g - g.mean(1, keepdim=True))
                                                     / (g.std(1, unbiased=False, keepdim=True) + 1e-4)).reshape(-1))(r.view(-1, G)),
        "normalises over the whole batch, not per group": lambda r, G: (r - r.mean()) / (r.std() + 1e-4),
        "no special case for equal groups (rounding residue / 1e-4)": _group_wrong_no_special_case,
        "forgets the eps (0/0 on equal groups)": lambda r, G: (lambda g: ((g - g.mean(1, keepdim=True))
                                                     / g.std(1, keepdim=True)).reshape(-1))(r.view(-1, G)),
    },
    hints=(
        'centre and scale each group of G samples of the same prompt by its own mean and std; a group of equal rewards carries no signal',
        'A_i = (r_i − mean_g) / (std_g + 1e-4), std Bessel-corrected; exactly 0 where max_g == min_g',
        'g = rewards.view(-1, G); adv = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4); torch.where(equal[:, None], 0, adv).reshape(-1)',
    ),
)


# ------------------------------------------------------------------ k3 (notebook 04)

def _k3_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(3, 4, generator=g) * 4, -torch.rand(3, 4, generator=g) * 4


def _k3_hand(fn):
    assert_close(fn(_t([[-1.0, -2.0]]), _t([[-1.5, -1.0]])), _t([[0.10653066, 0.71828183]]),
                 "logp [−1, −2], ref_logp [−1.5, −1] (d = ref − logp = [−0.5, 1])")


def _k3_relative(fn):
    # relative error, not absolute: k3 is ~1e-13 at d = 1e-6, so any atol would accept garbage
    d = _t([1e-6, -1e-6, 3e-7, 1e-4, -1e-4, 5e-3, -5e-3, 1.2e-2, -1.2e-2, 0.05, -0.05, 0.2, -0.2])
    got = fn(torch.zeros_like(d), d)  # logp = 0, ref_logp = d
    want = (torch.expm1(d.double()) - d.double()).float()
    assert_close(got, want, "k3 relative to the exact value at d = ±1e-6, 3e-7, ±1e-4, ±5e-3, ±1.2e-2, ±0.05, ±0.2",
                 rtol=1e-4, atol=0.0)
    assert bool((got >= 0).all()), f"k3 must never be negative, got {got.tolist()}"


def _k3_wrong_half_then_naive(lp, ref):
    d = ref - lp
    return torch.where(d.abs() < 1e-2, 0.5 * d * d, torch.exp(d) - d - 1)


kl_k3 = Exercise(
    name="kl_k3",
    reference=_k3_ref,
    properties=[
        ("two tokens computed by hand", _k3_hand),
        ("it matches teachkit.rlhf.kl_k3 on random log-probs", matches_reference(_k3_ref, _k3_inputs)),
        ("it is accurate to 1e-4 relative and ≥ 0 for tiny and moderate d in float32", _k3_relative),
    ],
    wrong_answers={
        "the naive exp(d) − d − 1 (cancels near 0)": lambda lp, ref: torch.exp(ref - lp) - (ref - lp) - 1,
        "d the wrong way round (logp − ref)": lambda lp, ref: torch.expm1(lp - ref) - (lp - ref),
        "k2 instead of k3": lambda lp, ref: 0.5 * (lp - ref) ** 2,
        "expm1(d) − d everywhere (9–26% off at d ≈ 1e-6)": lambda lp, ref: torch.expm1(ref - lp) - (ref - lp),
        "½d² below |d| = 1e-2, exp(d) − d − 1 above": _k3_wrong_half_then_naive,
    },
    hints=(
        'k3 = e^d − d − 1 with d = ref_logp − logp; near d = 0 the three terms cancel in float32, so use a form without cancellation there',
        'for |d| < 0.1 the series d²/2 + d³/6 + d⁴/24 + d⁵/120 (+ d⁶/720); elsewhere expm1(d) − d',
        'small = d.abs() < 0.1; torch.where(small, series(torch.where(small, d, 0)), torch.expm1(d) - d)',
    ),
)


# ------------------------------------------------------------------ RLOO (notebook 04)

def _rloo_hand(fn):
    assert_close(fn(_t([1.0, 0.0, 0.0, 1.0]), 4), _t([2 / 3, -2 / 3, -2 / 3, 2 / 3]),
                 "rewards [1, 0, 0, 1], G = 4: 1 − (0 + 0 + 1)/3 = 2/3")


def _rloo_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, generator=g), 3


rloo_advantages = Exercise(
    name="rloo_advantages",
    reference=_rloo_ref,
    properties=[
        ("one group computed by hand", _rloo_hand),
        ("it matches teachkit.rlhf.rloo_advantages on random groups", matches_reference(_rloo_ref, _rloo_inputs)),
    ],
    wrong_answers={
        "includes the sample in its own baseline": lambda r, G: (r.view(-1, G) - r.view(-1, G).mean(1, keepdim=True)).reshape(-1),
        "divides by G instead of G − 1": lambda r, G: (lambda g: g - (g.sum(1, keepdim=True) - g) / G)(r.view(-1, G)).reshape(-1),
    },
    hints=(
        "each sample's baseline is the mean reward of the *other* samples of its group, never its own",
        'A_i = r_i − (Σ_g r − r_i) / (G − 1)',
        'g = rewards.view(-1, G); (g - (g.sum(1, keepdim=True) - g) / (G - 1)).reshape(-1)',
    ),
)


# ------------------------------------------------------------------ Dr. GRPO (notebook 04, graded)

def _dr_reference(logp, old_logp, rewards, mask, group_size, clip_eps):
    """Advantages r − mean_group (no std); clipped surrogate per token; Σ over real tokens / (B·T)."""
    adv = _grpo_adv_ref(rewards, group_size, scale=False)
    return _grpo_loss_ref(logp, old_logp, None, adv, mask, clip_eps, beta=0.0,
                          aggregation="seq-mean-token-sum-norm")


def _dr_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(8, 6, generator=g, dtype=torch.float64) * 3
    logp = old + 0.3 * torch.randn(8, 6, generator=g, dtype=torch.float64)
    mask = _prefix_mask(g, 8, 6).double()
    return logp, old, torch.randint(0, 3, (8,), generator=g).double(), mask, 4, 0.2


def _dr_hand(fn):
    # G = 2, rewards [1, 0]: A = [+0.5, −0.5]; lengths 1 and 3 in a budget T = 4; ρ = 1:
    # loss = −(0.5·1 − 0.5·3) / (B·T) = 1/8
    mask = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float64)
    lp = -torch.ones(2, 4, dtype=torch.float64)
    assert_close(fn(lp, lp.clone(), _t([1.0, 0.0]).double(), mask, 2, 0.2), 0.125,
                 "rewards [1, 0] (G = 2), lengths 1 and 3, T = 4, ρ = 1: −(0.5·1 − 0.5·3)/(2·4)")


def _dr_no_std(fn):
    # the same group with rewards [2, 0]: A doubles, and so does the loss (GRPO's std would cancel it)
    mask = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float64)
    lp = -torch.ones(2, 4, dtype=torch.float64)
    assert_close(fn(lp, lp.clone(), _t([2.0, 0.0]).double(), mask, 2, 0.2), 0.25,
                 "rewards [2, 0]: advantages are not divided by the group's std, so the loss doubles")


def _dr_budget(fn):
    # the same two completions padded to T = 8: the constant B·T grows, the loss shrinks by 4/8
    mask = torch.zeros(2, 8, dtype=torch.float64)
    mask[0, :1], mask[1, :3] = 1, 1
    lp = -torch.ones(2, 8, dtype=torch.float64)
    assert_close(fn(lp, lp.clone(), _t([1.0, 0.0]).double(), mask, 2, 0.2), 0.0625,
                 "the same pair padded to T = 8: divide by the budget B·T = 16, not by the 4 real tokens")


def _dr_nan(fn):
    logp, old, r, mask, G, eps = _dr_inputs(9)
    got = fn(_poison(logp, mask), _poison(old, mask), r, mask, G, eps)
    assert_close(got, _dr_reference(logp, old, r, mask, G, eps), "with NaN under mask 0")


def _dr_wrong_aggregation(aggregation, scale):
    def wrong(logp, old, r, mask, G, eps):
        adv = _grpo_adv_ref(r, G, scale=scale)
        return _grpo_loss_ref(logp, old, None, adv, mask, eps, beta=0.0, aggregation=aggregation)
    return wrong


def _dr_wrong_multiply(logp, old, r, mask, G, eps):
    g = r.view(-1, G)
    adv = (g - g.mean(1, keepdim=True)).reshape(-1, 1)
    ratio = torch.exp(logp - old)
    per = -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
    return (per * mask).sum() / mask.numel()


dr_grpo_loss = Exercise(
    name="dr_grpo_loss",
    reference=_dr_reference,
    properties=[
        ("a group of two by hand: each token weighs 1/(B·T), whatever its completion's length", _dr_hand),
        ("advantages are r − group mean, not divided by the group's std", _dr_no_std),
        ("the normaliser is the budget B·T (the mask's width), not the number of real tokens", _dr_budget),
        ("it matches the reference on random groups", matches_reference(_dr_reference, _dr_inputs)),
        ("NaN under mask 0 never leaks", _dr_nan),
    ],
    wrong_answers={
        "divides the advantages by the group's std (GRPO)": _dr_wrong_aggregation("seq-mean-token-sum-norm", True),
        "averages over each completion's tokens, then over completions (GRPO's length bias)":
            _dr_wrong_aggregation("seq-mean-token-mean", False),
        "divides by the number of real tokens (DAPO's token-mean)": _dr_wrong_aggregation("token-mean", False),
        "multiplies by the mask (NaN · 0 = NaN)": _dr_wrong_multiply,
    },
    hints=(
        "Dr. GRPO removes GRPO's two normalisations that depend on the sample: the division by the group's std "
        "and the division by each completion's length; a constant takes their place",
        "A_i = r_i − mean_group(r); per token ℓ = −min(ρA_i, clip(ρ, 1−ε, 1+ε)A_i); "
        "L = Σ over real tokens of ℓ / (B·T), T = mask.shape[1]",
        "g = rewards.view(-1, group_size); adv = (g - g.mean(1, keepdim=True)).reshape(-1, 1); "
        "per = -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv); "
        "torch.where(mask.bool(), per, 0).sum() / mask.numel()",
    ),
)
