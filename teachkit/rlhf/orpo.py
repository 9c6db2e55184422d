"""ORPO: odds-ratio preference optimisation, one stage, one model (Hong, Lee, Thorne 2024,
arXiv:2403.07691v2, §4.2, Eqs. 6–7).

Public API (a contract):

    log1mexp(x)                                        -> log(1 − eˣ), stable for x < 0
    log_odds(mean_logps)                               -> ℓ̄ − log(1 − e^ℓ̄)
    orpo_loss(chosen_mean_logps, rejected_mean_logps, lam=0.1)   -> 0-dim

Odds, not probability
---------------------
ORPO works with the length-averaged log-prob  ℓ̄ = (1/|y|)·Σ_t log π(y_t|x, y_<t),  i.e. the
geometric-mean per-token probability  p = e^ℓ̄.  The odds of y are  p / (1 − p):  they run from
0 to ∞ where p runs from 0 to 1, and

    log-odds(ℓ̄) = log p − log(1 − p) = ℓ̄ − log(1 − e^ℓ̄).

The loss is SFT on the chosen completion plus a small odds-ratio penalty:

    L_ORPO = mean(−ℓ̄_w)  +  λ·mean(−log σ(log-odds(ℓ̄_w) − log-odds(ℓ̄_l))).

No reference model appears: the NLL term keeps the policy near the data, so ORPO can start from
a base (pre-SFT) model and do SFT and preference learning in one stage with one model.

Our NLL term is the mean over pairs of each chosen completion's *per-sequence* average log-prob,
over the completion tokens only. The official code (xfactlab/orpo) and TRL's ORPOTrainer instead
take the token-mean cross-entropy over prompt *plus* completion of the chosen sequence (longer
sequences weigh more, and the prompt tokens are learned too). The odds-ratio term is the same.

Computing log(1 − eˣ) stably
----------------------------
Near x = 0, 1 − eˣ cancels catastrophically; use  log(−expm1(x)).  Far below 0, eˣ is tiny and
log1p(−eˣ) keeps its precision. The switch at x = −ln 2 (Mächler 2012) is accurate on both sides.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .validate import check_floating, check_not_empty, check_number, check_pair_batch

__all__ = ["log1mexp", "log_odds", "orpo_loss", "MAX_MEAN_LOGP"]

MAX_MEAN_LOGP = -1e-7
"""Mean log-probs above this (the model is certain, p → 1, odds → ∞) are clamped to it."""


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, accurate near 0 and far below it; both branches are finite, so no NaN grads."""
    check_not_empty("x", check_floating("x", x))
    if bool(torch.any(x >= 0)):
        raise ValueError("x must be < 0: log1mexp computes log(1 − eˣ), undefined for x >= 0")
    if bool(torch.any(torch.isnan(x))):
        raise ValueError("x contains NaN: log1mexp needs x < 0")
    near_zero = x > -math.log(2.0)
    safe_near = torch.where(near_zero, x, torch.full_like(x, -1.0))   # keep the unused branch finite
    safe_far = torch.where(near_zero, torch.full_like(x, -1.0), x)
    return torch.where(near_zero, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))


def _check_mean_logps(name: str, x) -> None:
    check_not_empty(name, check_floating(name, x))
    if bool(torch.any(torch.isnan(x))):
        raise ValueError(f"{name} contains NaN: pass (averaged) log-probabilities, all <= 0")
    if bool(torch.any(x > 0)):
        raise ValueError(f"{name} must be <= 0: they are (averaged) log-probabilities")


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log(p / (1 − p)) with p = exp(mean_logps); finite for mean_logps in [−60, −1e−7] in float32 and float64.

    Positive inputs (not a log-probability) raise; inputs in (−1e−7, 0] are clamped to −1e−7.
    """
    _check_mean_logps("mean_logps", mean_logps)
    ell = torch.clamp(mean_logps, max=MAX_MEAN_LOGP)
    return ell - log1mexp(ell)


def orpo_loss(chosen_mean_logps, rejected_mean_logps, lam: float = 0.1) -> torch.Tensor:
    """ORPO:  mean(−ℓ̄_w) + λ·mean(−log σ(log-odds_w − log-odds_l)).  Inputs (B,) length-averaged log-probs."""
    check_pair_batch(chosen_mean_logps=chosen_mean_logps, rejected_mean_logps=rejected_mean_logps)
    _check_mean_logps("chosen_mean_logps", chosen_mean_logps)
    _check_mean_logps("rejected_mean_logps", rejected_mean_logps)
    lam = check_number("lam", lam, low=0.0)
    nll = -chosen_mean_logps.mean()
    ratio = log_odds(chosen_mean_logps) - log_odds(rejected_mean_logps)
    return nll + lam * (-F.logsigmoid(ratio).mean())
