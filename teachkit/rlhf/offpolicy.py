"""What the offline preference loops (DPO and its variants, TDPO, ORPO) share: pairs, forward, loop.

    data = pair_data(world, "train")                 # the pairs, the reference's log-probs cached once
    batch = data.sample(64, generator)               # a PairData of 64 pairs drawn with replacement
    chosen, rejected = pair_logps(policy, batch)     # (B,) summed completion log-probs, one forward
    chosen, rejected = pair_mean_logps(policy, batch)   # the same, averaged over each completion
    policy, history = fit_pairs(policy, opt, loss_on, data, cfg, generator, history, measure)

Every pair is scored by one forward pass over chosen ⊕ rejected (:func:`pair_forward`): the
policy's log-probs of both completions and, for TDPO, its logits. The reference never changes, so
``pair_data`` runs it once over every pair and keeps its log-probs (and logits) with the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..toy.masking import select_or_zero
from ..toy.generate import completion_logits
from .history import History

__all__ = ["PAIR_SUBSETS", "PairData", "pair_data", "pair_forward", "pair_logps", "pair_mean_logps",
           "check_offpolicy_config", "fit_pairs"]

PAIR_SUBSETS = ("all", "low_edit", "sampled")


@dataclass
class PairData:
    """Preference pairs with the frozen reference's summed log-probs (and logits, for TDPO) cached."""

    prompts: torch.Tensor            # (N, P)
    chosen: torch.Tensor             # (N, T)
    chosen_mask: torch.Tensor        # (N, T)
    rejected: torch.Tensor           # (N, T)
    rejected_mask: torch.Tensor      # (N, T)
    ref_chosen_logps: torch.Tensor | None     # (N,), None without a reference (ORPO)
    ref_rejected_logps: torch.Tensor | None   # (N,)
    ref_chosen_logits: torch.Tensor | None = None    # (N, T, V)
    ref_rejected_logits: torch.Tensor | None = None  # (N, T, V)

    def __len__(self) -> int:
        return self.prompts.shape[0]

    @property
    def chosen_lengths(self) -> torch.Tensor:
        return self.chosen_mask.sum(-1).float()

    @property
    def rejected_lengths(self) -> torch.Tensor:
        return self.rejected_mask.sum(-1).float()

    def select(self, idx: torch.Tensor) -> "PairData":
        return PairData(*(None if v is None else v[idx] for v in self.__dict__.values()))

    def sample(self, n: int, generator: torch.Generator) -> "PairData":
        return self.select(torch.randint(0, len(self), (n,), generator=generator))


def pair_forward(model, prompts, chosen, chosen_mask, rejected, rejected_mask):
    """One forward pass over chosen ⊕ rejected: summed log-probs (B,), (B,) and logits (B, T, V) ×2."""
    B = prompts.shape[0]
    comps = torch.cat([chosen, rejected])
    keep = torch.cat([chosen_mask, rejected_mask]).bool()
    safe = select_or_zero(comps, keep)       # padding ids may be anything: 0 is a valid id to embed
    logits = completion_logits(model, torch.cat([prompts, prompts]), safe)
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    seq = select_or_zero(logp, keep).sum(-1)
    return seq[:B], seq[B:], logits[:B], logits[B:]


def pair_logps(model, data: PairData):
    """Summed completion log-probs of chosen and rejected under ``model``: two (B,) tensors."""
    c, r, _, _ = pair_forward(model, data.prompts, data.chosen, data.chosen_mask, data.rejected,
                              data.rejected_mask)
    return c, r


def pair_mean_logps(model, data: PairData):
    """Length-averaged completion log-probs of chosen and rejected (EOS counted), (B,) each."""
    c, r = pair_logps(model, data)
    return c / data.chosen_lengths, r / data.rejected_lengths


@torch.no_grad()
def pair_data(world, split: str = "train", subset: str = "all", keep_logits: bool = False,
              reference: bool = True) -> PairData:
    """The world's preference pairs with the reference's log-probs (and logits) computed once.

    ``split``: "train" or "heldout". ``subset``: "all", "low_edit" (the right answer against one off
    by one) or "sampled" (two SFT samples ranked by the gold reward). ``reference=False`` skips the
    reference entirely (ORPO): its fields are then None.
    """
    raw = _world_pairs(world, split, subset)
    if not reference:
        return PairData(*raw, None, None)
    ref = world.reference
    was_training = ref.training
    ref.eval()
    c, r, lc, lr = pair_forward(ref, *raw)
    ref.train(was_training)
    return PairData(*raw, c, r, lc if keep_logits else None, lr if keep_logits else None)


def _world_pairs(world, split: str, subset: str):
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if subset not in PAIR_SUBSETS:
        raise ValueError(f"subset must be one of {PAIR_SUBSETS}, got {subset!r}")
    pairs = getattr(world.pairs, split)
    if subset != "all":
        pairs = pairs[pairs.low_edit if subset == "low_edit" else ~pairs.low_edit]
    if len(pairs) == 0:
        raise ValueError(f"the world has no {subset!r} pairs in its {split!r} split")
    return (pairs.prompts, pairs.chosen, pairs.chosen_mask, pairs.rejected, pairs.rejected_mask)


def check_offpolicy_config(cfg) -> None:
    """Checks shared by the DPO, TDPO and ORPO configs."""
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.eval_every < 1:
        raise ValueError("steps, batch_size and eval_every must be >= 1")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if cfg.pairs not in PAIR_SUBSETS:
        raise ValueError(f"pairs must be one of {PAIR_SUBSETS}, got {cfg.pairs!r}")
    if cfg.monitor not in ("heldout", "train"):
        raise ValueError(f"monitor must be 'heldout' or 'train', got {cfg.monitor!r}")


def fit_pairs(policy, opt, loss_on, train: PairData, cfg, g: torch.Generator, history: History, measure):
    """The offline loop shared by DPO, TDPO and ORPO: minibatches of pairs, clipped AdamW steps.

    ``loss_on(batch)`` is the method's loss; ``measure()`` the evaluation logged at step 0, every
    ``cfg.eval_every`` steps and at the end. The row of step 0 has the loss on every training pair
    as its ``train_loss``; later rows the mean batch loss since the previous row.
    """
    history.start_clock()          # the step-0 loss over every pair is training-side work: timed
    with torch.no_grad():
        history.add(train_loss=loss_on(train).item())
    history.log(0, measure)
    policy.train()
    for step in range(1, cfg.steps + 1):
        loss = loss_on(train.sample(cfg.batch_size, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        opt.step()
        history.pairs += cfg.batch_size
        history.add(train_loss=loss.item())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.log(step, measure)
    policy.eval()
    return policy, history.data
