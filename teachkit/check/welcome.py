"""Exercises of notebook 00: the worked example that shows how checking works."""

from __future__ import annotations

import torch

from ._core import Exercise, assert_close, matches_reference
from ..rlhf.masking import masked_mean as _masked_mean_reference

__all__ = ["masked_mean"]


def _inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 7, generator=g)
    mask = (torch.rand(4, 7, generator=g) < 0.6).float()
    mask[:, 0] = 1.0
    return x, mask


def _nan_never_leaks(fn):
    x, mask = _inputs(3)
    poisoned = torch.where(mask.bool(), x, torch.tensor(float("nan")))
    got = fn(poisoned, mask)
    assert_close(got, _masked_mean_reference(x, mask), "with NaN under mask 0")


def _only_masked_entries_count(fn):
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert_close(fn(x, mask), torch.tensor(2.0), "mean of [[1, 2, _], [3, _, _]]")


def _wrong_multiply(x, mask):
    return (x * mask).sum() / mask.sum()


def _wrong_plain_mean(x, mask):
    return torch.where(mask.bool(), x, torch.zeros_like(x)).mean()


masked_mean = Exercise(
    name="masked_mean",
    reference=_masked_mean_reference,
    properties=[
        ("the mean counts only entries where mask == 1", _only_masked_entries_count),
        ("it matches teachkit.rlhf.masked_mean on random inputs",
         matches_reference(_masked_mean_reference, _inputs)),
        ("a NaN under mask 0 never leaks into the result (NaN * 0 is still NaN)", _nan_never_leaks),
    ],
    wrong_answers={"multiplies by the mask": _wrong_multiply,
                   "divides by every entry, not the masked count": _wrong_plain_mean},
    hint="select with torch.where(mask.bool(), x, 0) and divide by mask.sum().",
)
