"""Exercises of notebook 02 (PPO): GAE, the clipped surrogate, and their graded variants."""

from __future__ import annotations

import math

import torch

from ._core import Exercise, assert_close, check_output, matches_reference
from ._inputs import poison as _poison, prefix_mask as _prefix_mask, t32 as _t
from ..rlhf.advantages import gae as _gae_ref
from ..rlhf.masking import select_or_zero
from ..rlhf.ppo import ppo_policy_loss as _ppo_ref

__all__ = ["gae", "ppo_clip_loss"]


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
