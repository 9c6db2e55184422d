"""The RLHF family from scratch: losses, advantages and KL estimators.

Conventions (the course text and the tests rely on them):
- inputs are torch tensors; ``logp``, ``old_logp``, ``ref_logp`` are (B, T) per-token log-probs
  of the sampled completion tokens; ``*_logps`` are (B,) summed completion log-probs;
- ``mask`` is (B, T) with 1 on completion tokens up to and including the first EOS; any dtype
  holding only 0 and 1 (bool, int, float) is accepted;
- values are floating point: integer or bool values are rejected with a TypeError, never cast;
- every loss returns a 0-dim tensor;
- values under mask 0 never affect a result or a gradient, not even NaN or inf
  (``masking.select_or_zero`` selects before any arithmetic); NaN under mask 1 propagates;
- bad input raises ValueError or TypeError naming the argument: mismatched shapes, masks that
  are not 0/1, hyperparameters that are not finite numbers in their documented range;
- **empty batch: an error.** Every public function raises ValueError when its batch is empty
  (B = 0 sequences or pairs, T = 0 positions, or a mask with no 1 anywhere). A mask row of all 0
  inside a non-empty batch is fine: it contributes 0.

All checks live in ``validate.py``; ``teachkit.check`` uses the same ones.
"""

from . import validate
from .masking import masked_mean, masked_sum, masked_var, select_or_zero
from .reward import bradley_terry_loss
from .validate import check_mask, check_same_shape

__all__ = [
    "validate", "check_mask", "check_same_shape", "masked_mean", "masked_sum", "masked_var",
    "select_or_zero", "bradley_terry_loss",
]

# --- off-policy ---
from .dpo import dpo_loss, dpop_loss, implicit_rewards, ipo_loss, sequence_logps, simpo_loss
from .orpo import log1mexp, log_odds, orpo_loss
from .tdpo import sequential_kl, tdpo_loss, tdpo_rewards

__all__ += [
    "dpo_loss", "dpop_loss", "implicit_rewards", "ipo_loss", "sequence_logps", "simpo_loss",
    "log1mexp", "log_odds", "orpo_loss", "sequential_kl", "tdpo_loss", "tdpo_rewards",
]

# --- on-policy ---
from .advantages import gae, grpo_advantages, remax_advantages, rloo_advantages, whiten
from .grpo import AGGREGATIONS, aggregate_loss, grpo_loss
from .kl import kl_k1, kl_k2, kl_k3
from .ppo import clip_fraction, ppo_policy_loss, ppo_value_loss
from .reinforce import reinforce_loss

__all__ += [
    "gae", "grpo_advantages", "remax_advantages", "rloo_advantages", "whiten",
    "AGGREGATIONS", "aggregate_loss", "grpo_loss", "kl_k1", "kl_k2", "kl_k3",
    "clip_fraction", "ppo_policy_loss", "ppo_value_loss", "reinforce_loss",
]
