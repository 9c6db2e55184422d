"""TRL's own loss code, called on teachkit's tensors (trl 1.16; pyproject's ``[trl]`` extra).

TRL keeps most of its losses inside trainer methods (``GRPOTrainer._compute_loss``,
``RLOOTrainer._compute_loss``, ``DPOTrainer._compute_loss``, ``ORPOTrainer.odds_ratio_loss``).
A trainer needs a model, a dataset and an optimizer before it can call them, but each method
only reads a few attributes of ``self``. So we call the *unbound* method on a small host object
that has exactly those attributes, and whose log-prob function returns the tensors we pass in:
TRL's real code computes the loss, on our numbers, with gradients flowing back to them.

Two pieces are not methods but a few lines inside TRL's rollout function
(``_generate_and_score_completions``): the GRPO and RLOO advantages. Those lines are reproduced
verbatim below, with TRL's own ``nanstd``; ``tests/test_trl_bridge.py`` checks that the installed
TRL source still contains them, so a change upstream fails a test instead of drifting silently.

Conventions where TRL and teachkit differ (each is one switch in notebook 15):
- ``loss_type="dr_grpo"`` divides by B·``max_completion_length``, teachkit by the tensor's B·T;
- ``use_bias_correction_kl=True`` (TRL's default) multiplies k3 by the importance ratio;
- on a group of tied rewards TRL's advantage is rounding residue / (0 + 1e-4), teachkit's is 0;
- RLOOTrainer clips the *sequence* ratio exp(Σ_t logp − Σ_t old_logp), teachkit the token ratio.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import torch

__all__ = ["trl_grpo_loss", "trl_rloo_loss", "trl_dpo_loss", "trl_odds_ratio_loss",
           "trl_orpo_forward", "live_grpo_agreement", "trl_grpo_advantages", "trl_rloo_advantages", "GRPO_LOSS_TYPES", "TEACHKIT_AGGREGATION"]

GRPO_LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
TEACHKIT_AGGREGATION = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean",
                        "dr_grpo": "seq-mean-token-sum-norm"}
"""TRL's loss type -> teachkit's ``aggregation`` of the same per-token loss."""


class _Accelerator:
    """One process: gathering and reducing are the identity."""

    num_processes = 1
    sync_gradients = True
    device = torch.device("cpu")

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _host(**attrs) -> SimpleNamespace:
    host = SimpleNamespace(accelerator=_Accelerator(), model=SimpleNamespace(training=True),
                           aux_loss_enabled=False, current_gradient_accumulation_steps=1,
                           _metrics=defaultdict(lambda: defaultdict(list)))
    for k, v in attrs.items():
        setattr(host, k, v)
    return host


def _logps_fn(logp: torch.Tensor):
    """Stands in for ``_get_per_token_logps_and_entropies``: returns ``logp`` (entropy 0, no aux loss)."""
    def fn(model, input_ids, attention_mask, logits_to_keep, compute_entropy=False, compute_aux_loss=False, **kw):
        return logp, torch.zeros_like(logp).detach(), None
    return fn


def _token_inputs(logp: torch.Tensor, mask: torch.Tensor, **extra) -> dict:
    B, T = logp.shape
    m = mask.to(logp.dtype)
    return {"prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
            "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": m,
            "num_items_in_batch": m.sum(), **extra}


def trl_grpo_loss(logp, old_logp, ref_logp, advantages, mask, loss_type: str = "grpo", beta: float = 0.04,
                  epsilon: float = 0.2, max_completion_length: int | None = None,
                  use_bias_correction_kl: bool = False) -> torch.Tensor:
    """``GRPOTrainer._compute_loss`` on (B, T) per-token log-probs and (B,) advantages.

    ``max_completion_length`` (Dr. GRPO's divisor) defaults to T, the tensor's width.
    """
    from trl import GRPOTrainer

    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {GRPO_LOSS_TYPES}, got {loss_type!r}")
    args = SimpleNamespace(use_bias_correction_kl=use_bias_correction_kl, delta=None, steps_per_generation=1)
    host = _host(args=args, loss_type=loss_type, beta=float(beta), epsilon_low=epsilon, epsilon_high=epsilon,
                 max_completion_length=logp.shape[1] if max_completion_length is None else max_completion_length,
                 top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
                 use_vllm=False, vllm_importance_sampling_correction=False, _entropy_bonus_enabled=False,
                 _get_per_token_logps_and_entropies=_logps_fn(logp))
    inputs = _token_inputs(logp, mask, advantages=advantages, old_per_token_logps=old_logp,
                           ref_per_token_logps=ref_logp)
    return GRPOTrainer._compute_loss(host, None, inputs)


def trl_rloo_loss(logp, old_logp, advantages, mask, epsilon: float = 0.2) -> torch.Tensor:
    """``RLOOTrainer._compute_loss``: the clipped surrogate on the *sequence* ratio, mean over sequences."""
    from trl import RLOOTrainer

    host = _host(epsilon_low=epsilon, epsilon_high=epsilon, _get_per_token_logps_and_entropies=_logps_fn(logp))
    m = mask.to(logp.dtype)
    inputs = _token_inputs(logp, mask, advantages=advantages, old_logps=(old_logp * m).sum(1))
    return RLOOTrainer._compute_loss(host, None, inputs)


def trl_dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                 beta: float = 0.1) -> torch.Tensor:
    """``DPOTrainer._compute_loss`` (loss_type "sigmoid") on (B,) summed log-probs.

    The trainer asks its model for per-token log-probs (``fused_lm_head=True``) and sums them; our
    stand-in model returns each pair's summed log-prob as a one-token completion.
    """
    from trl import DPOTrainer
    from trl.trainer.utils import FusedCausalLMOutput

    logps = torch.cat([policy_chosen_logps, policy_rejected_logps])[:, None]       # (2B, 1)

    def model(input_ids=None, labels=None, fused_lm_head=False, **kw):
        zeros = torch.zeros_like(logps).detach()
        return FusedCausalLMOutput(loss=-logps.sum(), log_probs=logps, entropy=zeros, mean_logits=zeros,
                                   is_top1=zeros.bool(), label_mask=zeros.bool())

    host = _host(ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
                 loss_weights=[1.0], beta=float(beta), use_weighting=False, _total_train_tokens=0, _tp_size=1)
    n = logps.shape[0]
    inputs = {"input_ids": torch.zeros(n, 2, dtype=torch.long), "attention_mask": torch.ones(n, 2, dtype=torch.long),
              "completion_mask": torch.tensor([[0, 1]]).repeat(n, 1),
              "ref_chosen_logps": ref_chosen_logps, "ref_rejected_logps": ref_rejected_logps}
    return DPOTrainer._compute_loss(host, model, inputs, False)


def trl_odds_ratio_loss(chosen_mean_logps, rejected_mean_logps, lam: float = 0.1) -> torch.Tensor:
    """ORPO's odds-ratio term as TRL adds it, −mean(``ORPOTrainer.odds_ratio_loss``(...)[0]), with β = λ."""
    from trl.experimental.orpo import ORPOTrainer

    host = _host(beta=float(lam))
    losses = ORPOTrainer.odds_ratio_loss(host, chosen_mean_logps, rejected_mean_logps)[0]
    return -losses.mean()     # trl/experimental/orpo/orpo_trainer.py: loss = policy_nll_loss - losses.mean()


# ----------------------------------------------------------------------------- advantages, verbatim
# trl 1.16.0, trl/trainer/grpo_trainer.py, GRPOTrainer._generate_and_score_completions,
# multi_objective_aggregation="sum_then_normalize", one reward function of weight 1, scale_rewards="group".
GRPO_ADVANTAGE_LINES = (
    "mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)",
    "std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)",
    "advantages = advantages / (std_rewards + 1e-4)",
)
# trl 1.16.0, trl/trainer/rloo_trainer.py, RLOOTrainer._generate_and_score_completions.
RLOO_ADVANTAGE_LINES = (
    "baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)",
    "advantages = rewards - baselines",
)


def trl_grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
    """TRL's group-normalised advantages, (B,), lines copied from ``_generate_and_score_completions``."""
    from trl.trainer.utils import nanstd

    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
    std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def trl_rloo_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """TRL's leave-one-out advantages, (B,), lines copied from ``RLOOTrainer._generate_and_score_completions``."""
    grouped_rewards = rewards.view(-1, num_generations)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)
    baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
    baselines = baselines.view(-1)
    advantages = rewards - baselines
    return torch.nan_to_num(advantages, nan=0.0)


def trl_orpo_forward(hf_model, prompts, chosen, chosen_mask, rejected, rejected_mask):
    """``ORPOTrainer.concatenated_forward`` on a batch of toy pairs: (chosen ℓ̄, rejected ℓ̄, chosen NLL).

    ℓ̄ is the mean log-prob over each completion's tokens (as teachkit's); the NLL is TRL's
    cross-entropy averaged over every prompt *and* completion token of the chosen sequences.
    """
    from trl.experimental.orpo import ORPOTrainer

    def side(completions, mask):
        ids = torch.cat([prompts, torch.where(mask.bool(), completions, torch.zeros_like(completions))], 1)
        attention = torch.cat([torch.ones_like(prompts), mask.long()], 1)
        labels = ids.masked_fill(attention == 0, -100)
        labels[:, :prompts.shape[1]] = -100
        return ids, attention, labels

    batch = {}
    for name, (c, m) in (("chosen", (chosen, chosen_mask)), ("rejected", (rejected, rejected_mask))):
        batch[f"{name}_input_ids"], batch[f"{name}_attention_mask"], batch[f"{name}_labels"] = side(c, m)
    host = _host(is_encoder_decoder=False, padding_value=0, concatenated_inputs=ORPOTrainer.concatenated_inputs,
                 get_batch_logps=ORPOTrainer.get_batch_logps)
    chosen_logps, rejected_logps, _, _, nll = ORPOTrainer.concatenated_forward(host, hf_model, batch)
    return chosen_logps, rejected_logps, nll


def live_grpo_agreement(trainer, world, steps: int = 1) -> dict:
    """Train ``trainer`` (a toy ``grpo_trainer``) for ``steps`` teachkit steps and recompute what TRL computed.

    - every generation batch, as TRL's rollout function returns it (before TRL shuffles it):
      teachkit's advantages from the gold reward of TRL's completions, against TRL's;
    - every call of TRL's ``_compute_loss``, with its inputs and the weights it ran with: teachkit's
      log-probs on the toy model holding those weights and teachkit's ``grpo_loss``, against TRL's
      loss; on the first call of each batch the weights are the sampling weights, so TRL's
      π_old must equal teachkit's log-probs too.

    Returns the largest absolute gap of each: {"advantages", "loss", "old_logp", "calls"}.
    """
    from ..rlhf.advantages import grpo_advantages
    from ..rlhf.grpo import grpo_loss
    from ..toy.generate import completion_logprobs
    from .hf_model import from_hf

    batches, calls = [], []
    rollout, compute_loss = trainer._generate_and_score_completions, trainer._compute_loss

    def rollout_spy(*args, **kwargs):
        out = rollout(*args, **kwargs)
        batches.append({k: v.detach().clone() for k, v in out.items() if isinstance(v, torch.Tensor)})
        return out

    def loss_spy(model, inputs):
        loss = compute_loss(model, inputs)
        toy = from_hf(trainer.accelerator.unwrap_model(model), world.config).eval()
        calls.append((loss.item(), {k: v.detach().clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)},
                      toy, len(batches)))
        return loss

    trainer._generate_and_score_completions, trainer._compute_loss = rollout_spy, loss_spy
    trainer.args.max_steps = steps * trainer.args.num_iterations
    trainer.train()
    T = world.task.max_new_tokens
    gaps = {"advantages": 0.0, "loss": 0.0, "old_logp": 0.0, "calls": len(calls)}
    for b in batches:
        comps = torch.nn.functional.pad(b["completion_ids"], (0, T - b["completion_ids"].shape[1]))
        mask = torch.nn.functional.pad(b["completion_mask"].float(), (0, T - b["completion_mask"].shape[1]))
        adv = grpo_advantages(world.gold_reward(b["prompt_ids"], comps, mask), trainer.num_generations)
        gaps["advantages"] = max(gaps["advantages"], (adv - b["advantages"]).abs().max().item())
    seen = set()
    for trl_loss, x, toy, batch in calls:
        if not bool(x["prompt_mask"].all()):
            raise ValueError("toy prompts all have one length: TRL should not have padded them")
        mask = x["completion_mask"].float()
        with torch.no_grad():
            logp = completion_logprobs(toy, x["prompt_ids"], x["completion_ids"], mask)
            ours = grpo_loss(logp, x["old_per_token_logps"], x["ref_per_token_logps"], x["advantages"], mask,
                             trainer.epsilon_low, trainer.beta, TEACHKIT_AGGREGATION[trainer.loss_type])
        gaps["loss"] = max(gaps["loss"], abs(ours.item() - trl_loss))
        if batch not in seen:  # first call on this batch: the weights that sampled it
            seen.add(batch)
            gaps["old_logp"] = max(gaps["old_logp"], ((logp - x["old_per_token_logps"]).abs() * mask).max().item())
    return gaps
