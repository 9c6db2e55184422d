"""The toy world: a tiny GPT, toy tasks with gold rewards, generation, SFT and a reward model.

It sits below ``teachkit.rlhf``, which trains on it, and imports nothing from it.

Modules (each one concept):

- ``model``        ``GPTConfig``, ``GPT`` (pre-LN, ReLU/GELU MLP, KV cache, optional value head)
- ``tasks``        ``get_task(name)``, ``DEFAULT_TASK = "arithmetic"``, and the ``"length"`` bandit
- ``generate``     ``generate``, ``Rollout``, ``eos_mask``, ``completion_logprobs``, ``completion_logits``
- ``masking``      ``select_or_zero``: the one way a mask is applied (select, never multiply)
- ``sft``          ``SFTConfig``, ``train_sft``, ``sft_loss``, ``model_config``, ``new_model``
- ``pairs``        ``PreferencePairs``, ``PairSplit``, ``pairs_from_samples``, ``low_edit_pairs``
- ``reward_model`` Bradley–Terry reward model: ``train_reward_model``, ``sequence_rewards``, ``pair_accuracy``
- ``world``        ``load_world(task) -> ToyWorld`` (the stored SFT policy, reward model and pairs), ``frozen``
- ``evaluate``     ``evaluate_policy(world, policy)``
- ``build_data``   ``make data``: rebuilds ``data/toy_*`` deterministically
"""

from .evaluate import evaluate_policy
from .generate import Rollout, completion_logits, completion_logprobs, eos_mask, generate, sequence_logprob
from .model import GPT, GPTConfig
from .tasks import DEFAULT_TASK, get_task
from .world import ToyWorld, load_world

__all__ = ["GPT", "GPTConfig", "DEFAULT_TASK", "get_task", "Rollout", "generate", "eos_mask",
           "completion_logprobs", "completion_logits", "sequence_logprob", "ToyWorld", "load_world",
           "evaluate_policy"]
