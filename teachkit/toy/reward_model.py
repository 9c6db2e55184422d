"""A Bradley–Terry reward model: the SFT transformer with a scalar head, trained on preference pairs.

The score of a completion is the value head at its last token (the EOS, or the last token of a
cut-off completion): ``r(x, y) = v(x ⊕ y)[P + |y| − 1]``. Attention is causal, so the padding
after EOS cannot change it. Training minimises the Bradley–Terry negative log-likelihood

    L(φ) = −E_{(x, y_w, y_l)} log σ(r_φ(x, y_w) − r_φ(x, y_l))      (teachkit.rlhf.bradley_terry_loss)

Only differences of r are identified, so the scale of the scores means nothing by itself. The
model is a *proxy* for the gold reward: it is right on most held-out pairs but not all, and a
policy that maximises it hard finds the places where it is wrong (notebook 09).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import GPT, GPTConfig
from .pairs import PreferencePairs

__all__ = ["RewardModelConfig", "reward_model_from", "sequence_rewards", "train_reward_model",
           "pair_accuracy", "pearson"]


@dataclass
class RewardModelConfig:
    steps: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    eval_every: int = 25


def reward_model_from(policy: GPT, seed: int = 0) -> GPT:
    """A reward model initialised from ``policy``'s weights plus a fresh (seeded) value head."""
    cfg = GPTConfig(**{**policy.config.to_dict(), "value_head": True})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rm = GPT(cfg).to(policy.device)
    missing, unexpected = rm.load_state_dict(policy.state_dict(), strict=False)
    if unexpected or any(not k.startswith("value_head") for k in missing):
        raise ValueError(f"policy weights do not fit the reward model: missing {missing}, unexpected {unexpected}")
    return rm


def sequence_rewards(rm: GPT, prompts: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One scalar score per completion, (B,): the value head at the last token under ``mask``."""
    if completions.shape != mask.shape or completions.shape[0] != prompts.shape[0]:
        raise ValueError(f"need prompts (B, P), completions and mask (B, T); got {tuple(prompts.shape)}, "
                         f"{tuple(completions.shape)}, {tuple(mask.shape)}")
    device = rm.device
    keep = mask.to(device).bool()
    completions = torch.where(keep, completions.to(device), torch.full_like(keep, rm.config.pad_id, dtype=torch.long))
    x = torch.cat([prompts.to(device), completions], dim=1)
    last = prompts.shape[1] - 1 + keep.sum(dim=1)
    return rm.values(x).gather(1, last[:, None]).squeeze(1)


def _pair_rewards(rm: GPT, pairs: PreferencePairs) -> tuple[torch.Tensor, torch.Tensor]:
    return (sequence_rewards(rm, pairs.prompts, pairs.chosen, pairs.chosen_mask),
            sequence_rewards(rm, pairs.prompts, pairs.rejected, pairs.rejected_mask))


@torch.no_grad()
def pair_accuracy(rm: GPT, pairs: PreferencePairs) -> float:
    """Fraction of pairs where the reward model scores the chosen completion strictly higher."""
    if len(pairs) == 0:
        raise ValueError("no pairs to score")
    rc, rr = _pair_rewards(rm, pairs)
    return (rc > rr).float().mean().item()


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors (0 when one of them is constant)."""
    x, y = x.double().flatten(), y.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    denom = (x.norm() * y.norm()).item()
    return 0.0 if denom == 0 else (x @ y).item() / denom


def train_reward_model(rm: GPT, train: PreferencePairs, cfg: RewardModelConfig = RewardModelConfig(),
                       heldout: PreferencePairs | None = None) -> dict[str, list[float]]:
    """Minimise the Bradley–Terry loss on ``train``; log loss and accuracies every ``eval_every`` steps."""
    if len(train) == 0:
        raise ValueError("no training pairs")
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict[str, list[float]] = {"step": [], "loss": [], "train_accuracy": [],
                                       "heldout_accuracy": [], "seconds": []}
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        rm.train()
        batch = train[torch.randint(0, len(train), (cfg.batch_size,), generator=g)]
        rc, rr = _pair_rewards(rm, batch)
        # the Bradley–Terry loss, as ``teachkit.rlhf.bradley_terry_loss`` computes it after its
        # input checks (toy sits below rlhf; the pairs here are the world's own, already valid)
        loss = -F.logsigmoid(rc - rr).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            rm.eval()
            history["step"].append(step)
            history["loss"].append(loss.item())
            history["train_accuracy"].append(pair_accuracy(rm, train))
            history["heldout_accuracy"].append(pair_accuracy(rm, heldout) if heldout is not None else float("nan"))
            history["seconds"].append(time.perf_counter() - start)
    rm.eval()
    return history
