"""Advantages: how much better than expected was each sampled token (PPO) or completion (the rest)?

Policy gradient: ∇J = E[Σ_t A_t ∇log π(y_t | x, y_<t)]. Any baseline b that does not depend on
the sampled y can be subtracted from the return without bias, since E_π[b ∇log π] = b ∇Σπ = 0.
The methods differ only in the baseline:

- PPO:    a learned critic V_t per token, combined by GAE (below);
- ReMax:  the reward of the greedy decode of the same prompt, A = r(y) − r(ŷ);
- GRPO:   the mean of a group of G samples of the same prompt, divided by the group's std;
- RLOO:   the mean of the *other* G − 1 samples (leave-one-out), so the baseline never sees r_i.

GAE (Schulman et al. 2016, arXiv:1506.02438v6, Eq. 16), running backwards in t with V_{T+1} = 0
beyond a sequence's end:

    δ_t = r_t + γ V_{t+1} − V_t,      Â_t = δ_t + γλ Â_{t+1},      R_t = Â_t + V_t.

λ = 0 gives the one-step TD error (low variance, biased by V); λ = 1 gives the Monte-Carlo
return minus V (unbiased, high variance).
"""

from __future__ import annotations

import torch

from ..toy.masking import select_or_zero
from .masking import masked_mean, masked_var
from .validate import (check_floating, check_integer, check_mask, check_mask_selects, check_not_empty,
                       check_number, check_pair_batch, check_token_batch)

__all__ = ["gae", "whiten", "remax_advantages", "grpo_advantages", "rloo_advantages"]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
        gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns per-token ``(advantages, returns)``, both (B, T).

    ``rewards`` and ``values`` are (B, T) floating; each mask row must be 1s then 0s (the completion
    up to and including its first EOS). Beyond a sequence's end the bootstrap value is 0, and
    entries under mask 0 (even NaN) never reach the result: both outputs are 0 there.
    """
    m = check_token_batch(mask, rewards=rewards, values=values)
    if bool((m[:, 1:] & ~m[:, :-1]).any()):
        raise ValueError("mask: gae expects each mask row to be 1s followed by 0s "
                         "(the completion up to its first EOS, then padding)")
    gamma = check_number("gamma", gamma, 0.0, 1.0)
    lam = check_number("lam", lam, 0.0, 1.0)
    r = select_or_zero(rewards, m)
    v = select_or_zero(values, m)  # V = 0 after the end: the bootstrap beyond it is 0
    T = r.shape[1]
    advantages = torch.zeros_like(r)
    last = torch.zeros_like(r[:, 0])
    for t in reversed(range(T)):
        next_value = v[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = r[:, t] + gamma * next_value - v[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = select_or_zero(advantages, m)
    returns = select_or_zero(advantages + v, m)
    return advantages, returns


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit masked variance; with ``shift_mean`` also centre it on 0 (TRL's ``masked_whiten``).

    The variance is Bessel-corrected, as in TRL; ``eps`` > 0 keeps a constant input finite (it
    comes out as 0). Entries under mask 0 come out as 0.
    """
    check_not_empty("x", check_floating("x", x))
    m = check_mask_selects(check_mask(mask, x, "x"))
    eps = check_number("eps", eps, low=0.0, low_open=True)
    x = select_or_zero(x, m)  # select first: NaN under the mask must not reach the gradient
    mean, var = masked_mean(x, m), masked_var(x, m)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return select_or_zero(out, m)


def _check_rewards(**rewards: torch.Tensor) -> None:
    check_pair_batch(**rewards)
    for name, r in rewards.items():
        if not bool(torch.isfinite(r).all()):
            raise ValueError(f"{name} contains NaN or inf; every sampled completion needs a finite reward")


def remax_advantages(sample_rewards: torch.Tensor, greedy_rewards: torch.Tensor) -> torch.Tensor:
    """ReMax: A = r(x, y) − r(x, ŷ), with ŷ the greedy decode of the same prompt; shape (B,)."""
    _check_rewards(sample_rewards=sample_rewards, greedy_rewards=greedy_rewards)
    return sample_rewards - greedy_rewards


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    _check_rewards(rewards=rewards)
    group_size = check_integer("group_size", group_size, 2)  # a baseline needs other samples
    if rewards.numel() % group_size:
        raise ValueError(f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}: "
                         "lay out the G samples of each prompt consecutively, (N·G,)")
    return rewards.view(-1, group_size)


def grpo_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: A_i = (r_i − mean_g) / (std_g + eps) within each group of ``group_size`` consecutive rewards.

    ``std`` is torch's default (Bessel-corrected); ``eps`` > 0. ``scale=False`` gives Dr. GRPO's
    r_i − mean_g. A group whose rewards are all equal gets exactly 0: it carries no learning signal.
    """
    g = _groups(rewards, group_size)
    eps = check_number("eps", eps, low=0.0, low_open=True)
    centred = g - g.mean(dim=1, keepdim=True)
    adv = centred / (g.std(dim=1, keepdim=True) + eps) if scale else centred
    equal = (g.amax(dim=1) == g.amin(dim=1)).unsqueeze(1)  # exact 0, not rounding residue
    return torch.where(equal, torch.zeros_like(adv), adv).reshape(-1)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: A_i = r_i − (Σ_{j≠i} r_j)/(G − 1), the baseline that leaves sample i out.

    Equal to G/(G − 1)·(r_i − mean_g): GRPO's centring, rescaled, without the std division.
    """
    g = _groups(rewards, group_size)
    others = (g.sum(dim=1, keepdim=True) - g) / (g.shape[1] - 1)
    adv = g - others
    equal = (g.amax(dim=1) == g.amin(dim=1)).unsqueeze(1)
    return torch.where(equal, torch.zeros_like(adv), adv).reshape(-1)
