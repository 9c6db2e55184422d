"""Offline preference training on the toy world's pairs: one loop for DPO, DPOP, IPO and SimPO.

    policy, history = train_dpo(world, DPOConfig(loss="dpo"))       # or "dpop", "ipo", "simpo"

The policy starts as a copy of the SFT model, which is also the frozen reference. Each step draws
``batch_size`` pairs from the training split, scores chosen and rejected completions under the
policy (one forward pass over both) and under the reference (pre-computed once: the reference
never changes), and takes an AdamW step on the chosen loss. Every ``eval_every`` steps we log the
toy world's evaluation (gold and proxy reward, KL to the reference on fresh samples) and the
preference metrics on the held-out pairs: loss, reward accuracy, margin, and the mean chosen and
rejected log-probs and log-ratios — the numbers notebook 06 watches fall below the reference.

``history`` keys: ``HISTORY_KEYS`` (samples_generated and reward_queries stay 0: offline),
train_loss (the mean batch loss since the previous row; at step 0 the loss on every training
pair), greedy_gold_reward (with ``eval_greedy``), then ``pair_metrics``' keys.

The pairs, their forward pass and the loop are shared with TDPO and ORPO (:mod:`.offpolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dpo import DPOP_FORMS, dpo_loss, dpop_loss, implicit_rewards, ipo_loss, simpo_loss
from .history import History, evaluation_metrics
from .offpolicy import PairData, check_offpolicy_config, fit_pairs, pair_data, pair_logps

__all__ = ["DPOConfig", "LOSSES", "train_dpo", "preference_loss", "pair_metrics"]

LOSSES = ("dpo", "dpop", "ipo", "simpo")


@dataclass
class DPOConfig:
    loss: str = "dpo"            # "dpo" | "dpop" | "ipo" | "simpo"
    beta: float = 0.1            # DPO/DPOP/IPO temperature; SimPO uses simpo_beta
    lam: float = 50.0            # DPOP penalty weight (Smaug's λ)
    dpop_form: str = "a"         # where DPOP's penalty sits: "a" inside β, "b" outside β, "c" outside log σ
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5
    steps: int = 120
    batch_size: int = 64
    lr: float = 1e-5             # Adam moves every weight by ~lr per step: DPO needs a small one
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 20
    eval_greedy: bool = True     # also log greedy gold reward (task accuracy for arithmetic)
    pairs: str = "all"           # "all" | "low_edit" | "sampled" (see pair_data)
    monitor: str = "heldout"     # pair metrics on the "heldout" or the "train" pairs
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.dpop_form not in DPOP_FORMS:
            raise ValueError(f"dpop_form must be one of {DPOP_FORMS}, got {self.dpop_form!r}")
        check_offpolicy_config(self)


def preference_loss(cfg: DPOConfig, pol_c, pol_r, ref_c, ref_r, len_c, len_r) -> torch.Tensor:
    """The configured loss on (B,) summed log-probs; SimPO divides by the lengths ``len_c``, ``len_r``."""
    if cfg.loss == "dpo":
        return dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta)
    if cfg.loss == "dpop":
        return dpop_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta, lam=cfg.lam, form=cfg.dpop_form)
    if cfg.loss == "ipo":
        return ipo_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta)
    return simpo_loss(pol_c / len_c, pol_r / len_r, beta=cfg.simpo_beta, gamma=cfg.simpo_gamma)


@torch.no_grad()
def pair_metrics(policy, data: PairData, beta: float = 0.1) -> dict[str, float]:
    """DPO's diagnostics on a set of pairs (no gradient). Log-probs are per pair, summed over tokens.

    chosen_logps / rejected_logps          mean log π(y_w), log π(y_l)
    chosen_logratio / rejected_logratio    mean log π/π_ref of each (0 at the start)
    chosen_below_ref                       fraction of pairs with log π(y_w) < log π_ref(y_w)
    reward_accuracy, reward_margin         implicit-reward accuracy (strict: the ties of step 0
                                           count as wrong) and mean margin (β·…)
    dpo_loss                               DPO's loss on these pairs (ln 2 at the start)
    """
    pol_c, pol_r = pair_logps(policy, data)
    ref_c, ref_r = data.ref_chosen_logps, data.ref_rejected_logps
    rw_c, rw_r = implicit_rewards(pol_c, pol_r, ref_c, ref_r, beta=beta)
    return {
        "dpo_loss": dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=beta).item(),
        "reward_accuracy": (rw_c > rw_r).float().mean().item(),
        "reward_margin": (rw_c - rw_r).mean().item(),
        "chosen_logps": pol_c.mean().item(),
        "rejected_logps": pol_r.mean().item(),
        "chosen_logratio": (pol_c - ref_c).mean().item(),
        "rejected_logratio": (pol_r - ref_r).mean().item(),
        "chosen_below_ref": (pol_c < ref_c - 1e-6).float().mean().item(),
    }


def train_dpo(world, cfg: DPOConfig = DPOConfig()):
    """Train a copy of the SFT policy on the world's training pairs; returns (policy, history)."""
    torch.manual_seed(cfg.seed)
    policy = world.new_policy()
    train = pair_data(world, "train", cfg.pairs)
    watched = train if cfg.monitor == "train" else pair_data(world, "heldout", cfg.pairs)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history = History("train_loss")

    def measure() -> dict:
        policy.eval()
        row = {**evaluation_metrics(world, policy, cfg.seed, cfg.eval_greedy),
               **pair_metrics(policy, watched, cfg.beta)}
        policy.train()
        return row

    def loss_on(batch: PairData) -> torch.Tensor:
        pol_c, pol_r = pair_logps(policy, batch)
        return preference_loss(cfg, pol_c, pol_r, batch.ref_chosen_logps, batch.ref_rejected_logps,
                               batch.chosen_lengths, batch.rejected_lengths)

    return fit_pairs(policy, opt, loss_on, train, cfg, g, history, measure)
