import torch


def gae_with_kl(scores, logp, ref_logp, values, mask, beta, gamma, lam):
    """GAE on the reward PPO for RLHF optimises: a KL charge on every token, the score at the end.

    r_t = −β·(logp_t − ref_logp_t)  on each real token (the k1 estimate of the KL, as a reward),
    plus the reward model's score on each sequence's last real token; then
    δ_t = r_t + γ V_{t+1} − V_t,  A_t = δ_t + γλ A_{t+1},  R_t = A_t + V_t  (V = 0 beyond the end).
    """
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype)
    B, T = logp.shape
    rewards = -beta * (torch.where(keep, logp, zero) - torch.where(keep, ref_logp, zero))
    last = keep.sum(dim=1) - 1                                # index of each sequence's last real token
    rewards[torch.arange(B), last] += scores
    v = torch.where(keep, values, zero)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(T)):
        next_value = v[:, t + 1] if t + 1 < T else torch.zeros(B, dtype=rewards.dtype)
        running = rewards[:, t] + gamma * next_value - v[:, t] + gamma * lam * running
        advantages[:, t] = running
    advantages = torch.where(keep, advantages, zero)
    returns = torch.where(keep, advantages + v, zero)
    return advantages, returns
