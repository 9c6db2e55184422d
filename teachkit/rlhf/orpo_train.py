"""ORPO training: SFT and preference learning in one stage, with one model, from the base model.

    policy, history = train_orpo(world, ORPOConfig(lam=0.1))

The policy starts from ``world.new_base_model()``, the un-tuned (pre-SFT) model: no SFT stage and
no reference model. Each step scores the chosen and rejected completions of a batch of pairs in one
forward pass, averages their log-probs over the completion tokens (EOS included), and minimises
``orpo_loss``: the NLL of the chosen completion plus λ times the odds-ratio term. (The official
code also puts the prompt tokens into the NLL; our prompts are fixed-format, so we keep to the
completion, like the loss in ``teachkit.rlhf.orpo``.)

``history`` has the contract keys (``kl_to_ref`` is measured against the world's SFT reference,
which ORPO never sees: it says how far ORPO ends from where SFT would have put it), plus
``train_loss``, ``greedy_gold_reward``, ``nll``, ``odds_ratio_loss``, ``log_odds_ratio``,
``odds_accuracy`` (fraction of held-out pairs whose chosen completion has the higher odds),
``chosen_mean_logps`` and ``rejected_mean_logps`` (held-out means).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .history import History, evaluation_metrics
from .offpolicy import PairData, check_offpolicy_config, fit_pairs, pair_data, pair_mean_logps
from .orpo import log_odds, orpo_loss

__all__ = ["ORPOConfig", "train_orpo", "orpo_metrics"]


@dataclass
class ORPOConfig:
    lam: float = 0.1             # λ, the weight of the odds-ratio term (TRL's ``beta``)
    steps: int = 200
    batch_size: int = 64
    lr: float = 2e-3             # from a base model: an SFT-sized learning rate
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 25
    eval_greedy: bool = True
    pairs: str = "all"           # "all" | "low_edit" | "sampled"
    monitor: str = "heldout"     # pair metrics on the "heldout" or the "train" pairs
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        check_offpolicy_config(self)


@torch.no_grad()
def orpo_metrics(model, data: PairData, lam: float) -> dict[str, float]:
    """NLL, odds-ratio loss, mean log-odds ratio and odds accuracy on a set of pairs."""
    c, r = pair_mean_logps(model, data)
    ratio = log_odds(c) - log_odds(r)
    return {"nll": (-c.mean()).item(), "odds_ratio_loss": (-F.logsigmoid(ratio).mean()).item(),
            "log_odds_ratio": ratio.mean().item(), "odds_accuracy": (ratio > 0).float().mean().item(),
            "chosen_mean_logps": c.mean().item(), "rejected_mean_logps": r.mean().item(),
            "orpo_loss": orpo_loss(c, r, lam=lam).item()}


def train_orpo(world, cfg: ORPOConfig = ORPOConfig()):
    """Train the base model with ORPO on the world's training pairs; returns (policy, history)."""
    torch.manual_seed(cfg.seed)
    policy = world.new_base_model()
    for p in policy.parameters():
        p.requires_grad_(True)
    train = pair_data(world, "train", cfg.pairs, reference=False)       # ORPO needs no reference
    watched = train if cfg.monitor == "train" else pair_data(world, "heldout", cfg.pairs, reference=False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history = History("train_loss")

    def measure() -> dict:
        policy.eval()
        row = {**evaluation_metrics(world, policy, cfg.seed, cfg.eval_greedy),
               **orpo_metrics(policy, watched, cfg.lam)}
        policy.train()
        return row

    def loss_on(batch: PairData) -> torch.Tensor:
        chosen, rejected = pair_mean_logps(policy, batch)
        return orpo_loss(chosen, rejected, lam=cfg.lam)

    return fit_pairs(policy, opt, loss_on, train, cfg, g, history, measure)
