"""What the on-policy loops (PPO, ReMax, GRPO and its variants) share: sample, score, log-probs.

    roll = sample_rollout(policy, prompts, max_new_tokens, temperature, generator)   # no gradient
    # group_size=G on both when prompts are G copies each (GRPO, RLOO): each prompt runs once
    rewards = score(world, roll, "proxy")                  # (B,): the reward model's, or "gold"
    logp, entropy = logprobs_and_entropy(policy, roll, temperature)     # (B, T) each, with gradient
    check_onpolicy_config(cfg)                             # the checks every on-policy config shares

Each loop then differs only in what it makes of these: PPO's critic and GAE, ReMax's greedy
baseline, GRPO's group baseline. The history they log is :class:`teachkit.rlhf.history.History`.
"""

from __future__ import annotations

import torch

from ..toy.generate import Rollout, completion_logits, generate

__all__ = ["REWARDS", "check_onpolicy_config", "sample_rollout", "score", "logprobs_and_entropy"]

REWARDS = ("proxy", "gold")


def check_onpolicy_config(cfg) -> None:
    """Checks shared by the PPO, ReMax and GRPO configs: counts ≥ 1, a known reward, β ≥ 0."""
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.eval_every < 1:
        raise ValueError("steps, batch_size and eval_every must be ≥ 1")
    if cfg.reward not in REWARDS:
        raise ValueError(f"reward must be 'proxy' or 'gold', got {cfg.reward!r}")
    if cfg.beta < 0:
        raise ValueError(f"beta must be ≥ 0, got {cfg.beta}")


def sample_rollout(policy, prompts: torch.Tensor, max_new_tokens: int, temperature: float,
                   generator: torch.Generator, greedy: bool = False, group_size: int = 1) -> Rollout:
    """Completions of ``prompts`` from the current policy (no gradient); ``group_size``: see below."""
    return generate(policy, prompts, max_new_tokens, temperature=temperature, greedy=greedy, generator=generator,
                    group_size=group_size)


@torch.no_grad()
def score(world, roll: Rollout, reward: str) -> torch.Tensor:
    """Scalar reward per completion: the reward model's (``"proxy"``) or the task's (``"gold"``)."""
    fn = world.proxy_reward if reward == "proxy" else world.gold_reward
    return fn(roll.prompts, roll.completions, roll.mask).float()


def logprobs_and_entropy(model, roll: Rollout, temperature: float = 1.0,
                         group_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (B, T) of the rollout's tokens and the policy's entropy (B, T) at each position.

    Both from one forward pass; values after EOS are computed too (the losses select them away).
    ``group_size=G`` (GRPO's layout, G copies of each prompt) runs each prompt once and shares its
    keys and values with the G completions: the same values up to float rounding, fewer positions.
    """
    logits = completion_logits(model, roll.prompts, roll.completions, group_size).float() / temperature
    logsm = torch.log_softmax(logits, dim=-1)
    logp = logsm.gather(-1, roll.completions[..., None]).squeeze(-1)
    entropy = -(logsm.exp() * logsm).sum(-1)
    return logp, entropy
