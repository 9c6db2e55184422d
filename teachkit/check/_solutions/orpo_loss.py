import math

import torch
import torch.nn.functional as F


def log_odds(ell):
    """ℓ − log(1 − e^ℓ), with log(1 − e^ℓ) in its accurate branch (see check.solution("log_odds"))."""
    ell = torch.clamp(ell, max=-1e-7)
    near_zero = ell > -math.log(2.0)
    safe_near = torch.where(near_zero, ell, torch.full_like(ell, -1.0))
    safe_far = torch.where(near_zero, torch.full_like(ell, -1.0), ell)
    return ell - torch.where(near_zero, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))


def orpo_loss(chosen_mean_logps, rejected_mean_logps, lam):
    """ORPO: mean(−ℓ̄_w) + λ·mean(−log σ(log-odds(ℓ̄_w) − log-odds(ℓ̄_l))) on length-averaged log-probs."""
    nll = -chosen_mean_logps.mean()
    ratio = log_odds(chosen_mean_logps) - log_odds(rejected_mean_logps)
    return nll + lam * (-F.logsigmoid(ratio).mean())
