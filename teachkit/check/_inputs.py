"""Inputs shared by the RLHF checkers: seeded masks, NaN-poisoned padding, random log-probs."""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)
NAN = float("nan")


def t32(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def t64(*xs) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def prefix_mask(g: torch.Generator, B: int, T: int) -> torch.Tensor:
    """(B, T) float mask of 1s then 0s, each row at least one token long."""
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    return (torch.arange(T)[None] < lengths[:, None]).float()


def poison(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN wherever the mask is 0: a value that leaks from padding shows at once."""
    return torch.where(mask.bool(), x, torch.tensor(NAN, dtype=x.dtype))


def four_logps(seed: int) -> tuple[torch.Tensor, ...]:
    """Policy chosen/rejected and reference chosen/rejected summed log-probs, (8,) float64 each."""
    g = torch.Generator().manual_seed(seed)
    return tuple(-(torch.rand(8, generator=g, dtype=torch.float64) * 10 + 0.5) for _ in range(4))
