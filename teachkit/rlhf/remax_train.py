"""ReMax (Li et al., ICML 2024, arXiv:2310.10505v4, Algorithm 1): REINFORCE with the greedy decode as
baseline. No critic.

    policy, history = train_remax(world, ReMaxConfig())
    gradient_variance(world, policy, baseline="greedy")     # notebook 03's variance experiment

Stable signatures: ``ReMaxConfig``, ``train_remax(world, cfg) -> (policy, history)``,
``gradient_variance(world, policy, baseline, ...) -> dict``.

One iteration, for B prompts:

1. sample y ~ π_θ(·|x) and decode ŷ = greedy(π_θ, x) (``samples_generated += 2B``);
2. score both (``reward_queries += 2B``);
3. A = r(x, y) − r(x, ŷ) − β Σ_t KL_t(y), KL_t = log π(y_t) − log π_ref(y_t) (k1, no gradient);
4. one gradient step on ``reinforce_loss(logp, A, mask)``: −Σ A·logp / Σ mask. No ratio, no clip,
   no PPO epochs: every sample is used once, on-policy.

The baseline r(x, ŷ) depends on x only, not on the sampled y, so it leaves the gradient unbiased;
it is close to E[r | x] when the policy is peaked, which is what makes it a good baseline.
KL in the return: we put the whole sequence's KL into one scalar return (a whole-sequence
REINFORCE, still unbiased); the ReMax code gives each token its own KL term and clips r − r̂ to ±5,
details that lower variance without changing the idea.

``history`` keys: ``HISTORY_KEYS``, plus train_score, greedy_score, advantage_std, entropy,
mean_length; with ``profile_step`` set, the cost figures of :mod:`teachkit.rlhf.costs`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..toy.world import frozen
from .advantages import remax_advantages, rloo_advantages
from .costs import StepPeak, Timer, cost_summary, model_costs
from .history import History, evaluation_metrics
from .masking import masked_mean, masked_sum
from .onpolicy import check_onpolicy_config, logprobs_and_entropy, sample_rollout, score
from .reinforce import reinforce_loss

__all__ = ["ReMaxConfig", "train_remax", "gradient_variance", "BASELINES"]

BASELINES = ("none", "greedy", "group")


@dataclass
class ReMaxConfig:
    steps: int = 60
    batch_size: int = 64         # prompts per step (each: one sample + one greedy decode)
    lr: float = 3e-4
    beta: float = 0.5            # KL coefficient in the return
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    reward: str = "proxy"        # "proxy" (reward model) or "gold"
    eval_every: int = 10
    seed: int = 0
    profile_step: int | None = None

    def __post_init__(self) -> None:
        check_onpolicy_config(self)


def train_remax(world, cfg: ReMaxConfig = ReMaxConfig()):
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    task = world.task
    policy = world.new_policy()
    reference = frozen(world.reference)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    history = History("train_score", "greedy_score", "advantage_std", "entropy", "mean_length")
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
            # 1. a sample and the greedy decode of the same prompts
            prompts = task.sample_prompts(cfg.batch_size, g)
            roll = sample_rollout(policy, prompts, task.max_new_tokens, cfg.temperature, g)
            greedy = sample_rollout(policy, prompts, task.max_new_tokens, cfg.temperature, g, greedy=True)
            history.samples += 2 * cfg.batch_size
            history.queries += 2 * cfg.batch_size
            # 2-3. rewards, the KL-regularised return and the greedy baseline
            logp, entropy = logprobs_and_entropy(policy, roll, cfg.temperature)
            with torch.no_grad():
                ref_logp, _ = logprobs_and_entropy(reference, roll, cfg.temperature)
                kl = masked_sum(logp.detach() - ref_logp, roll.mask, dim=1)
                r_sample, r_greedy = score(world, roll, cfg.reward), score(world, greedy, cfg.reward)
                advantages = remax_advantages(r_sample, r_greedy) - cfg.beta * kl
            # 4. one REINFORCE step
            loss = reinforce_loss(logp, advantages, roll.mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
        if profiling:
            peak_bytes = peak.bytes
        with torch.no_grad():
            history.add(train_score=r_sample.mean(), greedy_score=r_greedy.mean(), advantage_std=advantages.std(),
                        entropy=masked_mean(entropy.detach(), roll.mask), mean_length=roll.lengths.float().mean())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.log(step, measure)
    if cfg.profile_step:
        costs = model_costs({"policy": policy, "reference": reference, "reward_model": world.reward_model},
                            [optimizer])
        history.add_costs(cost_summary(costs, peak_bytes, timer.median))
    policy.eval()
    return policy, history.data


def gradient_variance(world, policy, baseline: str = "greedy", n_prompts: int = 16, group_size: int = 4,
                      repeats: int = 24, reward: str = "proxy", reward_shift: float = 0.0,
                      seed: int = 0) -> dict[str, float]:
    """How noisy is the REINFORCE gradient under each baseline? Same prompts, same sample count.

    Each of ``repeats`` estimates draws ``group_size`` samples for each of ``n_prompts`` fixed
    prompts and computes ∇ reinforce_loss with advantage A = r − b:
    ``"none"`` b = 0; ``"greedy"`` b = r(greedy decode); ``"group"`` b = mean of the *other*
    samples of the prompt (leave-one-out, so still unbiased). Returns the mean gradient's norm
    and the total variance E‖g − ḡ‖² (the trace of the covariance) over the repeats.
    ``reward_shift`` adds a constant to every reward: it changes nothing for the greedy and group
    baselines (they subtract it again) but everything for ``"none"``.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    task = world.task
    g = torch.Generator().manual_seed(seed)
    prompts = task.sample_prompts(n_prompts, g).repeat_interleave(group_size, dim=0)
    params = [p for p in policy.parameters() if p.requires_grad]
    r_greedy = None
    if baseline == "greedy":
        decoded = sample_rollout(policy, prompts, task.max_new_tokens, 1.0, g, greedy=True)
        r_greedy = score(world, decoded, reward) + reward_shift
    grads = []
    for _ in range(repeats):
        roll = sample_rollout(policy, prompts, task.max_new_tokens, 1.0, g)
        r = score(world, roll, reward) + reward_shift
        if baseline == "none":
            adv = r
        elif baseline == "greedy":
            adv = remax_advantages(r, r_greedy)
        else:
            adv = rloo_advantages(r, group_size)
        logp, _ = logprobs_and_entropy(policy, roll)
        grad = torch.autograd.grad(reinforce_loss(logp, adv, roll.mask), params)
        grads.append(torch.cat([x.reshape(-1) for x in grad]))
    G = torch.stack(grads).double()
    mean = G.mean(0)
    return {"baseline": baseline, "mean_grad_norm": mean.norm().item(),
            "total_variance": ((G - mean) ** 2).sum(1).mean().item() * repeats / (repeats - 1)}
