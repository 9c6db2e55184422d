import torch


def gae(rewards, values, mask, gamma, lam):
    """Generalised advantage estimation; returns (advantages, returns), both (B, T).

    Backwards in t, with V = 0 beyond a sequence's end:
        δ_t = r_t + γ V_{t+1} − V_t,   A_t = δ_t + γλ A_{t+1},   R_t = A_t + V_t.
    """
    keep = mask.bool()
    zero = torch.zeros((), dtype=rewards.dtype)
    r = torch.where(keep, rewards, zero)
    v = torch.where(keep, values, zero)          # V after the end is 0: nothing to bootstrap from
    B, T = r.shape
    advantages = torch.zeros_like(r)
    running = torch.zeros(B, dtype=r.dtype)
    for t in reversed(range(T)):
        next_value = v[:, t + 1] if t + 1 < T else torch.zeros(B, dtype=r.dtype)
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = torch.where(keep, advantages, zero)
    returns = torch.where(keep, advantages + v, zero)
    return advantages, returns
