"""Masked reductions: select, never multiply, so values under mask 0 never leak.

Convention: ``mask`` is (B, T) with 1 on completion tokens up to and including the first EOS.
Values where the mask is 0 are padding and may hold anything, NaN and inf included.

Why select: NaN·0 = NaN and inf·0 = NaN, so ``(x * mask).sum()`` is poisoned by one NaN in the
padding. ``torch.where(mask, x, 0)`` *selects*: the padding never enters the arithmetic, and the
backward pass of ``where`` sends exactly 0 (not NaN·0) to the unselected entries. That select is
``select_or_zero``, defined once in ``teachkit.toy.masking`` (the toy world, below ``rlhf``, needs
it too) and used here and by every loss.

The gradient can still leak if a masked-out value is used *before* the select. In
``where(mask, (x − μ)², 0)`` the unselected branch (x − μ)² is computed from the NaN; its local
derivative 2(x − μ) is NaN, and the chain rule multiplies the 0 from ``where`` by it: 0·NaN = NaN.
So every function here selects the *inputs* first, ``x₀ = select_or_zero(x, mask)``, and only then
computes with x₀.

Checks (shapes, dtypes, 0/1 masks, the empty-batch policy) live in ``validate.py``.
"""

from __future__ import annotations

import torch

from ..toy.masking import select_or_zero
from .validate import check_floating, check_mask, check_mask_selects, check_not_empty

__all__ = ["masked_sum", "masked_mean", "masked_var"]


def _checked(x, mask) -> torch.Tensor:
    check_not_empty("x", check_floating("x", x))
    return check_mask_selects(check_mask(mask, x, "x"))


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Sum of ``x`` where ``mask`` is 1, over everything or along ``dim``; a row that selects nothing sums to 0."""
    m = _checked(x, mask)
    selected = select_or_zero(x, m)
    return selected.sum() if dim is None else selected.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1.

    Along ``dim``, a row whose mask is all 0 gets 0 (its sum over its count, clamped to 1); the
    whole mask must select something (the empty-batch policy of ``validate.py``).
    """
    m = _checked(x, mask)
    selected = select_or_zero(x, m)
    total = selected.sum() if dim is None else selected.sum(dim=dim)
    count = m.sum() if dim is None else m.sum(dim=dim)
    return total / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the entries of ``x`` under ``mask``; Bessel-corrected (n − 1) by default, as ``torch.var``.

    With a single selected entry the Bessel variance 0/0 is undefined; we return 0 (the entry has
    no spread), so ``whiten`` of one token gives 0 rather than NaN.
    """
    m = _checked(x, mask)
    x0 = select_or_zero(x, m)                      # select first: the gradient must not see padding
    n = m.sum().to(x.dtype)
    mean = x0.sum() / n
    sq = select_or_zero((x0 - mean) ** 2, m).sum()
    if unbiased:
        n = (n - 1).clamp(min=1)
    return sq / n
