"""PPO for RLHF on the toy world, in one readable loop (CleanRL style).

    policy, history = train_ppo(world, PPOConfig())

Stable signatures (the showdown runner relies on them):
    PPOConfig(...)                         every knob, defaults tuned for the default task
    train_ppo(world, cfg) -> (policy, history)

Sampling, scoring and log-probs are shared with the ReMax and GRPO loops (:mod:`.onpolicy`), the
history with every loop (:mod:`.history`).

Four models: the **policy** (trainable), the **critic** (trainable: a copy of the reward model,
whose scalar head now predicts values), the frozen **reference** (the SFT policy) and the frozen
**reward model**. One iteration:

1. sample one completion per prompt from the policy (``samples_generated += B``);
2. score it with the reward model (``reward_queries += B``) and build the per-token reward
   r_t = −β·KL_t + 1[t = last]·score, with KL_t = log π_old(y_t) − log π_ref(y_t) (k1);
3. critic values V_t, then GAE advantages and returns; whiten the advantages;
4. ``ppo_epochs`` passes over shuffled minibatches of the clipped policy loss plus
   ``vf_coef`` × the clipped value loss. In the first minibatch π_θ = π_old, so ρ = 1 exactly:
   ``history["first_ratio_dev"]`` records max |ρ − 1| there (it must be 0).

``history`` keys, logged every ``eval_every`` iterations (and at 0): ``HISTORY_KEYS`` (pairs_seen
is 0), and train_score, entropy, clip_fraction, approx_kl, policy_loss, value_loss, mean_length,
first_ratio_dev (averages over the iterations since the last log). With ``profile_step`` set,
also the cost figures of :func:`teachkit.rlhf.costs.cost_summary`, one value each.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..toy.masking import select_or_zero
from ..toy.generate import Rollout
from ..toy.world import frozen
from .advantages import gae, whiten
from .costs import StepPeak, Timer, cost_summary, model_costs
from .history import History, evaluation_metrics
from .kl import kl_k1, kl_k3
from .masking import masked_mean
from .onpolicy import check_onpolicy_config, logprobs_and_entropy, sample_rollout, score
from .ppo import clip_fraction, ppo_policy_loss, ppo_value_loss

__all__ = ["PPOConfig", "train_ppo"]


@dataclass
class PPOConfig:
    steps: int = 40              # PPO iterations: one rollout batch + its updates each
    batch_size: int = 64         # prompts (= completions) per rollout
    minibatch_size: int = 32
    ppo_epochs: int = 4
    lr: float = 3e-4             # policy
    critic_lr: float = 1e-3
    beta: float = 0.05           # KL coefficient in the per-token reward
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    value_clip_eps: float = 0.2
    vf_coef: float = 0.1
    whiten_rewards: bool = False
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    reward: str = "proxy"        # "proxy" (the reward model) or "gold" (the task's own reward)
    eval_every: int = 10
    seed: int = 0
    profile_step: int | None = None  # measure memory (torch.profiler) at this iteration

    def __post_init__(self) -> None:
        check_onpolicy_config(self)
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of minibatch_size ({self.minibatch_size})")


# ----------------------------------------------------------------------------- the loop

@dataclass
class PPOBatch:
    """One rollout and what PPO's updates need from it, all computed before the first update."""

    roll: Rollout
    old_logp: torch.Tensor      # (B, T) log π_old: the policy that sampled
    old_values: torch.Tensor    # (B, T) the critic's values at sampling time
    advantages: torch.Tensor    # (B, T) GAE, whitened
    returns: torch.Tensor       # (B, T) the critic's targets
    scores: torch.Tensor        # (B,) the reward of each completion


@torch.no_grad()
def ppo_batch(world, policy, critic, reference, cfg: PPOConfig, g: torch.Generator) -> PPOBatch:
    """Steps 1–3 of an iteration: sample, build the per-token reward, GAE (no gradient)."""
    task = world.task
    prompts = task.sample_prompts(cfg.batch_size, g)
    roll = sample_rollout(policy, prompts, task.max_new_tokens, cfg.temperature, g)
    mask = roll.mask
    T, P = mask.shape[1], prompts.shape[1]
    old_logp, _ = logprobs_and_entropy(policy, roll, cfg.temperature)
    ref_logp, _ = logprobs_and_entropy(reference, roll, cfg.temperature)
    old_values = critic.values(torch.cat([roll.prompts, roll.completions], 1))[:, P - 1:P + T - 1]
    # the per-token reward: −β·KL_t everywhere, the score added at the last real token
    scores = score(world, roll, cfg.reward)
    rewards = -cfg.beta * kl_k1(old_logp, ref_logp)
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(cfg.batch_size), last] += scores
    if cfg.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.gae_lambda)
    return PPOBatch(roll, old_logp, old_values, whiten(advantages, mask), returns, scores)


def ppo_update(policy, critic, optimizer, batch: PPOBatch, mb: torch.Tensor, cfg: PPOConfig,
               first: bool) -> dict[str, torch.Tensor]:
    """Step 4, one minibatch ``mb`` (indices into the batch): the clipped policy loss plus ``vf_coef``
    × the clipped value loss, one clipped Adam step; returns the minibatch's statistics.

    In the first minibatch π_θ = π_old, so ρ = 1 exactly: ``first_ratio_dev``, max |ρ − 1| there,
    must be 0 (anything else means the log-probs of sampling and of training disagree).
    """
    roll = batch.roll
    sub = Rollout(roll.prompts[mb], roll.completions[mb], roll.mask[mb])
    T, P = roll.mask.shape[1], roll.prompts.shape[1]
    old_logp = batch.old_logp[mb]
    logp, entropy = logprobs_and_entropy(policy, sub, cfg.temperature)
    values = critic.values(torch.cat([sub.prompts, sub.completions], 1))[:, P - 1:P + T - 1]
    pg_loss = ppo_policy_loss(logp, old_logp, batch.advantages[mb], sub.mask, cfg.clip_eps)
    vf_loss = ppo_value_loss(values, batch.old_values[mb], batch.returns[mb], sub.mask, cfg.value_clip_eps)
    loss = pg_loss + cfg.vf_coef * vf_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
    torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        stats = {"clip_fraction": clip_fraction(logp, old_logp, sub.mask, cfg.clip_eps),
                 "approx_kl": masked_mean(kl_k3(old_logp, logp), sub.mask),
                 "policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(),
                 "entropy": masked_mean(entropy, sub.mask)}
        if first:
            ratio_dev = (torch.exp(logp - old_logp) - 1).abs()
            stats["first_ratio_dev"] = select_or_zero(ratio_dev, sub.mask.bool()).max()
    return stats


def train_ppo(world, cfg: PPOConfig = PPOConfig()):
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    policy = world.new_policy()
    critic = copy.deepcopy(world.reward_model).train()   # value head initialised from the reward model
    for p in critic.parameters():
        p.requires_grad_(True)
    reference = frozen(world.reference)
    optimizer = torch.optim.Adam([{"params": policy.parameters(), "lr": cfg.lr},
                                  {"params": critic.parameters(), "lr": cfg.critic_lr}], eps=1e-5)
    history = History("train_score", "entropy", "clip_fraction", "approx_kl", "policy_loss",
                      "value_loss", "mean_length", "first_ratio_dev")
    timer = Timer()

    def measure() -> dict[str, float]:
        return evaluation_metrics(world, policy, cfg.seed)

    history.log(0, measure)
    history.start_clock()
    peak_bytes = 0
    for step in range(1, cfg.steps + 1):
        profiling = step == cfg.profile_step
        peak = StepPeak() if profiling else nullcontext()
        with timer(record=not profiling), peak:
            batch = ppo_batch(world, policy, critic, reference, cfg, g)
            history.samples += cfg.batch_size
            history.queries += cfg.batch_size
            # 4. PPO epochs over minibatches
            first = True
            for _ in range(cfg.ppo_epochs):
                order = torch.randperm(cfg.batch_size, generator=g)
                for mb in order.split(cfg.minibatch_size):
                    history.add(**ppo_update(policy, critic, optimizer, batch, mb, cfg, first))
                    first = False
            history.add(train_score=batch.scores.mean(), mean_length=batch.roll.mask.sum(1).float().mean())
        if profiling:
            peak_bytes = peak.bytes
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.log(step, measure)
    if cfg.profile_step:
        costs = model_costs({"policy": policy, "critic": critic, "reference": reference,
                             "reward_model": world.reward_model}, [optimizer])
        history.add_costs(cost_summary(costs, peak_bytes, timer.median))
    policy.eval()
    return policy, history.data
