import torch


def dr_grpo_loss(logp, old_logp, rewards, mask, group_size, clip_eps):
    """Dr. GRPO: GRPO without its two sample-dependent normalisations.

    A_i = r_i − mean of its group (no division by the group's std);
    per token ℓ_{i,t} = −min(ρ A_i, clip(ρ, 1 − ε, 1 + ε) A_i), ρ = exp(logp − old_logp);
    L = Σ over real tokens of ℓ / (B·T), a constant (T: the generation budget, here the mask's
    width), so every token weighs the same whatever the length of its completion.
    """
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype)
    g = rewards.view(-1, group_size)
    advantages = (g - g.mean(dim=1, keepdim=True)).reshape(-1, 1)     # one per completion, over its tokens
    ratio = torch.exp(torch.where(keep, logp, zero) - torch.where(keep, old_logp, zero))
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    per_token = torch.where(keep, -surrogate, zero)
    B, T = mask.shape
    return per_token.sum() / (B * T)
