"""Supervised fine-tuning (SFT): maximum likelihood on a demonstration corpus.

The loss is the mean negative log-likelihood of the completion tokens (EOS included), prompt and
padding excluded:

    L_SFT(θ) = − Σ_{b,t} m_{b,t} log π_θ(y_{b,t} | x_b, y_{b,<t}) / Σ_{b,t} m_{b,t}

Its minimiser is the demonstrator's own distribution. Our demonstrators are deliberately imperfect
(see ``teachkit.toy.tasks``), so the SFT policy is decent but far from optimal on the gold reward:
that gap is what RLHF will close.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .generate import Rollout, completion_logprobs
from .masking import select_or_zero
from .model import GPT, GPTConfig
from .tasks import Task

__all__ = ["SFTConfig", "model_config", "new_model", "sft_loss", "train_sft"]


@dataclass
class SFTConfig:
    n_demos: int = 4096       # size of the fixed demonstration corpus
    steps: int = 300
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0


def model_config(task: Task, **overrides) -> GPTConfig:
    """The course's model size for ``task``: 2 layers, 4 heads, d_model 64, d_ff 256, ReLU."""
    kw = dict(vocab_size=task.tokenizer.vocab_size, block_size=task.block_size, n_layer=2, n_head=4,
              d_model=64, d_ff=256, activation="relu", value_head=False,
              pad_id=task.tokenizer.pad_id, eos_id=task.tokenizer.eos_id)
    kw.update(overrides)
    return GPTConfig(**kw)


def sft_loss(model: GPT, prompts: torch.Tensor, completions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean NLL of the completion tokens under ``mask`` (a 0-dim tensor)."""
    logp = completion_logprobs(model, prompts, completions, mask)
    keep = mask.to(logp.device).bool()
    # the token mean, as ``teachkit.rlhf.masked_mean`` computes it (toy sits below rlhf)
    return -(select_or_zero(logp, keep).sum() / keep.sum().clamp(min=1).to(logp.dtype))


def train_sft(model: GPT, demos: Rollout, cfg: SFTConfig = SFTConfig()) -> dict[str, list[float]]:
    """Train ``model`` in place on ``demos`` with AdamW; returns ``{"step", "loss", "seconds"}``."""
    if len(demos) == 0:
        raise ValueError("the demonstration corpus is empty")
    device = model.device
    prompts, completions, mask = (t.to(device) for t in (demos.prompts, demos.completions, demos.mask))
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict[str, list[float]] = {"step": [], "loss": [], "seconds": []}
    model.train()
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, len(demos), (cfg.batch_size,), generator=g).to(device)
        loss = sft_loss(model, prompts[idx], completions[idx], mask[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["seconds"].append(time.perf_counter() - start)
    model.eval()
    return history


def new_model(task: Task, seed: int = 0, **overrides) -> GPT:
    """A freshly initialised model for ``task``, seeded (the un-tuned base model)."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return GPT(model_config(task, **overrides))
