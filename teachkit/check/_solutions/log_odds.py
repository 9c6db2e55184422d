import math

import torch


def log_odds(mean_logps):
    """log(p / (1 − p)) from ℓ = log p, i.e. ℓ − log(1 − e^ℓ), accurate for ℓ in [−60, −1e−7].

    log(1 − e^ℓ) needs two branches: log(−expm1(ℓ)) near 0 (ℓ > −ln 2), log1p(−exp(ℓ)) below.
    Each branch gets a harmless input where it is not selected, so no NaN reaches the gradient.
    """
    ell = torch.clamp(mean_logps, max=-1e-7)
    near_zero = ell > -math.log(2.0)
    safe_near = torch.where(near_zero, ell, torch.full_like(ell, -1.0))
    safe_far = torch.where(near_zero, torch.full_like(ell, -1.0), ell)
    log1mexp = torch.where(near_zero, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))
    return ell - log1mexp
