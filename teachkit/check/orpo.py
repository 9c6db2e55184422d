"""Exercises of notebook 08 (ORPO): log-odds, the ORPO loss, and its odds-ratio gradient weight."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ._inputs import LN2, t64 as _t
from ..rlhf.orpo import log_odds as _log_odds_ref, orpo_loss as _orpo_ref

__all__ = ["log_odds", "orpo_loss", "orpo_gradient_weight"]


# ------------------------------------------------------------------ ORPO (notebook 08)

def _odds_hand_values(fn):
    x = _t(math.log(0.5), math.log(0.25), math.log(0.8))
    assert_close(fn(x), _t(0.0, -math.log(3.0), math.log(4.0)), "log-odds at p = ½, ¼, ⅘")


def _odds_extremes(fn):
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([-60.0, -1e-7], dtype=dtype, requires_grad=True)
        y = fn(x)
        if not bool(torch.isfinite(y).all()):
            raise AssertionError(f"log-odds at ℓ̄ = −60 and −1e−7 in {dtype} must be finite, got {y.tolist()}")
        assert_close(y, _log_odds_ref(x.detach().double()), f"log-odds at ℓ̄ = −60 and −1e−7 in {dtype}",
                     rtol=1e-4, atol=1e-4)
        y.sum().backward()
        if not bool(torch.isfinite(x.grad).all()):
            raise AssertionError(f"gradients at ℓ̄ = −60 and −1e−7 in {dtype} must be finite")


def _odds_wrong_naive(x):
    return x - torch.log(1 - torch.exp(x))


def _odds_wrong_log1p(x):
    return x - torch.log1p(-torch.exp(x))


def _odds_wrong_prob(x):
    return torch.exp(x) - torch.log(-torch.expm1(x))


log_odds = Exercise(
    name="log_odds",
    reference=_log_odds_ref,
    properties=[
        ("log-odds(log p) = log(p / (1 − p))", _odds_hand_values),
        ("it is accurate and finite, with finite gradients, at ℓ̄ = −60 and ℓ̄ = −1e−7 (float32 and float64)",
         _odds_extremes),
    ],
    wrong_answers={"naive log(1 − exp(ℓ̄)) (cancels near 0)": _odds_wrong_naive,
                   "log1p(−exp(ℓ̄)) everywhere (inaccurate near 0)": _odds_wrong_log1p,
                   "uses p instead of log p in the first term": _odds_wrong_prob},
    hints=(
        'log-odds(ℓ) = ℓ − log(1 − e^ℓ); the second term loses all precision one way near ℓ = 0 and another way for very negative ℓ',
        'log(1 − e^ℓ) = log(−expm1(ℓ)) for ℓ > −ln 2, log1p(−exp(ℓ)) below',
        'near = ell > -ln 2; give each branch a harmless input where unused (torch.where(near, ell, -1.0) …); ell - torch.where(near, log(-expm1(·)), log1p(-exp(·)))',
    ),
)


def _orpo_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    c = -(torch.rand(8, generator=g, dtype=torch.float64) * 3 + 0.01)
    r = -(torch.rand(8, generator=g, dtype=torch.float64) * 3 + 0.01)
    return c, r, 0.1


def _orpo_hand_value(fn):
    # NLL = ln 2 ; log-odds ratio = 0 − (−ln 3) ; −log σ(ln 3) = ln(4/3)
    assert_close(fn(_t(math.log(0.5)), _t(math.log(0.25)), 0.5), LN2 + 0.5 * math.log(4.0 / 3.0),
                 "orpo_loss(log ½, log ¼, λ=0.5)")


def _orpo_near_certain(fn):
    # rejected completions the model is almost sure of (ℓ̄ = −1e−7) in float32: the log-odds need log1mexp
    c = torch.tensor([-1.0, -0.5], dtype=torch.float32)
    r = torch.tensor([-1e-7, -1e-7], dtype=torch.float32)
    want = _orpo_ref(c.double(), r.double(), lam=1.0)
    assert_close(fn(c, r, 1.0), want, "orpo_loss with ℓ̄_l = −1e−7 in float32 (λ = 1)", rtol=1e-4, atol=1e-4)


def _orpo_wrong_naive_odds(c, r, lam):
    odds = lambda x: x - torch.log(1 - torch.exp(x))  # noqa: E731
    return -c.mean() + lam * -F.logsigmoid(odds(c) - odds(r)).mean()


def _orpo_reference(c, r, lam):
    return _orpo_ref(c, r, lam=lam)


def _orpo_wrong_no_nll(c, r, lam):
    return lam * -F.logsigmoid(_log_odds_ref(c) - _log_odds_ref(r)).mean()


def _orpo_wrong_logprob_ratio(c, r, lam):
    return -c.mean() + lam * -F.logsigmoid(c - r).mean()


def _orpo_wrong_lam_on_nll(c, r, lam):
    return -lam * c.mean() - F.logsigmoid(_log_odds_ref(c) - _log_odds_ref(r)).mean()


orpo_loss = Exercise(
    name="orpo_loss",
    reference=_orpo_reference,
    properties=[
        ("NLL(chosen) + λ·(−log σ(log-odds ratio)) on a hand-computed pair", _orpo_hand_value),
        ("it matches teachkit.rlhf.orpo_loss on random pairs", matches_reference(_orpo_reference, _orpo_inputs)),
        ("it stays accurate when a completion is nearly certain (ℓ̄ = −1e−7, float32)", _orpo_near_certain),
    ],
    wrong_answers={"drops the SFT (NLL) term": _orpo_wrong_no_nll,
                   "uses the log-prob ratio instead of the log-odds ratio": _orpo_wrong_logprob_ratio,
                   "puts λ on the NLL term": _orpo_wrong_lam_on_nll,
                   "naive log-odds ℓ̄ − log(1 − exp(ℓ̄)) (cancels near 0)": _orpo_wrong_naive_odds},
    hints=(
        'ORPO is supervised fine-tuning on the chosen completion plus λ times a Bradley–Terry term on the log-odds (not the log-probs)',
        'L = mean(−ℓ̄_w) + λ·mean(−log σ(log-odds(ℓ̄_w) − log-odds(ℓ̄_l))), log-odds(ℓ) = ℓ − log(1 − e^ℓ)',
        'nll = -chosen.mean(); ratio = log_odds(chosen) - log_odds(rejected) (the accurate two-branch form); nll + lam * (-F.logsigmoid(ratio).mean())',
    ),
)


# ------------------------------------------------------------------ ORPO's gradient weight (notebook 08, graded)

def _weight_reference(chosen_mean_logps, rejected_mean_logps):
    """δ = 1 / (1 + odds_w / odds_l) = σ(−(log-odds_w − log-odds_l)), per pair."""
    return torch.sigmoid(-(_log_odds_ref(chosen_mean_logps) - _log_odds_ref(rejected_mean_logps)))


def _weight_half(fn):
    x = _t(-0.3, -2.0, -5.0)
    assert_close(fn(x, x.clone()), _t(0.5, 0.5, 0.5), "δ when chosen and rejected have equal odds (should be ½)")


def _weight_hand(fn):
    # p_w = ½, p_l = ¼: odds 1 and ⅓, δ = 1 / (1 + 1/(1/3)) = ¼
    assert_close(fn(_t(math.log(0.5)), _t(math.log(0.25))), _t(0.25), "p_w = ½, p_l = ¼: δ = 1/(1 + odds_w/odds_l)")


def _weight_is_gradient(fn):
    c, r, _ = _orpo_inputs(2)
    ratio = (_log_odds_ref(c) - _log_odds_ref(r)).requires_grad_()
    (grad,) = torch.autograd.grad(-F.logsigmoid(ratio).sum(), ratio)
    assert_close(fn(c, r), -grad, "compared with −∂L_OR/∂(log-odds ratio) from autograd")


def _weight_near_certain(fn):
    c = torch.tensor([-1e-7, -0.5], dtype=torch.float32)
    r = torch.tensor([-2e-7, -1e-7], dtype=torch.float32)
    assert_close(fn(c, r), _weight_reference(c.double(), r.double()).float(),
                 "δ when completions are nearly certain (ℓ̄ = −1e−7, −2e−7 in float32)", rtol=1e-3, atol=1e-5)


def _weight_wrong_naive(c, r):
    odds = lambda x: x - torch.log(1 - torch.exp(x))  # noqa: E731
    return torch.sigmoid(-(odds(c) - odds(r)))


orpo_gradient_weight = Exercise(
    name="orpo_gradient_weight",
    reference=_weight_reference,
    properties=[
        ("equal odds give δ = ½", _weight_half),
        ("δ = 1/(1 + odds_w/odds_l) (p_w = ½, p_l = ¼ by hand)", _weight_hand),
        ("δ is −∂L_OR/∂(log-odds ratio) of L_OR = −log σ(ratio)", _weight_is_gradient),
        ("it stays accurate when completions are nearly certain (float32)", _weight_near_certain),
        ("it matches the reference on random pairs", matches_reference(_weight_reference, lambda s: _orpo_inputs(s)[:2])),
    ],
    wrong_answers={"σ(+ratio): the weight of a pair already won": lambda c, r: torch.sigmoid(
                       _log_odds_ref(c) - _log_odds_ref(r)),
                   "uses the log-prob ratio instead of the log-odds ratio": lambda c, r: torch.sigmoid(-(c - r)),
                   "naive log-odds ℓ̄ − log(1 − exp(ℓ̄)) (cancels near 0)": _weight_wrong_naive},
    hints=(
        "the odds-ratio term pushes hard on a pair only while the model still gives the rejected completion "
        "high odds against the chosen one; the weight is how hard, the derivative of −log σ at the log-odds ratio",
        "δ = σ(−(log-odds(ℓ̄_w) − log-odds(ℓ̄_l))) = 1 / (1 + odds_w / odds_l), log-odds(ℓ) = ℓ − log(1 − e^ℓ)",
        "ratio = log_odds(chosen) - log_odds(rejected) with the accurate two-branch log_odds; "
        "return torch.sigmoid(-ratio)",
    ),
)
