"""From the toy to TRL: the toy GPT as a ``transformers`` model, and TRL's losses on teachkit's tensors.

Needs the ``[trl]`` extra (``pip install -e ".[test,trl]"``; ``make lab`` / ``make test`` install it).
``teachkit.rlhf`` never imports this package, so the course's own losses do not depend on TRL.

- ``hf_model``    ``to_hf(gpt)``, ``from_hf(hf, config)``, ``hf_tokenizer(task)``, ``gpt2_config``,
                  ``weight_map(n_layer)``
- ``trl_losses``  TRL's loss code called on our tensors: ``trl_grpo_loss``, ``trl_rloo_loss``,
                  ``trl_dpo_loss``, ``trl_odds_ratio_loss``, ``trl_orpo_forward``, and TRL's advantages
- ``trl_runs``    short DPOTrainer / GRPOTrainer runs on a toy task, scored by its gold reward
- ``bench``       ``python -m teachkit.bridge.bench --json PATH``: a teachkit step against TRL's trainer

Nothing here downloads: configs and tokenizers are built locally, and ``HF_HUB_OFFLINE`` is set.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")            # no hub at run time
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO lives in trl.experimental

from .hf_model import from_hf, gpt2_config, hf_tokenizer, to_hf  # noqa: E402

__all__ = ["to_hf", "from_hf", "hf_tokenizer", "gpt2_config"]
