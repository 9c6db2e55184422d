import torch


def clip_higher_loss(logp, old_logp, advantages, mask, eps_low, eps_high):
    """DAPO's clip-higher: PPO's clipped loss with the ratio kept in [1 − ε_low, 1 + ε_high].

    Per token max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high)), ρ = exp(logp − old_logp),
    averaged over the real tokens. A larger ε_high lets a rare token with A > 0 grow further
    before its gradient is cut, which keeps the policy's entropy from collapsing.
    """
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype)
    logp, old_logp, advantages = (torch.where(keep, x, zero) for x in (logp, old_logp, advantages))
    ratio = torch.exp(logp - old_logp)
    per_token = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - eps_low, 1 + eps_high))
    return torch.where(keep, per_token, zero).sum() / keep.sum()
