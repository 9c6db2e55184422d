import math

import torch


def log_odds(ell):
    """ℓ − log(1 − e^ℓ), with log(1 − e^ℓ) in its accurate branch (see check.solution("log_odds"))."""
    ell = torch.clamp(ell, max=-1e-7)
    near_zero = ell > -math.log(2.0)
    safe_near = torch.where(near_zero, ell, torch.full_like(ell, -1.0))
    safe_far = torch.where(near_zero, torch.full_like(ell, -1.0), ell)
    return ell - torch.where(near_zero, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))


def orpo_gradient_weight(chosen_mean_logps, rejected_mean_logps):
    """ORPO's weight δ = 1 / (1 + odds_w / odds_l) = σ(−(log-odds_w − log-odds_l)), per pair.

    L_OR = −log σ(ratio) has derivative −σ(−ratio) in the log-odds ratio: δ is how hard the
    odds-ratio term still pushes on a pair. It goes to 0 once the chosen odds dominate.
    """
    ratio = log_odds(chosen_mean_logps) - log_odds(rejected_mean_logps)
    return torch.sigmoid(-ratio)
