import torch
import torch.nn.functional as F


def dpop_token_loss(pol_c, pol_r, ref_c, ref_r, mask_c, mask_r, beta, lam):
    """DPOP with its penalty per token; per-token log-probs (B, T), masks (B, T).

    h = Σ_t (π_c − ref_c) − Σ_t (π_r − ref_r)           DPO's margin, from the summed log-ratios
    P = Σ_t max(0, ref_c,t − π_c,t)                      each chosen token that fell, on its own
    L = mean over pairs of −log σ(β·(h − λP))
    """
    zero = torch.zeros((), dtype=pol_c.dtype)
    keep_c, keep_r = mask_c.bool(), mask_r.bool()
    ratio_c = torch.where(keep_c, pol_c, zero) - torch.where(keep_c, ref_c, zero)   # select before subtracting
    ratio_r = torch.where(keep_r, pol_r, zero) - torch.where(keep_r, ref_r, zero)
    margin = ratio_c.sum(dim=-1) - ratio_r.sum(dim=-1)
    penalty = torch.clamp(-ratio_c, min=0.0).sum(dim=-1)
    return -F.logsigmoid(beta * (margin - lam * penalty)).mean()
