"""Exercises of notebook 02 (PPO): GAE, the clipped surrogate, and their graded variants."""

from __future__ import annotations

import math

import torch

from ._core import Exercise, assert_close, check_output, matches_reference
from ._inputs import poison as _poison, prefix_mask as _prefix_mask, t32 as _t
from ..rlhf.advantages import gae as _gae_ref
from ..toy.masking import select_or_zero
from ..rlhf.ppo import ppo_policy_loss as _ppo_ref

__all__ = ["gae", "ppo_clip_loss", "gae_with_kl", "clip_higher_loss"]


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


# ------------------------------------------------------------------ GAE on the KL-shaped reward (notebook 02, graded)

def _gae_kl_reference(scores, logp, ref_logp, values, mask, beta, gamma, lam):
    """Per-token reward −β·(logp − ref_logp), the score added at each sequence's last real token, then GAE."""
    m = mask.bool()
    rewards = -beta * (select_or_zero(logp, m) - select_or_zero(ref_logp, m))
    last = m.sum(1) - 1
    rewards[torch.arange(len(scores)), last] += scores
    return _gae_ref(rewards, values, mask, gamma, lam)


def _gae_kl_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    mask = _prefix_mask(g, 4, 6)
    ref = -torch.rand(4, 6, generator=g) * 3
    logp = ref + 0.5 * torch.randn(4, 6, generator=g)
    return (torch.randn(4, generator=g), logp, ref, torch.randn(4, 6, generator=g), mask, 0.2, 0.9, 0.8)


def _gae_kl_score_only(fn):
    # β = 0, V = 0, γ = λ = 1: every real token's advantage is the score, which sits at the last real token
    lp = _t([[-1.0, -2.0, -3.0]])
    adv, _ = fn(_t([2.0]), lp, lp.clone(), torch.zeros(1, 3), _t([[1, 1, 0]]), 0.0, 1.0, 1.0)
    assert_close(adv, _t([[2.0, 2.0, 0.0]]), "β = 0, score 2, mask [1, 1, 0] (the score belongs to token 2, not 3)")


def _gae_kl_per_token(fn):
    # logp − ref = [0.5, −0.2], β = 0.1: rewards [−0.05, +0.02]; V = 0, γ = λ = 1: A = [−0.03, 0.02]
    adv, ret = fn(_t([0.0]), _t([[-1.0, -2.2]]), _t([[-1.5, -2.0]]), torch.zeros(1, 2), _t([[1, 1]]), 0.1, 1.0, 1.0)
    assert_close(adv, _t([[-0.03, 0.02]]), "logp − ref_logp = [0.5, −0.2], β = 0.1, score 0: rewards −β·(logp − ref_logp)")
    assert_close(ret, _t([[-0.03, 0.02]]), "returns (= advantages + values, here V = 0)")


def _gae_kl_nan(fn):
    scores, logp, ref, v, mask, beta, gamma, lam = _gae_kl_inputs(7)
    want = _gae_kl_reference(scores, logp, ref, v, mask, beta, gamma, lam)
    got = fn(scores, _poison(logp, mask), _poison(ref, mask), _poison(v, mask), mask, beta, gamma, lam)
    check_output(got, want, "with NaN after each sequence's end")
    assert_close(tuple(select_or_zero(x, mask.bool()) for x in got), want, "with NaN after each sequence's end")


def _gae_kl_wrong_last_column(scores, logp, ref, v, mask, beta, gamma, lam):
    m = mask.bool()
    rewards = -beta * (select_or_zero(logp, m) - select_or_zero(ref, m))
    rewards[:, -1] += scores
    return _gae_ref(rewards, v, mask, gamma, lam)


def _gae_kl_wrong_sign(scores, logp, ref, v, mask, beta, gamma, lam):
    return _gae_kl_reference(scores, ref, logp, v, mask, beta, gamma, lam)


def _gae_kl_wrong_kl_at_end_only(scores, logp, ref, v, mask, beta, gamma, lam):
    m = mask.bool()
    kl = (select_or_zero(logp, m) - select_or_zero(ref, m)).sum(1)
    return _gae_kl_reference(scores - beta * kl, torch.zeros_like(logp), torch.zeros_like(ref), v, mask, 0.0, gamma, lam)


def _gae_kl_wrong_no_kl(scores, logp, ref, v, mask, beta, gamma, lam):
    return _gae_kl_reference(scores, logp, ref, v, mask, 0.0, gamma, lam)


gae_with_kl = Exercise(
    name="gae_with_kl",
    reference=_gae_kl_reference,
    properties=[
        ("the score is paid at each sequence's last real token", _gae_kl_score_only),
        ("every real token is paid −β·(logp − ref_logp) (hand example)", _gae_kl_per_token),
        ("it matches the reference on random batches of different lengths",
         matches_reference(_gae_kl_reference, _gae_kl_inputs)),
        ("NaN after a sequence's end never leaks", _gae_kl_nan),
    ],
    wrong_answers={"puts the score in the last column, padding or not": _gae_kl_wrong_last_column,
                   "KL reward with the wrong sign (ref_logp − logp)": _gae_kl_wrong_sign,
                   "the whole KL charged at the last token": _gae_kl_wrong_kl_at_end_only,
                   "ignores β (no KL reward)": _gae_kl_wrong_no_kl},
    hints=(
        "build the per-token reward first: each real token pays for its drift from the reference, and the reward "
        "model's score arrives once, at the last real token; then run GAE on that reward",
        "r_t = −β·(logp_t − ref_logp_t) for real tokens, plus the score at t = (number of real tokens) − 1; "
        "δ_t = r_t + γV_{t+1} − V_t, A_t = δ_t + γλA_{t+1}, R_t = A_t + V_t",
        "r = -beta * (torch.where(m, logp, 0) - torch.where(m, ref_logp, 0)); "
        "r[torch.arange(B), m.sum(1) - 1] += scores; then the GAE loop of the worked example",
    ),
)


# ------------------------------------------------------------------ DAPO's clip-higher (notebook 02, graded)

def _clip_higher_reference(logp, old_logp, advantages, mask, eps_low, eps_high):
    m = mask.bool()
    logp, old_logp, advantages = (select_or_zero(x, m) for x in (logp, old_logp, advantages))
    ratio = torch.exp(logp - old_logp)
    per = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - eps_low, 1 + eps_high))
    return select_or_zero(per, m).sum() / m.sum()


def _ch_inputs(seed: int):
    return _ppo_inputs(seed)[:4] + (0.2, 0.28)


def _ch_is_ppo_when_symmetric(fn):
    logp, old, adv, mask, eps = _ppo_inputs(5)
    assert_close(fn(logp, old, adv, mask, eps, eps), _ppo_ref(logp, old, adv, mask, eps),
                 "with eps_low = eps_high = 0.2 (it must equal PPO's clipped loss)")


def _ch_upper_uses_eps_high(fn):
    # A > 0: ρ = 1.25 is still inside [1 − 0.2, 1 + 0.28], so it keeps its gradient; ρ = 1.4 is clipped at 1.28
    logp = _t([[math.log(1.25), math.log(1.4)]]).requires_grad_()
    loss = fn(logp, torch.zeros(1, 2), _t([[1.0, 1.0]]), torch.ones(1, 2), 0.2, 0.28)
    assert_close(loss.detach(), -(1.25 + 1.28) / 2, "ρ = [1.25, 1.4], A = +1, eps_low = 0.2, eps_high = 0.28")
    loss.backward()
    assert_close(logp.grad, _t([[-1.25 / 2, 0.0]]),
                 "gradient: the token at ρ = 1.25 < 1.28 still learns, the one at 1.4 is clipped")


def _ch_lower_uses_eps_low(fn):
    # A < 0: the ratio may fall to 1 − eps_low = 0.8 and no further
    logp = _t([[math.log(0.75), math.log(0.9)]])
    got = fn(logp, torch.zeros(1, 2), _t([[-1.0, -1.0]]), torch.ones(1, 2), 0.2, 0.28)
    assert_close(got, (0.8 + 0.9) / 2, "ρ = [0.75, 0.9], A = −1: the lower clip is 1 − eps_low = 0.8")


def _ch_nan(fn):
    logp, old, adv, mask, _ = _ppo_inputs(6)
    got = fn(_poison(logp, mask), _poison(old, mask), _poison(adv, mask), mask, 0.2, 0.28)
    assert_close(got, _clip_higher_reference(logp, old, adv, mask, 0.2, 0.28), "with NaN under mask 0")


clip_higher_loss = Exercise(
    name="clip_higher_loss",
    reference=_clip_higher_reference,
    properties=[
        ("with eps_low = eps_high it is PPO's clipped loss", _ch_is_ppo_when_symmetric),
        ("a token with A > 0 is clipped at 1 + eps_high, not 1 + eps_low", _ch_upper_uses_eps_high),
        ("a token with A < 0 is clipped at 1 − eps_low", _ch_lower_uses_eps_low),
        ("it matches the reference on random batches (eps_low 0.2, eps_high 0.28)",
         matches_reference(_clip_higher_reference, _ch_inputs)),
        ("NaN under mask 0 never leaks", _ch_nan),
    ],
    wrong_answers={
        "swaps eps_low and eps_high": lambda lp, old, a, m, lo, hi: _clip_higher_reference(lp, old, a, m, hi, lo),
        "eps_high on both sides": lambda lp, old, a, m, lo, hi: _clip_higher_reference(lp, old, a, m, hi, hi),
        "eps_low on both sides (plain PPO)": lambda lp, old, a, m, lo, hi: _clip_higher_reference(lp, old, a, m, lo, lo),
        "takes the optimistic min": lambda lp, old, a, m, lo, hi: (lambda r: select_or_zero(torch.minimum(
            -a * r, -a * r.clamp(1 - lo, 1 + hi)), m.bool()).sum() / m.sum())(torch.exp(lp - old)),
    },
    hints=(
        "the clip interval stops being symmetric: a ratio may rise further (ε_high) than it may fall (ε_low), "
        "so unlikely tokens with a positive advantage can still grow; everything else is PPO's clipped loss",
        "per token max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high)), ρ = exp(logp − old_logp); masked mean over tokens",
        "ratio.clamp(1 - eps_low, 1 + eps_high) in place of ratio.clamp(1 - eps, 1 + eps) in your PPO loss",
    ),
)
