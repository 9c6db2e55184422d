"""GRPO (DeepSeekMath) and its variants on the toy world, in one loop. No critic.

    policy, history = train_grpo(world, GRPOConfig())
    train_grpo(world, GRPOConfig(aggregation="seq-mean-token-sum-norm", scale_rewards=False))  # Dr. GRPO
    train_grpo(world, GRPOConfig(advantage="rloo"))                                           # RLOO

Stable signatures: ``GRPOConfig``, ``train_grpo(world, cfg) -> (policy, history)``.

One iteration, for N prompts and a group of G samples each:

1. sample G completions per prompt (``samples_generated += N·G``) and score them
   (``reward_queries += N·G``); the G copies of a prompt share its forward pass, in sampling and
   in every log-prob pass (``group_size=G``, see :mod:`teachkit.toy.generate`);
2. group advantages: (r − mean_g)/(std_g + 1e-4) (``scale_rewards=False``: r − mean_g, Dr. GRPO),
   or RLOO's leave-one-out r_i − mean_{j≠i} r_j; one scalar per completion, for all its tokens;
3. ``num_iterations`` (μ) gradient steps on ``grpo_loss``: the clipped surrogate plus β·k3 to the
   reference *in the loss*, aggregated over tokens by ``aggregation``. With μ = 1 the ratio is 1
   and the clip never acts; with μ > 1 later steps see ρ ≠ 1.

``history`` keys: ``HISTORY_KEYS``, plus loss, train_score, frac_zero_std (groups whose rewards are
all equal: zero advantage, zero gradient), clip_fraction, kl_k3 (the in-loss KL on the samples),
entropy, mean_length, and the mean length of the completions the *gold* reward counts as right
and as wrong (length_right, length_wrong). With ``profile_step`` set, the cost figures.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..toy.world import frozen
from .advantages import grpo_advantages, rloo_advantages
from .costs import StepPeak, Timer, cost_summary, model_costs
from .grpo import AGGREGATIONS, grpo_loss
from .history import History, evaluation_metrics
from .kl import kl_k3
from .masking import masked_mean
from .onpolicy import check_onpolicy_config, logprobs_and_entropy, sample_rollout, score
from .ppo import clip_fraction

__all__ = ["GRPOConfig", "train_grpo"]


@dataclass
class GRPOConfig:
    steps: int = 40
    prompts_per_step: int = 16
    group_size: int = 8          # G
    num_iterations: int = 2      # μ: gradient steps per batch
    lr: float = 3e-4
    beta: float = 0.04           # k3 KL coefficient in the loss
    clip_eps: float = 0.2
    aggregation: str = "seq-mean-token-mean"   # the paper; "token-mean" (DAPO); "seq-mean-token-sum-norm" (Dr. GRPO)
    scale_rewards: bool = True   # divide by the group std (False: Dr. GRPO)
    advantage: str = "grpo"      # "grpo" or "rloo"
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    reward: str = "proxy"        # "proxy" (reward model) or "gold" (verifiable reward)
    eval_every: int = 10
    seed: int = 0
    profile_step: int | None = None

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.group_size

    def __post_init__(self) -> None:
        check_onpolicy_config(self)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.advantage not in ("grpo", "rloo"):
            raise ValueError(f"advantage must be 'grpo' or 'rloo', got {self.advantage!r}")
        if self.group_size < 2 or self.num_iterations < 1:
            raise ValueError("group_size must be ≥ 2 and num_iterations ≥ 1")


def train_grpo(world, cfg: GRPOConfig = GRPOConfig()):
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    task = world.task
    policy = world.new_policy()
    reference = frozen(world.reference)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    history = History("loss", "train_score", "frac_zero_std", "clip_fraction", "kl_k3", "entropy",
                      "mean_length", "length_right", "length_wrong")
    timer = Timer()

    def measure() -> dict[str, float]:
        return evaluation_metrics(world, policy, cfg.seed)

    history.log(0, measure)
    history.start_clock()
    peak_bytes = 0
    G = cfg.group_size
    for step in range(1, cfg.steps + 1):
        profiling = step == cfg.profile_step
        peak = StepPeak() if profiling else nullcontext()
        with timer(record=not profiling), peak:
            # 1. a group of G samples per prompt, laid out consecutively
            prompts = task.sample_prompts(cfg.prompts_per_step, g).repeat_interleave(G, dim=0)
            roll = sample_rollout(policy, prompts, task.max_new_tokens, cfg.temperature, g, group_size=G)
            history.samples += cfg.batch_size
            history.queries += cfg.batch_size
            rewards = score(world, roll, cfg.reward)
            # 2. one advantage per completion
            if cfg.advantage == "grpo":
                advantages = grpo_advantages(rewards, G, scale=cfg.scale_rewards)
            else:
                advantages = rloo_advantages(rewards, G)
            with torch.no_grad():
                ref_logp, _ = logprobs_and_entropy(reference, roll, cfg.temperature, G) if cfg.beta else (None, None)
            # 3. μ gradient steps on the same batch
            for iteration in range(cfg.num_iterations):
                logp, entropy = logprobs_and_entropy(policy, roll, cfg.temperature, G)
                if iteration == 0:  # the policy has not moved since sampling: π_old is this forward's value
                    old_logp = logp.detach()
                loss = grpo_loss(logp, old_logp, ref_logp, advantages, roll.mask, cfg.clip_eps, cfg.beta,
                                 cfg.aggregation)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                optimizer.step()
                with torch.no_grad():
                    history.add(loss=loss, clip_fraction=clip_fraction(logp, old_logp, roll.mask, cfg.clip_eps))
        if profiling:
            peak_bytes = peak.bytes
        with torch.no_grad():
            groups = rewards.view(-1, G)
            gold = rewards if cfg.reward == "gold" else world.gold_reward(roll.prompts, roll.completions, roll.mask)
            right = gold > 0.5  # score each completion once
            lengths = roll.lengths.float()
            history.add(train_score=rewards.mean(), frac_zero_std=(groups.amax(1) == groups.amin(1)).float().mean(),
                        kl_k3=masked_mean(kl_k3(old_logp, ref_logp), roll.mask) if cfg.beta else float("nan"),
                        entropy=masked_mean(entropy, roll.mask), mean_length=lengths.mean())
            if right.any():
                history.add(length_right=lengths[right].mean())
            if (~right).any():
                history.add(length_wrong=lengths[~right].mean())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.log(step, measure)
    if cfg.profile_step:
        costs = model_costs({"policy": policy, "reference": reference, "reward_model": world.reward_model},
                            [optimizer])
        history.add_costs(cost_summary(costs, peak_bytes, timer.median))
    policy.eval()
    return policy, history.data

