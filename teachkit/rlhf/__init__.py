"""The RLHF family from scratch: losses, advantages and KL estimators.

Conventions (the course text and the tests rely on them):
- inputs are torch tensors; ``logp``, ``old_logp``, ``ref_logp`` are (B, T) per-token log-probs
  of the sampled completion tokens; ``*_logps`` are (B,) summed completion log-probs;
- ``mask`` is (B, T) with 1 on completion tokens up to and including the first EOS;
- every loss returns a 0-dim tensor;
- values under mask 0 never affect a result, not even NaN;
- mismatched shapes raise ValueError with a readable message.
"""

from .masking import check_mask, check_same_shape, masked_mean, masked_sum, masked_var
from .reward import bradley_terry_loss

__all__ = [
    "check_mask", "check_same_shape", "masked_mean", "masked_sum", "masked_var",
    "bradley_terry_loss",
]

# --- off-policy (issue 5) ---
from .dpo import dpo_loss, dpop_loss, implicit_rewards, ipo_loss, sequence_logps, simpo_loss
from .orpo import log1mexp, log_odds, orpo_loss
from .tdpo import sequential_kl, tdpo_loss, tdpo_rewards

__all__ += [
    "dpo_loss", "dpop_loss", "implicit_rewards", "ipo_loss", "sequence_logps", "simpo_loss",
    "log1mexp", "log_odds", "orpo_loss", "sequential_kl", "tdpo_loss", "tdpo_rewards",
]

# --- on-policy (issue 4) ---
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
