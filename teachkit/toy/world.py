"""The toy world every RLHF notebook starts from: task, SFT reference, reward model, pairs.

    world = load_world()                 # the default task, "arithmetic"
    policy = world.new_policy()          # a fresh trainable copy of the SFT policy
    rollout = generate(policy, world.eval_prompts, world.task.max_new_tokens)
    world.gold_reward(*rollout.__dict__.values()), world.proxy_reward(...)

Everything is loaded from ``data/toy_<task>_{policy,reward,pairs}.pt``, made by ``make data``
(``python -m teachkit.toy.build_data``). The files are versioned and checksummed
(``teachkit.artifacts``): a missing, stale or corrupt file raises ``ArtifactError`` telling the
learner to run ``make data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import artifacts
from .model import GPT, GPTConfig
from .pairs import PairSplit, PreferencePairs
from .reward_model import sequence_rewards
from .tasks import DEFAULT_TASK, Task, get_task

__all__ = ["ToyWorld", "load_world", "frozen", "DATA_VERSION", "data_path"]

DATA_VERSION = 1
KINDS = {"policy": "toy-policy", "reward": "toy-reward-model", "pairs": "toy-pairs"}


def data_path(task: str, what: str):
    """``data/toy_<task>_<what>.pt`` with ``what`` in policy, reward, pairs."""
    if what not in KINDS:
        raise ValueError(f"what must be one of {sorted(KINDS)}, got {what!r}")
    return artifacts.path_for(f"toy_{task}_{what}.pt")


def frozen(model: GPT) -> GPT:
    """``model`` in evaluation mode with no parameter asking for a gradient: a reference or a reward model."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _build(config: dict, state: dict, device) -> GPT:
    model = GPT(GPTConfig(**config))
    model.load_state_dict(state)
    return model.to(device)


@dataclass
class ToyWorld:
    """The shared starting point: read the attributes, call the methods; never edit in place."""

    task: Task
    config: GPTConfig                 # the policy's architecture
    reference: GPT                    # frozen SFT policy
    reward_model: GPT                 # frozen Bradley–Terry proxy reward (value head)
    pairs: PairSplit                  # preference pairs: .train and .heldout
    eval_prompts: torch.Tensor        # fixed evaluation prompts (every prompt of the task, repeated)
    sft_metrics: dict = field(default_factory=dict)
    reward_metrics: dict = field(default_factory=dict)
    sft_history: dict = field(default_factory=dict)
    reward_history: dict = field(default_factory=dict)
    _sft_state: dict = field(default_factory=dict, repr=False)
    _base_state: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.reference.device

    def new_policy(self, value_head: bool = False, seed: int = 0) -> GPT:
        """A fresh trainable copy of the SFT policy (with a new, seeded value head if asked)."""
        cfg = GPTConfig(**{**self.config.to_dict(), "value_head": value_head})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GPT(cfg)
        model.load_state_dict(self._sft_state, strict=not value_head)
        return model.to(self.device).train()

    def new_base_model(self) -> GPT:
        """The un-tuned model SFT started from (for ORPO, which needs no SFT stage)."""
        return _build(self.config.to_dict(), self._base_state, self.device).train()

    @torch.no_grad()
    def proxy_reward(self, prompts: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The reward model's score, (B,) on CPU. No gradient: it is the environment's reward."""
        self.task._check(prompts, completions, mask)
        return sequence_rewards(self.reward_model, prompts, completions, mask).float().cpu()

    def gold_reward(self, prompts: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The task's true reward, written as code, (B,) on CPU."""
        return self.task.gold_reward(prompts.cpu(), completions.cpu(), mask.cpu())

    def sample_prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.task.sample_prompts(n, generator).to(self.device)

    def __repr__(self) -> str:
        return (f"ToyWorld(task={self.task.name!r}, {self.reference.num_parameters():,} parameters, "
                f"{self.pairs}, {len(self.eval_prompts)} eval prompts)")


def load_world(task: str = DEFAULT_TASK, device: str | torch.device = "cpu") -> ToyWorld:
    """Load the stored toy world of ``task`` (``"arithmetic"``, the default, or ``"length"``)."""
    task_obj = get_task(task)
    name = task_obj.name
    policy = artifacts.load(data_path(name, "policy"), KINDS["policy"], DATA_VERSION)
    reward = artifacts.load(data_path(name, "reward"), KINDS["reward"], DATA_VERSION)
    pairs = artifacts.load(data_path(name, "pairs"), KINDS["pairs"], DATA_VERSION)
    for label, payload in (("policy", policy), ("reward", reward), ("pairs", pairs)):
        if payload.get("task") != name:
            raise artifacts.ArtifactError(
                f"{data_path(name, label)} was built for task {payload.get('task')!r}, not {name!r}. "
                "Run `make data` from the repository root to rebuild the data files.")
    config = GPTConfig(**policy["config"])
    reference = frozen(_build(policy["config"], policy["sft_state"], device))
    reward_model = frozen(_build(reward["config"], reward["state"], device))
    split = PairSplit(PreferencePairs(**pairs["train"]), PreferencePairs(**pairs["heldout"]))
    return ToyWorld(task=task_obj, config=config, reference=reference, reward_model=reward_model,
                    pairs=split, eval_prompts=task_obj.eval_prompts().to(device),
                    sft_metrics=dict(policy["metrics"]), reward_metrics=dict(reward["metrics"]),
                    sft_history=dict(policy["history"]), reward_history=dict(reward["history"]),
                    _sft_state=policy["sft_state"], _base_state=policy["base_state"])
