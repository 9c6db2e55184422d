"""PPO for RLHF on the toy world, in one readable loop (CleanRL style).

    policy, history = train_ppo(world, PPOConfig())

Stable signatures (the showdown runner relies on them):
    PPOConfig(...)                         every knob, defaults tuned for the default task
    train_ppo(world, cfg) -> (policy, history)
    sample_rollout, logprobs_and_entropy, History     helpers shared with the ReMax and GRPO loops

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

``history`` keys, logged every ``eval_every`` iterations (and at 0): step, gold_reward,
proxy_reward, kl_to_ref, seconds, samples_generated, reward_queries, pairs_seen (0), and
train_score, entropy, clip_fraction, approx_kl, policy_loss, value_loss, mean_length,
first_ratio_dev (averages over the iterations since the last log). With ``profile_step`` set,
also the cost figures of :func:`teachkit.rlhf.costs.cost_summary`, one value each.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..toy.generate import Rollout, completion_logits, generate
from .advantages import gae, whiten
from .costs import StepPeak, Timer, cost_summary, model_costs
from .kl import kl_k1, kl_k3
from .masking import masked_mean
from .ppo import clip_fraction, ppo_policy_loss, ppo_value_loss

__all__ = ["PPOConfig", "train_ppo", "sample_rollout", "logprobs_and_entropy", "History", "score"]


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
        _check_common(self)
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of minibatch_size ({self.minibatch_size})")


def _check_common(cfg) -> None:
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.eval_every < 1:
        raise ValueError("steps, batch_size and eval_every must be ≥ 1")
    if cfg.reward not in ("proxy", "gold"):
        raise ValueError(f"reward must be 'proxy' or 'gold', got {cfg.reward!r}")
    if cfg.beta < 0:
        raise ValueError(f"beta must be ≥ 0, got {cfg.beta}")


# ----------------------------------------------------------------------------- shared helpers

def sample_rollout(policy, prompts: torch.Tensor, max_new_tokens: int, temperature: float,
                   generator: torch.Generator, greedy: bool = False) -> Rollout:
    """Completions of ``prompts`` from the current policy (no gradient)."""
    return generate(policy, prompts, max_new_tokens, temperature=temperature, greedy=greedy, generator=generator)


def logprobs_and_entropy(model, roll: Rollout, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (B, T) of the rollout's tokens and the policy's entropy (B, T) at each position."""
    logits = completion_logits(model, roll.prompts, roll.completions).float() / temperature
    logsm = torch.log_softmax(logits, dim=-1)
    logp = logsm.gather(-1, roll.completions[..., None]).squeeze(-1)
    entropy = -(logsm.exp() * logsm).sum(-1)
    return logp, entropy


@torch.no_grad()
def score(world, roll: Rollout, reward: str) -> torch.Tensor:
    """Scalar reward per completion: the reward model's (``"proxy"``) or the task's (``"gold"``)."""
    fn = world.proxy_reward if reward == "proxy" else world.gold_reward
    return fn(roll.prompts, roll.completions, roll.mask).float()


class History:
    """Collects per-iteration statistics and logs their averages with an evaluation of the policy."""

    def __init__(self, world, extra_keys: tuple[str, ...]):
        self.world = world
        self.data: dict[str, list[float]] = {k: [] for k in (
            "step", "gold_reward", "proxy_reward", "kl_to_ref", "seconds",
            "samples_generated", "reward_queries", "pairs_seen") + tuple(extra_keys)}
        self.pending: dict[str, list[float]] = {}
        self.samples = self.queries = 0
        self._start: float | None = None   # the clock starts after the step-0 evaluation
        self._in_eval = 0.0                # evaluation time, kept out of "seconds"

    def add(self, **stats: float) -> None:
        for k, v in stats.items():
            self.pending.setdefault(k, []).append(float(v))

    def log(self, step: int, policy, seed: int) -> None:
        """Evaluate the policy and log one row; ``seconds`` is training time, evaluation excluded."""
        from ..toy.evaluate import evaluate_policy

        t_eval = time.perf_counter()
        seconds = 0.0 if self._start is None else t_eval - self._start - self._in_eval
        metrics = evaluate_policy(self.world, policy, seed=seed)
        if self._start is None:
            self._start = time.perf_counter()
        else:
            self._in_eval += time.perf_counter() - t_eval
        row = {"step": step, "gold_reward": metrics["gold_reward"], "proxy_reward": metrics["proxy_reward"],
               "kl_to_ref": metrics["kl_to_ref"], "seconds": seconds, "samples_generated": self.samples,
               "reward_queries": self.queries, "pairs_seen": 0}
        for k in self.data:
            if k in row:
                self.data[k].append(float(row[k]))
            else:
                vals = self.pending.get(k, [])
                self.data[k].append(sum(vals) / len(vals) if vals else float("nan"))
        self.pending = {}

    def add_costs(self, costs: dict[str, float]) -> None:
        for k, v in costs.items():
            self.data[k] = [float(v)]


def _frozen(model):
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------- the loop

def train_ppo(world, cfg: PPOConfig = PPOConfig()):
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    task = world.task
    policy = world.new_policy()
    critic = copy.deepcopy(world.reward_model).train()   # value head initialised from the reward model
    for p in critic.parameters():
        p.requires_grad_(True)
    reference = _frozen(world.reference)
    optimizer = torch.optim.Adam([{"params": policy.parameters(), "lr": cfg.lr},
                                  {"params": critic.parameters(), "lr": cfg.critic_lr}], eps=1e-5)
    history = History(world, ("train_score", "entropy", "clip_fraction", "approx_kl", "policy_loss",
                              "value_loss", "mean_length", "first_ratio_dev"))
    timer = Timer()
    history.log(0, policy, cfg.seed)
    peak_bytes = 0
    for step in range(1, cfg.steps + 1):
        profiling = step == cfg.profile_step
        peak = StepPeak() if profiling else nullcontext()
        with timer(record=not profiling), peak:
            # 1. rollout
            prompts = task.sample_prompts(cfg.batch_size, g)
            roll = sample_rollout(policy, prompts, task.max_new_tokens, cfg.temperature, g)
            mask = roll.mask
            T = mask.shape[1]
            P = prompts.shape[1]
            with torch.no_grad():
                old_logp, _ = logprobs_and_entropy(policy, roll, cfg.temperature)
                ref_logp, _ = logprobs_and_entropy(reference, roll, cfg.temperature)
                old_values = critic.values(torch.cat([roll.prompts, roll.completions], 1))[:, P - 1:P + T - 1]
                # 2. per-token reward: −β·KL_t everywhere, the score added at the last real token
                scores = score(world, roll, cfg.reward)
                kl = kl_k1(old_logp, ref_logp)
                rewards = -cfg.beta * kl
                last = (mask.sum(1).long() - 1).clamp(min=0)
                rewards[torch.arange(cfg.batch_size), last] += scores
                if cfg.whiten_rewards:
                    rewards = whiten(rewards, mask, shift_mean=False)
                # 3. advantages
                advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.gae_lambda)
                advantages = whiten(advantages, mask)
            history.samples += cfg.batch_size
            history.queries += cfg.batch_size
            # 4. PPO epochs over minibatches
            first = True
            for _ in range(cfg.ppo_epochs):
                order = torch.randperm(cfg.batch_size, generator=g)
                for mb in order.split(cfg.minibatch_size):
                    sub = Rollout(roll.prompts[mb], roll.completions[mb], mask[mb])
                    logp, entropy = logprobs_and_entropy(policy, sub, cfg.temperature)
                    values = critic.values(torch.cat([sub.prompts, sub.completions], 1))[:, P - 1:P + T - 1]
                    pg_loss = ppo_policy_loss(logp, old_logp[mb], advantages[mb], sub.mask, cfg.clip_eps)
                    vf_loss = ppo_value_loss(values, old_values[mb], returns[mb], sub.mask, cfg.value_clip_eps)
                    loss = pg_loss + cfg.vf_coef * vf_loss
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    with torch.no_grad():
                        if first:
                            ratio_dev = (torch.exp(logp - old_logp[mb]) - 1).abs()
                            dev = torch.where(sub.mask.bool(), ratio_dev, 0).max()
                            history.add(first_ratio_dev=dev)
                            first = False
                        history.add(clip_fraction=clip_fraction(logp, old_logp[mb], sub.mask, cfg.clip_eps),
                                    approx_kl=masked_mean(kl_k3(old_logp[mb], logp), sub.mask),
                                    policy_loss=pg_loss, value_loss=vf_loss,
                                    entropy=masked_mean(entropy, sub.mask))
            history.add(train_score=scores.mean(), mean_length=mask.sum(1).float().mean())
        if profiling:
            peak_bytes = peak.bytes
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.log(step, policy, cfg.seed)
    if cfg.profile_step:
        costs = model_costs({"policy": policy, "critic": critic, "reference": reference,
                             "reward_model": world.reward_model}, [optimizer])
        history.add_costs(cost_summary(costs, peak_bytes, timer.median))
    policy.eval()
    return policy, history.data
