"""Bradley–Terry reward modelling.

Bradley–Terry says the probability that a human prefers completion c over r is
``P(c > r) = σ(r_c − r_r)``. Maximum likelihood on labelled pairs gives the loss
``−log σ(r_c − r_r)``, averaged over pairs. Only reward *differences* are identified, so a reward
model is defined up to a constant shift per prompt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .validate import check_pair_batch

__all__ = ["bradley_terry_loss"]


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Mean of −log σ(r_c − r_r) over pairs; inputs are (B,) floating rewards, B ≥ 1. Returns a 0-dim tensor."""
    check_pair_batch(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
