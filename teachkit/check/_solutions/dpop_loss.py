import torch
import torch.nn.functional as F


def dpop_loss(pol_c, pol_r, ref_c, ref_r, beta, lam):
    """DPO-Positive: −log σ(β·[h − λ·max(0, ref_c − π_c)]), averaged over pairs, h the DPO margin."""
    margin = (pol_c - ref_c) - (pol_r - ref_r)
    penalty = torch.clamp(ref_c - pol_c, min=0.0)     # > 0 only once the chosen log-prob fell below ref
    return -F.logsigmoid(beta * (margin - lam * penalty)).mean()
