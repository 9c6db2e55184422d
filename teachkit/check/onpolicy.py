"""Exercises of notebooks 02–04: GAE, the clipped surrogate, REINFORCE, group advantages, k3, RLOO."""

from __future__ import annotations

import math

import torch

from ._core import Exercise, assert_close, check_output, matches_reference
from ..rlhf.advantages import gae as _gae_ref, grpo_advantages as _grpo_adv_ref, rloo_advantages as _rloo_ref
from ..rlhf.kl import kl_k3 as _k3_ref
from ..rlhf.masking import select_or_zero
from ..rlhf.ppo import ppo_policy_loss as _ppo_ref
from ..rlhf.reinforce import reinforce_loss as _reinforce_ref

__all__ = ["gae", "ppo_clip_loss", "reinforce_loss", "group_advantages", "kl_k3", "rloo_advantages"]

NAN = float("nan")


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


def _prefix_mask(g: torch.Generator, B: int, T: int) -> torch.Tensor:
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    return (torch.arange(T)[None] < lengths[:, None]).float()


def _poison(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), x, torch.tensor(NAN))


# ------------------------------------------------------------------ GAE (notebook 02)

def _gae_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    mask = _prefix_mask(g, 4, 6)
    return torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), mask, 0.9, 0.8


def _gae_hand(fn):
    adv, ret = fn(_t([[0.0, 0.0, 1.0]]), _t([[0.5, 0.6, 0.7]]), _t([[1, 1, 1]]), 1.0, 0.5)
    assert_close(adv, _t([[0.225, 0.25, 0.3]]), "advantages for rewards [0, 0, 1], values [.5, .6, .7], λ = 0.5")
    assert_close(ret, _t([[0.725, 0.85, 1.0]]), "returns (= advantages + values)")


def _gae_bootstrap(fn):
    # the value 5.0 sits after the sequence's end: it must not be bootstrapped from
    adv, _ = fn(_t([[0.0, 1.0, 0.0]]), _t([[0.0, 0.0, 5.0]]), _t([[1, 1, 0]]), 1.0, 0.5)
    assert_close(adv[:, :2], _t([[0.5, 1.0]]), "advantages when a value sits after the last real token")


def _gae_nan(fn):
    r, v, mask, gamma, lam = _gae_inputs(5)
    want = _gae_ref(r, v, mask, gamma, lam)
    got = fn(_poison(r, mask), _poison(v, mask), mask, gamma, lam)
    check_output(got, want, "with NaN after each sequence's end")
    assert_close(tuple(select_or_zero(x, mask.bool()) for x in got), want, "with NaN after each sequence's end")


def _gae_wrong_bootstrap(rewards, values, mask, gamma, lam):
    T = rewards.shape[1]
    adv, last = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        nxt = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        last = rewards[:, t] + gamma * nxt - values[:, t] + gamma * lam * last
        adv[:, t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


def _gae_wrong_no_lambda(rewards, values, mask, gamma, lam):
    return _gae_ref(rewards, values, mask, gamma, 1.0)


def _gae_wrong_returns(rewards, values, mask, gamma, lam):
    adv, _ = _gae_ref(rewards, values, mask, gamma, lam)
    return adv, adv


gae = Exercise(
    name="gae",
    reference=lambda r, v, m, gamma, lam: _gae_ref(r, v, m, gamma, lam),
    properties=[
        ("a three-token example computed by hand", _gae_hand),
        ("the bootstrap beyond a sequence's end is 0", _gae_bootstrap),
        ("it matches teachkit.rlhf.gae on random batches", matches_reference(
            lambda r, v, m, gamma, lam: _gae_ref(r, v, m, gamma, lam), _gae_inputs)),
        ("NaN after a sequence's end never leaks", _gae_nan),
    ],
    wrong_answers={"bootstraps from values after the end": _gae_wrong_bootstrap,
                   "returns integer advantages (an int dtype truncates)":
                       lambda r, v, m, gamma, lam: tuple(x.long() for x in _gae_ref(r, v, m, gamma, lam)),
                   "ignores λ": _gae_wrong_no_lambda,
                   "returns the advantages as returns (forgets + V)": _gae_wrong_returns},
    hints=(
        "run backwards from the last token: each advantage is this step's TD error plus the discounted advantage after it; nothing is bootstrapped beyond a sequence's end",
        'δ_t = r_t + γ V_{t+1} − V_t,  A_t = δ_t + γλ A_{t+1},  returns R_t = A_t + V_t; r and V are 0 under mask 0',
        'r, v = torch.where(mask.bool(), ·, 0); for t in reversed(range(T)): next_v = v[:, t+1] if t+1 < T else 0; running = r[:, t] + γ·next_v - v[:, t] + γλ·running; adv[:, t] = running',
    ),
)


# ------------------------------------------------------------------ clipped surrogate (notebook 02)

def _ppo_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(3, 5, generator=g) * 3
    logp = old + torch.randn(3, 5, generator=g) * 0.3
    return logp, old, torch.randn(3, 5, generator=g), _prefix_mask(g, 3, 5), 0.2


def _ppo_ratio_one(fn):
    logp, _, adv, mask, eps = _ppo_inputs(3)
    want = -(adv * mask).sum() / mask.sum()
    assert_close(fn(logp, logp.clone(), adv, mask, eps), want, "the loss when logp == old_logp (ρ = 1)")


def _ppo_hand(fn):
    logp = _t([[math.log(1.5), math.log(0.5), math.log(1.1), math.log(0.5)]])
    got = fn(logp, torch.zeros(1, 4), _t([[1.0, 1.0, -1.0, -1.0]]), torch.ones(1, 4), 0.2)
    assert_close(got, (-1.2 - 0.5 + 1.1 + 0.8) / 4, "ratios [1.5, .5, 1.1, .5], advantages [1, 1, −1, −1]")


def _ppo_other_eps(fn):
    logp = _t([[math.log(1.5), math.log(0.5), math.log(1.05), math.log(0.5)]])
    got = fn(logp, torch.zeros(1, 4), _t([[1.0, 1.0, -1.0, -1.0]]), torch.ones(1, 4), 0.1)
    assert_close(got, (-1.1 - 0.5 + 1.05 + 0.9) / 4, "the same tokens with clip_eps = 0.1 (ratios [1.5, .5, 1.05, .5])")


def _ppo_clipped_gradient(fn):
    logp = _t([[math.log(1.5), math.log(0.5)]]).requires_grad_()
    fn(logp, torch.zeros(1, 2), _t([[1.0, -1.0]]), torch.ones(1, 2), 0.2).backward()
    assert logp.grad is not None, "the loss must be differentiable in logp"
    assert_close(logp.grad, torch.zeros(1, 2), "gradient on tokens already clipped (it must be 0)")


def _ppo_nan(fn):
    logp, old, adv, mask, eps = _ppo_inputs(4)
    got = fn(_poison(logp, mask), _poison(old, mask), _poison(adv, mask), mask, eps)
    assert_close(got, _ppo_ref(logp, old, adv, mask, eps), "with NaN under mask 0")


def _ppo_wrong_min(logp, old, adv, mask, eps):
    ratio = torch.exp(logp - old)
    per = torch.minimum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))
    return (per * mask).sum() / mask.sum()


def _ppo_wrong_no_clip(logp, old, adv, mask, eps):
    m = mask.bool()
    per = torch.where(m, -adv * torch.exp(logp - old), 0)
    return per.sum() / mask.sum()


def _ppo_wrong_fixed_eps(logp, old, adv, mask, eps):
    return _ppo_ref(logp, old, adv, mask, 0.2)


def _ppo_wrong_multiply(logp, old, adv, mask, eps):
    ratio = torch.exp(logp - old)
    per = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))
    return (per * mask).sum() / mask.sum()


ppo_clip_loss = Exercise(
    name="ppo_clip_loss",
    reference=_ppo_ref,
    properties=[
        ("with π = π_old (ρ = 1) the loss is −masked_mean(A)", _ppo_ratio_one),
        ("four tokens computed by hand, two of them clipped", _ppo_hand),
        ("it uses the clip_eps it is given (ε = 0.1, by hand)", _ppo_other_eps),
        ("tokens whose ratio is already clipped get zero gradient", _ppo_clipped_gradient),
        ("it matches teachkit.rlhf.ppo_policy_loss on random batches", matches_reference(_ppo_ref, _ppo_inputs)),
        ("NaN under mask 0 never leaks", _ppo_nan),
    ],
    wrong_answers={"takes the optimistic min instead of the pessimistic max": _ppo_wrong_min,
                   "forgets the clip": _ppo_wrong_no_clip,
                   "ignores clip_eps (always 0.2)": _ppo_wrong_fixed_eps,
                   "multiplies by the mask (NaN · 0 = NaN)": _ppo_wrong_multiply},
    hints=(
        'once the ratio ρ = π/π_old has moved beyond [1−ε, 1+ε] in the direction the advantage rewards, that token stops pushing: PPO takes the pessimistic of the clipped and unclipped terms',
        'per token max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(logp − old_logp); masked mean over tokens',
        'select the inputs with torch.where(mask.bool(), ·, 0); torch.maximum(-adv*ratio, -adv*ratio.clamp(1-eps, 1+eps)); sum under the mask / mask.sum()',
    ),
)


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
