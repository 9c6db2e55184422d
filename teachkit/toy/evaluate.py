"""Evaluate a policy in the toy world: gold reward, proxy reward, KL to the reference, length.

KL to the reference. For completions y ~ π, the sequence KL is
``KL(π‖π_ref) = E_y Σ_t KL(π(·|x, y_<t) ‖ π_ref(·|x, y_<t))``. We sum the *full-vocabulary* KL at
each sampled prefix (a Rao–Blackwellised estimator: unbiased and never negative, with far less
variance than the sampled log-ratio Σ_t log π/π_ref). With ``greedy=True`` it is the KL along the
greedy path, a diagnostic rather than an expectation.
"""

from __future__ import annotations

import torch

from .generate import Rollout, completion_logits, generate
from .masking import select_or_zero

__all__ = ["evaluate_policy", "kl_to_reference"]


@torch.no_grad()
def kl_to_reference(policy, reference, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """Per-sequence Σ_t KL(π(·|prefix) ‖ π_ref(·|prefix)) over the masked tokens, (B,)."""
    logp = torch.log_softmax(completion_logits(policy, rollout.prompts, rollout.completions) / temperature, -1)
    logq = torch.log_softmax(completion_logits(reference, rollout.prompts.to(reference.device),
                                               rollout.completions.to(reference.device)) / temperature, -1)
    per_token = (logp.exp() * (logp - logq.to(logp.device))).sum(-1)
    keep = rollout.mask.to(per_token.device).bool()
    return select_or_zero(per_token, keep).sum(1).cpu()


@torch.no_grad()
def evaluate_policy(world, policy, prompts: torch.Tensor | None = None, greedy: bool = False,
                    seed: int = 0, temperature: float = 1.0) -> dict[str, float]:
    """Sample (or decode greedily) on ``world.eval_prompts`` and report plain floats:

    gold_reward, proxy_reward (means), kl_to_ref (mean sequence KL to the SFT reference),
    mean_length (completion tokens, EOS included), eos_rate (fraction that emitted EOS),
    gold_std, and n (number of prompts).
    """
    prompts = world.eval_prompts if prompts is None else prompts
    g = torch.Generator().manual_seed(seed)
    rollout = generate(policy, prompts, world.task.max_new_tokens, temperature=temperature,
                       greedy=greedy, generator=g)
    gold = world.gold_reward(rollout.prompts, rollout.completions, rollout.mask)
    proxy = world.proxy_reward(rollout.prompts, rollout.completions, rollout.mask)
    kl = kl_to_reference(policy, world.reference, rollout, temperature)
    eos = (rollout.completions == world.task.tokenizer.eos_id) & rollout.mask.bool()
    return {
        "gold_reward": gold.mean().item(),
        "proxy_reward": proxy.mean().item(),
        "kl_to_ref": kl.mean().item(),
        "mean_length": rollout.mask.sum(1).float().mean().item(),
        "eos_rate": eos.any(1).float().mean().item(),
        "gold_std": gold.std().item() if len(gold) > 1 else 0.0,
        "n": float(len(gold)),
    }
