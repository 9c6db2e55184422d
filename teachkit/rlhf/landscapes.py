"""What the hands-on widgets of notebooks 02, 04 and 05/06 draw: pure functions of a few numbers.

- :func:`clipped_objective` (02): PPO's per-token objective ``min(ρA, clip(ρ, 1−ε, 1+ε)A)`` and its
  slope in ρ. For A > 0 the slope is A until ρ passes 1+ε, then 0: no incentive to push a good token
  further. For A < 0 it is 0 below 1−ε: no incentive to push a bad token further down. Outside the
  clip on the *other* side the unclipped term wins the min, so a step that went the wrong way is
  always corrected.
- :func:`group_advantage_noise` (04): GRPO's group-normalised advantage of one completion with a
  Bernoulli(p) reward, against the advantage a perfect baseline gives, ``(r − p)/√(p(1−p))``.
  Small groups are noisy, and a group whose rewards are all equal (probability ``p^G + (1−p)^G``)
  carries no signal at all.
- :func:`pair_losses` (05/06): DPO and DPOP (form "a") on one pair whose log-ratio margin
  ``h = h_w − h_l`` is fixed while the chosen log-ratio ``h_w = log π(y_w)/π_ref(y_w)`` moves.
  DPO's loss sees only h, so it cannot tell a pair whose chosen completion lost probability;
  DPOP subtracts ``λ·max(0, −h_w)`` inside the sigmoid and pushes h_w back up.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .advantages import grpo_advantages

__all__ = ["clipped_objective", "group_advantage_noise", "pair_losses"]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def clipped_objective(ratios, advantage: float, clip_eps: float = 0.2) -> dict:
    """Per-token clipped surrogate over a grid of ratios ρ, for one advantage A.

    Returns ``rho``, ``unclipped`` (ρA), ``clipped`` (clip(ρ)A), ``objective`` (their min) and
    ``slope`` (d objective / dρ: A where the unclipped term is the min, else 0).
    """
    rho = np.asarray(ratios, dtype=np.float64)
    if rho.ndim != 1 or not np.all(np.isfinite(rho)) or np.any(rho <= 0):
        raise ValueError("ratios must be a 1-D array of positive finite numbers")
    a = float(advantage)
    if not math.isfinite(a):
        raise ValueError(f"advantage must be finite, got {advantage!r}")
    eps = _positive("clip_eps", clip_eps)
    unclipped = rho * a
    clipped = np.clip(rho, 1 - eps, 1 + eps) * a
    objective = np.minimum(unclipped, clipped)
    # the slope is A where ρ is inside the clip range or where the unclipped term is strictly smaller
    inside = (rho >= 1 - eps) & (rho <= 1 + eps)   # at the edges, as torch.clamp: still A
    slope = np.where(inside | (unclipped < clipped), a, 0.0)
    return {"rho": rho, "unclipped": unclipped, "clipped": clipped, "objective": objective, "slope": slope}


def group_advantage_noise(success_p: float, group_sizes, n_groups: int = 4000, seed: int = 0) -> dict:
    """Error of GRPO's group-normalised advantage against a perfect baseline, per group size.

    For each G: ``n_groups`` groups of G Bernoulli(p) rewards (seeded); the advantage of each
    group's first completion from :func:`teachkit.rlhf.advantages.grpo_advantages` is compared with
    ``(r − p)/√(p(1−p))``. Returns arrays ``group_size``, ``rms_error``, ``no_signal_share`` (share of
    groups with all rewards equal, measured) and ``no_signal_exact`` (``p^G + (1−p)^G``).
    """
    p = float(success_p)
    if not 0 < p < 1:
        raise ValueError(f"success_p must be strictly between 0 and 1, got {success_p!r}")
    sizes = [int(g) for g in group_sizes]
    if not sizes or min(sizes) < 2:
        raise ValueError(f"group sizes must be integers >= 2, got {group_sizes!r}")
    if int(n_groups) < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups!r}")
    gen = torch.Generator().manual_seed(int(seed))
    true_scale = math.sqrt(p * (1 - p))
    rms, no_signal = [], []
    for g in sizes:
        rewards = (torch.rand(int(n_groups), g, generator=gen, dtype=torch.float64) < p).to(torch.float64)
        adv = grpo_advantages(rewards.reshape(-1), g).view(-1, g)[:, 0]
        ideal = (rewards[:, 0] - p) / true_scale
        rms.append(float(torch.sqrt(torch.mean((adv - ideal) ** 2))))
        no_signal.append(float((rewards.amax(1) == rewards.amin(1)).double().mean()))
    exact = [p ** g + (1 - p) ** g for g in sizes]
    return {"group_size": np.array(sizes), "rms_error": np.array(rms),
            "no_signal_share": np.array(no_signal), "no_signal_exact": np.array(exact)}


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def pair_losses(chosen_log_ratios, margin: float, beta: float = 0.1, lam: float = 50.0) -> dict:
    """DPO and DPOP (form "a") losses of one pair, and their gradients, as h_w moves at fixed margin.

    With h = ``margin`` and P = max(0, −h_w): DPO = −log σ(βh), DPOP = −log σ(β(h − λP)).
    Gradients are with respect to the chosen and the rejected log-ratio (h_l = h_w − h): a
    positive ``*_push_chosen`` means gradient descent raises log π(y_w).
    """
    h_w = np.asarray(chosen_log_ratios, dtype=np.float64)
    if h_w.ndim != 1 or not np.all(np.isfinite(h_w)):
        raise ValueError("chosen_log_ratios must be a 1-D array of finite numbers")
    h = float(margin)
    if not math.isfinite(h):
        raise ValueError(f"margin must be finite, got {margin!r}")
    beta = _positive("beta", beta)
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a non-negative finite number, got {lam!r}")
    penalty = np.maximum(0.0, -h_w)
    dpo_z = np.full_like(h_w, beta * h)
    dpop_z = beta * (h - lam * penalty)
    dpo_w = beta * _sigmoid(-dpo_z)                # −dL/dh for DPO
    dpop_w = beta * _sigmoid(-dpop_z)
    below = (h_w < 0).astype(np.float64)           # where the penalty is active
    return {"chosen_log_ratio": h_w, "penalty": penalty,
            "dpo_loss": -_log_sigmoid(dpo_z), "dpop_loss": -_log_sigmoid(dpop_z),
            # −dL/dh_w and +dL/dh_l: how hard descent raises the chosen and lowers the rejected
            "dpo_push_chosen": dpo_w, "dpo_push_rejected": dpo_w,
            "dpop_push_chosen": dpop_w * (1 + lam * below), "dpop_push_rejected": dpop_w}
