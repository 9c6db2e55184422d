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

Where each method lives: its loss (a pure function of tensors, exported here) and the loop that
trains a toy-world policy with it (``train_*(world, cfg) -> (policy, history)``).

    method     loss                                             training loop
    PPO        ppo.py (+ advantages.gae, kl.kl_k1)              ppo_train.py
    ReMax      reinforce.py (+ advantages.remax_advantages)     remax_train.py
    GRPO       grpo.py (+ advantages.grpo_advantages)           grpo_train.py
    RLOO       grpo.py (+ advantages.rloo_advantages)           grpo_train.py   advantage="rloo"
    Dr. GRPO   grpo.py, aggregation "seq-mean-token-sum-norm"   grpo_train.py   scale_rewards=False
    DAPO       grpo.py, aggregation "token-mean"                grpo_train.py   (its token-level loss only)
    DPO        dpo.py dpo_loss                                  dpo_train.py    loss="dpo"
    IPO        dpo.py ipo_loss                                  dpo_train.py    loss="ipo"
    DPOP       dpo.py dpop_loss                                 dpo_train.py    loss="dpop"
    SimPO      dpo.py simpo_loss                                dpo_train.py    loss="simpo"
    TDPO       tdpo.py (tdpo_loss, sequential_kl)               tdpo_train.py
    ORPO       orpo.py (orpo_loss, log_odds)                    orpo_train.py

Shared modules:

- ``validate``      the input checks of every public function
- ``masking``       ``masked_sum``, ``masked_mean``, ``masked_var`` on the one select,
                    ``select_or_zero`` (defined in ``teachkit.toy.masking``)
- ``advantages``    GAE, whitening and the group / greedy / leave-one-out baselines
- ``kl``            the k1, k2, k3 estimators of KL(π ‖ π_ref)
- ``reward``        the Bradley–Terry loss of reward modelling
- ``history``       ``History`` and ``HISTORY_KEYS``: the rows every loop logs
- ``onpolicy``      what PPO, ReMax and GRPO share: sample, score, log-probs and entropy
- ``offpolicy``     what DPO, TDPO and ORPO share: ``PairData`` with the reference cached, the
                    pair forward pass, ``fit_pairs`` (the loop itself)
- ``costs``         memory and time a method costs (models held, optimizer state, step peak)
- ``runner``        the showdown: any method under one label budget (``run_method``)
- ``showdown_data`` builds the showdown's stored runs (``make data``); tables and selections of runs
- ``landscapes``    what the hands-on widgets draw: pure functions of a few numbers
"""

from ..toy.masking import select_or_zero
from . import validate
from .advantages import gae, grpo_advantages, remax_advantages, rloo_advantages, whiten
from .dpo import dpo_loss, dpop_loss, implicit_rewards, ipo_loss, sequence_logps, simpo_loss
from .grpo import AGGREGATIONS, aggregate_loss, grpo_loss
from .kl import kl_k1, kl_k2, kl_k3
from .masking import masked_mean, masked_sum, masked_var
from .orpo import log1mexp, log_odds, orpo_loss
from .ppo import clip_fraction, ppo_policy_loss, ppo_value_loss
from .reinforce import reinforce_loss
from .reward import bradley_terry_loss
from .tdpo import sequential_kl, tdpo_loss, tdpo_rewards
from .validate import check_mask, check_same_shape

__all__ = [
    "validate", "check_mask", "check_same_shape", "masked_mean", "masked_sum", "masked_var",
    "select_or_zero", "bradley_terry_loss",
    # off-policy
    "dpo_loss", "dpop_loss", "implicit_rewards", "ipo_loss", "sequence_logps", "simpo_loss",
    "log1mexp", "log_odds", "orpo_loss", "sequential_kl", "tdpo_loss", "tdpo_rewards",
    # on-policy
    "gae", "grpo_advantages", "remax_advantages", "rloo_advantages", "whiten",
    "AGGREGATIONS", "aggregate_loss", "grpo_loss", "kl_k1", "kl_k2", "kl_k3",
    "clip_fraction", "ppo_policy_loss", "ppo_value_loss", "reinforce_loss",
]
