"""The one mask select: ``select_or_zero(x, mask)`` is ``x`` where ``mask`` is True, exactly 0 elsewhere.

A completion mask is 1 on the tokens up to and including the first EOS; after it is padding, which
may hold anything (a token id of -100, a NaN log-prob). Multiplying by the mask does not remove it:
NaN·0 = NaN. Selecting does: the padding never enters the arithmetic, and the backward pass of
``torch.where`` sends exactly 0 (not NaN·0) to the entries it did not select.

It lives in ``toy`` because the toy world needs it (log-probs and KLs of padded completions) and
``toy`` sits below ``rlhf``; ``teachkit.rlhf.masking`` builds the masked reductions on it.
"""

from __future__ import annotations

import torch

__all__ = ["select_or_zero"]


def select_or_zero(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` where the bool ``mask`` is True, exactly 0 elsewhere (``mask`` broadcasts against ``x``).

    The one place the course turns a mask into values. ``mask`` must already be bool (in
    ``teachkit.rlhf``, the output of ``check_mask``); nothing under mask 0 reaches the result or
    the gradient.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}: wrap it with torch.tensor(...)")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask must be a bool tensor here: validate it first with m = check_mask(mask, x)")
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
