"""Batched sampling with a KV cache, EOS masks, and per-token log-probs of completions.

Conventions (the whole course uses them; the one way to apply a mask is ``teachkit/toy/masking.py``):

- ``prompts`` (B, P): every prompt of a task has the same length P, so no left padding is needed.
- ``completions`` (B, T): the generated tokens, right-padded with ``pad_id`` after the first EOS.
- ``mask`` (B, T): 1 on completion tokens up to **and including** the first EOS, 0 after it. A
  completion that never emits EOS keeps all T tokens (mask all 1): it was cut off, and the task's
  gold reward decides what that is worth.

The shift by one. The model reads ``x = prompt ⊕ completion`` (length P + T) and the logits at
position i predict token i + 1. Completion token j sits at position P + j, so it is predicted by
the logits at position P + j − 1:

    logits_for_completion = model(x)[:, P - 1 : P + T - 1]          # (B, T, V)
    logp[b, j] = log_softmax(logits_for_completion)[b, j, completions[b, j]]

This slice lives in :func:`completion_logits` and nowhere else; a test compares the result with
``F.cross_entropy`` on the same tokens.

Groups share their prompt. GRPO and RLOO lay a batch out as G consecutive copies of each prompt
(``prompts.repeat_interleave(G, dim=0)``). Causal attention means a prompt position never sees
the completion, so the G copies compute the same prompt keys and values. With ``group_size=G``,
:func:`generate` and :func:`completion_logits` run each prompt once, repeat its KV cache G times
(:meth:`KVCache.repeat_interleave <teachkit.toy.model.KVCache.repeat_interleave>`) and run only
the completion positions after it, B·P + B·T token positions becoming B·P/G + B·(T − 1). The
logits equal the plain path's up to float rounding (a test holds them to 1e-5, gradients too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .masking import select_or_zero

__all__ = ["Rollout", "eos_mask", "check_groups", "generate", "completion_logits", "completion_logprobs",
           "sequence_logprob"]


@dataclass
class Rollout:
    """A batch of sampled completions: ``prompts`` (B, P), ``completions`` (B, T), ``mask`` (B, T)."""

    prompts: torch.Tensor
    completions: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.prompts.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Number of completion tokens under the mask (EOS included), (B,)."""
        return self.mask.sum(dim=1)


def eos_mask(completions: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, T) float mask: 1 up to and including the first ``eos_id`` in each row, 0 after it.

    ``is_eos.cumsum(1)`` counts the EOS tokens seen so far, *including* the current one; a token is
    kept when no EOS came strictly before it, i.e. ``cumsum - is_eos == 0``.
    """
    if not isinstance(completions, torch.Tensor) or completions.dim() != 2:
        raise ValueError(f"completions must be a (B, T) tensor, got {type(completions).__name__}"
                         + (f" of shape {tuple(completions.shape)}" if isinstance(completions, torch.Tensor) else ""))
    is_eos = (completions == eos_id).long()
    before = is_eos.cumsum(dim=1) - is_eos
    return (before == 0).float()


def _check_prompts(model, prompts: torch.Tensor) -> None:
    if not isinstance(prompts, torch.Tensor) or prompts.dtype != torch.long or prompts.dim() != 2:
        raise TypeError("prompts must be a (B, P) LongTensor (all prompts of a task have one length)")
    if prompts.shape[1] == 0:
        raise ValueError("prompts must hold at least one token")


def check_groups(prompts: torch.Tensor, group_size: int) -> int:
    """``group_size`` as an int, after checking ``prompts`` is G consecutive copies of each prompt."""
    G = int(group_size)
    if G < 1:
        raise ValueError(f"group_size must be ≥ 1, got {group_size}")
    B = prompts.shape[0]
    if B % G:
        raise ValueError(f"a batch of {B} prompts is not a whole number of groups of {G}")
    if G > 1 and not torch.equal(prompts[::G].repeat_interleave(G, dim=0), prompts):
        raise ValueError(f"group_size={G} expects G consecutive copies of each prompt "
                         f"(prompts.repeat_interleave({G}, dim=0)), but rows differ within a group")
    return G


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             greedy: bool = False, generator: torch.Generator | None = None, eos_id: int | None = None,
             pad_id: int | None = None, use_cache: bool = True, group_size: int = 1) -> Rollout:
    """Sample ``max_new_tokens`` tokens after each prompt (or pick the argmax with ``greedy=True``).

    Tokens after a row's first EOS are replaced by ``pad_id``; the loop stops once every row has
    finished. ``eos_id``/``pad_id`` default to the model's (``model.config.eos_id``, ``pad_id``). ``completions`` always has
    ``max_new_tokens`` columns. The model is used in whatever device it lives on. With ``group_size=G``
    (rows in groups of G copies of a prompt) each prompt is read once and its cache shared.
    """
    _check_prompts(model, prompts)
    G = check_groups(prompts, group_size)
    if G > 1 and not use_cache:
        raise ValueError("group_size > 1 shares the prompt's KV cache: it needs use_cache=True")
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not greedy and not temperature > 0:
        raise ValueError(f"temperature must be > 0 for sampling (use greedy=True for argmax), got {temperature}")
    eos_id = getattr(model, "eos_id", 1) if eos_id is None else eos_id
    pad_id = getattr(model, "pad_id", 0) if pad_id is None else pad_id
    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    prompts = prompts.to(device)
    B = prompts.shape[0]
    was_training = model.training
    model.eval()
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    cache = model.new_cache() if use_cache else None
    seq = prompts
    try:
        logits = model(prompts[::G], cache)[:, -1]
        if G > 1:
            cache, logits = cache.repeat_interleave(G), logits.repeat_interleave(G, dim=0)
        for t in range(max_new_tokens):
            if greedy:
                nxt = logits.argmax(dim=-1)
            else:
                probs = F.softmax(logits.float() / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            out[:, t] = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            done = done | (nxt == eos_id)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            if use_cache:
                logits = model(nxt[:, None], cache)[:, -1]
            else:
                seq = torch.cat([seq, nxt[:, None]], dim=1)
                logits = model(seq)[:, -1]
    finally:
        model.train(was_training)
    return Rollout(prompts, out, eos_mask(out, eos_id))


def completion_logits(model, prompts: torch.Tensor, completions: torch.Tensor,
                      group_size: int = 1) -> torch.Tensor:
    """Logits (B, T, V) that predict each completion token: the shift by one lives here.

    ``group_size=G``: rows come as G copies of each prompt; the prompt runs once per group and the
    G completions continue its shared cache (see the module docstring). Needs ``model.new_cache``.
    """
    _check_prompts(model, prompts)
    if not isinstance(completions, torch.Tensor) or completions.dim() != 2:
        raise ValueError("completions must be a (B, T) LongTensor")
    if completions.shape[0] != prompts.shape[0]:
        raise ValueError(f"prompts and completions need the same batch size, "
                         f"got {prompts.shape[0]} and {completions.shape[0]}")
    P, T = prompts.shape[1], completions.shape[1]
    G = check_groups(prompts, group_size)
    if G == 1:
        x = torch.cat([prompts, completions.to(prompts.device)], dim=1)
        return model(x)[:, P - 1:P + T - 1]
    cache = model.new_cache()
    first = model(prompts[::G], cache)[:, -1:].repeat_interleave(G, dim=0)   # (B, 1, V): predicts token 0
    if T == 1:
        return first
    rest = model(completions[:, :T - 1].to(prompts.device), cache.repeat_interleave(G))  # (B, T-1, V)
    return torch.cat([first, rest], dim=1)


def completion_logprobs(model, prompts: torch.Tensor, completions: torch.Tensor,
                        mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probs (B, T) of ``completions`` given ``prompts`` under ``model``.

    With a ``mask``, entries under mask 0 are exactly 0.0 and the token ids there may be anything
    (e.g. -100): they are replaced by a valid id before the forward pass, and selected away after
    it (never multiplied), so nothing from the padding leaks. Gradients flow to the model.
    ``temperature`` divides the logits, matching sampling at that temperature.
    """
    if not isinstance(completions, torch.Tensor) or completions.dtype != torch.long:
        raise TypeError("completions must be a LongTensor of token ids")
    keep = None
    if mask is not None:
        if mask.shape != completions.shape:
            raise ValueError(f"mask must have the shape of completions, got mask{tuple(mask.shape)} "
                             f"and completions{tuple(completions.shape)}")
        keep = mask.to(completions.device).bool()
        completions = select_or_zero(completions, keep)       # a valid id for the forward pass
    logits = completion_logits(model, prompts, completions)
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, completions[..., None].to(logits.device))
    logp = logp.squeeze(-1)
    if keep is not None:
        logp = select_or_zero(logp, keep.to(logp.device))
    return logp


def sequence_logprob(model, prompts: torch.Tensor, completions: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """log π(completion | prompt) summed over the masked tokens, (B,)."""
    return completion_logprobs(model, prompts, completions, mask).sum(dim=1)
