import torch


def kl_k3(logp, ref_logp):
    """k3 = e^d − d − 1 with d = ref_logp − logp, accurate in float32 for tiny and large d.

    Near 0, e^d − d − 1 cancels; use its series d²/2 + d³/6 + d⁴/24 + d⁵/120 + d⁶/720 there,
    and expm1(d) − d elsewhere. Each branch gets a harmless input where it is not used.
    """
    d = ref_logp - logp
    small = d.abs() < 0.1
    ds = torch.where(small, d, torch.zeros_like(d))
    dl = torch.where(small, torch.ones_like(d), d)
    series = ds * ds * (0.5 + ds * (1 / 6 + ds * (1 / 24 + ds * (1 / 120 + ds / 720))))
    direct = torch.expm1(dl) - dl
    return torch.where(small, series, direct).clamp_min(0.0)
