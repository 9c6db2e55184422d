import torch


def neg_log_sigmoid(z):
    """−log σ(z) = log(1 + e^(−z)), computed without overflow for any z.

    For z ≥ 0, e^(−z) ≤ 1 and log1p(e^(−z)) is safe. For z < 0 write
    log(1 + e^(−z)) = −z + log(1 + e^z), and e^z ≤ 1 again.
    (torch.nn.functional.softplus(-z) does exactly this.)
    """
    return torch.clamp(-z, min=0) + torch.log1p(torch.exp(-z.abs()))
