"""Masks and shape checks shared by every loss in ``teachkit.rlhf``.

Convention: ``mask`` is (B, T) with 1 on completion tokens up to and including the first EOS.
Values where the mask is 0 are padding and may hold anything, NaN included. NaN * 0 is NaN, so
we never multiply by the mask: we *select* with ``torch.where`` before reducing.
"""

from __future__ import annotations

import torch


def check_tensor(name: str, x, ndim: int | None = None) -> torch.Tensor:
    """Raise a learner-readable error unless ``x`` is a tensor with ``ndim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(x.shape)}")
    return x


def check_same_shape(**tensors: torch.Tensor) -> None:
    """All named tensors must share one shape; the error lists every shape by name."""
    for name, t in tensors.items():
        check_tensor(name, t)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{n}{s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: these must all have the same shape, got {listing}")


def check_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Validate a 0/1 mask of the same shape as ``like`` and return it as bool."""
    check_tensor(name, mask)
    if mask.shape != like.shape:
        raise ValueError(f"{name} must have the same shape as the values, "
                         f"got {name}{tuple(mask.shape)} and values{tuple(like.shape)}")
    if mask.dtype != torch.bool:
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"{name} must contain only 0 and 1")
        mask = mask.bool()
    return mask


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Sum of ``x`` where ``mask`` is 1. Masked-out entries never leak, not even NaN or inf."""
    mask = check_mask(mask, x)
    selected = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return selected.sum() if dim is None else selected.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` is 1 (an all-zero mask gives 0, not NaN)."""
    mask = check_mask(mask, x)
    total = masked_sum(x, mask, dim)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return total / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the entries of ``x`` under ``mask`` (Bessel-corrected by default)."""
    mask = check_mask(mask, x)
    mean = masked_mean(x, mask)
    sq = masked_sum((x - mean) ** 2, mask)
    n = mask.sum().to(x.dtype)
    if unbiased:
        n = (n - 1).clamp(min=1)
    return sq / n.clamp(min=1)
