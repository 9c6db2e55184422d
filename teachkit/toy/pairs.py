"""Preference pairs: two completions of one prompt, the one with the higher gold reward chosen.

Two sources:

- **SFT samples.** Draw two completions per prompt from the SFT policy, score both with the gold
  reward, keep the pair when the scores differ (ties carry no preference).
- **Low-edit pairs** (arithmetic only): the right answer against an answer off by one, e.g.
  ``7<eos>`` over ``8<eos>``. The two differ in one token, the regime in which DPO's gradient
  pushes both likelihoods down (likelihood displacement, Pal et al. 2024).

Every tensor of a :class:`PreferencePairs` has the pair index first; ``chosen``/``rejected`` are
(N, T) right-padded completions with their EOS masks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .generate import generate
from .tasks import ArithmeticTask, Task

__all__ = ["PreferencePairs", "PairSplit", "pairs_from_samples", "low_edit_pairs"]


@dataclass
class PreferencePairs:
    prompts: torch.Tensor        # (N, P)
    chosen: torch.Tensor         # (N, T)
    chosen_mask: torch.Tensor    # (N, T) float
    rejected: torch.Tensor       # (N, T)
    rejected_mask: torch.Tensor  # (N, T) float
    chosen_gold: torch.Tensor    # (N,) gold reward of the chosen completion
    rejected_gold: torch.Tensor  # (N,)
    low_edit: torch.Tensor       # (N,) bool: a hand-made low-edit pair (not sampled)

    def __post_init__(self) -> None:
        n = self.prompts.shape[0]
        for f in fields(self):
            t = getattr(self, f.name)
            if not isinstance(t, torch.Tensor) or t.shape[0] != n:
                raise ValueError(f"PreferencePairs.{f.name} must be a tensor with {n} rows")
        if self.chosen.shape != self.rejected.shape or self.chosen_mask.shape != self.chosen.shape \
                or self.rejected_mask.shape != self.rejected.shape:
            raise ValueError("chosen, rejected and their masks must all be (N, T)")

    def __len__(self) -> int:
        return self.prompts.shape[0]

    def __getitem__(self, idx) -> "PreferencePairs":
        """Select pairs by index tensor, slice or boolean mask."""
        return PreferencePairs(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def cat(parts: list["PreferencePairs"]) -> "PreferencePairs":
        return PreferencePairs(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(parts[0])})

    def __repr__(self) -> str:
        return (f"PreferencePairs({len(self)} pairs, {int(self.low_edit.sum())} low-edit, "
                f"completion length {self.chosen.shape[1]})")


@dataclass
class PairSplit:
    train: PreferencePairs
    heldout: PreferencePairs

    def __repr__(self) -> str:
        return f"PairSplit(train={len(self.train)} pairs, heldout={len(self.heldout)} pairs)"


def pairs_from_samples(task: Task, policy, prompts: torch.Tensor, generator: torch.Generator,
                       temperature: float = 1.0) -> PreferencePairs:
    """Two samples per prompt from ``policy``, labelled by the gold reward; ties dropped."""
    a = generate(policy, prompts, task.max_new_tokens, temperature=temperature, generator=generator)
    b = generate(policy, prompts, task.max_new_tokens, temperature=temperature, generator=generator)
    ra = task.gold_reward(a.prompts, a.completions, a.mask)
    rb = task.gold_reward(b.prompts, b.completions, b.mask)
    keep = ra != rb
    a_wins = (ra > rb)[:, None]
    pick = lambda x, y: torch.where(a_wins, x, y)  # noqa: E731
    pairs = PreferencePairs(
        prompts=prompts.cpu(), chosen=pick(a.completions, b.completions).cpu(),
        chosen_mask=pick(a.mask, b.mask).cpu(), rejected=pick(b.completions, a.completions).cpu(),
        rejected_mask=pick(b.mask, a.mask).cpu(), chosen_gold=torch.maximum(ra, rb),
        rejected_gold=torch.minimum(ra, rb), low_edit=torch.zeros(len(prompts), dtype=torch.bool))
    return pairs[keep]


def low_edit_pairs(task: ArithmeticTask, prompts: torch.Tensor, generator: torch.Generator) -> PreferencePairs:
    """The right answer over the same answer ±1 (one token apart when both have equal digits)."""
    c = task.answers(prompts)
    sign = torch.randint(0, 2, (len(c),), generator=generator) * 2 - 1
    wrong = torch.where(c + sign < 0, c + 1, c + sign)
    chosen, chosen_mask = task.completions_for(c)
    rejected, rejected_mask = task.completions_for(wrong)
    return PreferencePairs(prompts=prompts, chosen=chosen, chosen_mask=chosen_mask, rejected=rejected,
                           rejected_mask=rejected_mask, chosen_gold=torch.ones(len(c)),
                           rejected_gold=torch.zeros(len(c)), low_edit=torch.ones(len(c), dtype=torch.bool))
