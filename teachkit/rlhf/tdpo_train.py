"""TDPO training on the toy world's pairs, with DPO in the same loop for a like-for-like comparison.

    policy, history = train_tdpo(world, TDPOConfig(variant=2))   # variant 1, 2, or 0 = plain DPO

The loop is ``train_dpo``'s with one addition: the policy's full-vocabulary logits at every
completion position, compared with the reference's (cached once, like its log-probs), give the
sequential KL of each completion (``teachkit.rlhf.sequential_kl``). TDPO puts the difference of
the two sequential KLs into the margin; ``variant=0`` trains with DPO's loss but still *measures*
the sequential KLs, which is how notebook 07 shows DPO's rejected-side KL running away.

``history`` has the keys of ``train_dpo`` plus ``seq_kl_chosen`` and ``seq_kl_rejected`` (means
over the held-out pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dpo import dpo_loss
from .dpo_train import pair_metrics
from .history import History, evaluation_metrics
from .offpolicy import PairData, check_offpolicy_config, fit_pairs, pair_data, pair_forward
from .tdpo import sequential_kl, tdpo_loss

__all__ = ["TDPOConfig", "train_tdpo", "pair_logps_and_kls", "seq_kl_metrics"]


@dataclass
class TDPOConfig:
    variant: int = 2             # 1 = TDPO1, 2 = TDPO2, 0 = DPO (with the KLs measured)
    beta: float = 0.1
    alpha: float = 0.5           # TDPO2's weight on the rejected-side KL
    steps: int = 120
    batch_size: int = 64
    lr: float = 3e-5             # TDPO2 stays stable here, where DPO already drifts (notebook 07)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 20
    eval_greedy: bool = True
    pairs: str = "all"           # "all" | "low_edit" | "sampled"
    monitor: str = "heldout"     # pair metrics on the "heldout" or the "train" pairs
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in (0, 1, 2):
            raise ValueError(f"variant must be 0 (DPO), 1 (TDPO1) or 2 (TDPO2), got {self.variant!r}")
        check_offpolicy_config(self)


def pair_logps_and_kls(policy, batch: PairData):
    """Summed log-probs and sequential KLs to the reference of chosen and rejected, (B,) each.

    One pair forward: the full-vocabulary logits it returns beside the log-probs give the KLs.
    """
    pol_c, pol_r, logits_c, logits_r = pair_forward(policy, batch.prompts, batch.chosen, batch.chosen_mask,
                                                    batch.rejected, batch.rejected_mask)
    kl_c = sequential_kl(logits_c, batch.ref_chosen_logits, batch.chosen_mask)
    kl_r = sequential_kl(logits_r, batch.ref_rejected_logits, batch.rejected_mask)
    return pol_c, pol_r, kl_c, kl_r


@torch.no_grad()
def seq_kl_metrics(policy, data: PairData) -> dict[str, float]:
    """Mean sequential KL(π_ref ‖ π_θ) of the chosen and of the rejected completions."""
    _, _, kl_c, kl_r = pair_logps_and_kls(policy, data)
    return {"seq_kl_chosen": kl_c.mean().item(), "seq_kl_rejected": kl_r.mean().item()}


def train_tdpo(world, cfg: TDPOConfig = TDPOConfig()):
    """Train a copy of the SFT policy with TDPO1/TDPO2 (or DPO); returns (policy, history)."""
    torch.manual_seed(cfg.seed)
    policy = world.new_policy()
    train = pair_data(world, "train", cfg.pairs, keep_logits=True)
    watched = train if cfg.monitor == "train" else pair_data(world, "heldout", cfg.pairs, keep_logits=True)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history = History("train_loss")

    def measure() -> dict:
        policy.eval()
        row = {**evaluation_metrics(world, policy, cfg.seed, cfg.eval_greedy),   # columns in this order
               **seq_kl_metrics(policy, watched), **pair_metrics(policy, watched, cfg.beta)}
        policy.train()
        return row

    def loss_on(batch: PairData) -> torch.Tensor:
        pol_c, pol_r, kl_c, kl_r = pair_logps_and_kls(policy, batch)
        if cfg.variant == 0:
            return dpo_loss(pol_c, pol_r, batch.ref_chosen_logps, batch.ref_rejected_logps, beta=cfg.beta)
        ratio_c, ratio_r = pol_c - batch.ref_chosen_logps, pol_r - batch.ref_rejected_logps
        return tdpo_loss(ratio_c, ratio_r, kl_c, kl_r, beta=cfg.beta, alpha=cfg.alpha, variant=cfg.variant)

    return fit_pairs(policy, opt, loss_on, train, cfg, g, history, measure)
