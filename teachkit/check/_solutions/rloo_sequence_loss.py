import torch


def rloo_sequence_loss(logp, old_logp, advantages, mask, eps):
    """One ratio per sequence: ρ = exp(Σ_t logp − Σ_t old_logp) over the real tokens, clipped as in PPO,
    −min(ρA, clip(ρ, 1−ε, 1+ε)A), averaged over sequences."""
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype)
    seq = torch.where(keep, logp, zero).sum(dim=1)
    seq_old = torch.where(keep, old_logp, zero).sum(dim=1)
    ratio = torch.exp(seq - seq_old)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages)
    return (-surrogate).mean()
