import torch


def ppo_clip_loss(logp, old_logp, advantages, mask, clip_eps):
    """PPO's clipped surrogate as a loss: masked mean of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))."""
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype)
    logp, old_logp, advantages = (torch.where(keep, x, zero) for x in (logp, old_logp, advantages))
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    per_token = torch.maximum(unclipped, clipped)            # the pessimistic of the two
    return torch.where(keep, per_token, zero).sum() / keep.sum()
