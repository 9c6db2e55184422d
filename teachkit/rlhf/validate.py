"""Input checks for every public function of ``teachkit.rlhf``: bad input gets a clear error.

Each check names the argument it rejects and says what to do, so a learner who passes the wrong
thing reads *which* argument is wrong and how to fix it, not a torch traceback from deep inside a
loss. The checks are pure functions; the ones that clean their input return the cleaned value
(a bool mask, a float hyperparameter), so a caller writes ``m = check_mask(mask, logp, "logp")``.

The contract
------------
- **Tensors.** Tensor arguments must be ``torch.Tensor`` with the documented number of dimensions.
  Values must be floating point (float16, bfloat16, float32, float64): integer or bool values are
  rejected, never cast, because the maths would silently change (an int64 GAE truncates every
  advantage; the mean of a bool tensor computed in bool is its sum).
- **Masks.** Any dtype whose entries are only 0 and 1 (bool, int, float 0/1); NaN is not 0 or 1.
  A mask has exactly the shape of the values it selects from.
- **Shapes.** Tensors that pair up entry by entry must share one shape; per-sequence tensors
  (B,) must have one entry per row of the per-token tensors (B, T).
- **Hyperparameters.** Real numbers (Python, NumPy or a 0-dim tensor; not bool), finite, inside
  the documented range; the check returns ``float(value)``.
- **Empty batch: an error, everywhere.** Every public function raises ``ValueError`` when its
  batch is empty: a tensor argument with no entries (B = 0 sequences or pairs, or T = 0
  positions), or a mask with no 1 anywhere. There is no neutral value to return: the mean of
  nothing is undefined, and a 0 loss would hide the bug that emptied the batch.
  A mask *row* of all 0 inside a non-empty batch is fine: that row selects nothing, so its
  per-row sum or mean is 0 (and a sequence-level mean counts it as a row of 0, as TRL does).
- **Values under mask 0** are never checked: they may hold anything, NaN and inf included, and
  never reach a result or a gradient (see ``masking.py``). NaN or inf where the mask is 1 is data,
  not padding: it propagates into the result (a NaN loss), or is a clear error where a function
  needs finite values (the rewards of the group baselines, ORPO's log-probs); it is never hidden.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "check_tensor", "check_floating", "check_not_empty", "check_same_shape", "check_mask",
    "check_mask_selects", "check_one_per_row", "check_token_batch", "check_pair_batch",
    "check_number", "check_integer", "check_choice", "EMPTY_BATCH_POLICY",
]

EMPTY_BATCH_POLICY = ("an empty batch is an error: pass at least one sequence (or pair), "
                      "each with at least one position, and a mask with at least one 1")


def check_tensor(name: str, x, ndim: int | None = None) -> torch.Tensor:
    """``x`` must be a torch.Tensor with ``ndim`` dimensions (any number if None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}: "
                        f"wrap it with torch.tensor(...)")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(x.shape)}")
    return x


def check_floating(name: str, x, ndim: int | None = None) -> torch.Tensor:
    """``x`` must be a floating-point tensor (integer and bool values are rejected, not cast)."""
    check_tensor(name, x, ndim)
    if not x.is_floating_point():
        how = f"{name}.float()" if name.isidentifier() else ".float()"
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}: convert it with {how}")
    return x


def check_not_empty(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` must have at least one entry (the empty-batch policy)."""
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): {EMPTY_BATCH_POLICY}")
    return x


def check_same_shape(**tensors: torch.Tensor) -> None:
    """All named tensors must share one shape; the error lists every shape by name."""
    for name, t in tensors.items():
        check_tensor(name, t)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{n}{s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: these must all have the same shape, got {listing}")


def check_mask(mask, like: torch.Tensor | tuple, like_name: str = "the values",
               name: str = "mask") -> torch.Tensor:
    """A 0/1 mask (bool, int or float) of exactly the shape of ``like``; returned as bool.

    ``like`` is the tensor the mask selects from, or its shape.
    """
    check_tensor(name, mask)
    shape = tuple(like.shape) if isinstance(like, torch.Tensor) else tuple(like)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name} must be the same shape as {like_name}, {shape}; got {name}{tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex():
        raise TypeError(f"{name} must be bool, int or float, got dtype {mask.dtype}")
    ok = (mask == 0) | (mask == 1)
    if not bool(ok.all()):
        bad = mask[~ok].flatten()[0].item()
        raise ValueError(f"{name} must contain only 0 and 1 (1 where the entry counts, 0 for padding), "
                         f"got {bad}")
    return mask != 0


def check_mask_selects(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A (bool) mask must select at least one entry (the empty-batch policy)."""
    if not bool(mask.any()):
        raise ValueError(f"{name} selects nothing (it is all 0, shape {tuple(mask.shape)}): {EMPTY_BATCH_POLICY}")
    return mask


def check_one_per_row(name: str, x: torch.Tensor, rows_of: torch.Tensor, rows_name: str) -> torch.Tensor:
    """A per-sequence tensor (B,) must hold one value per row of ``rows_of`` (B, T)."""
    check_floating(name, x, ndim=1)
    if x.shape[0] != rows_of.shape[0]:
        raise ValueError(f"{name} must hold one value per sequence (completion): "
                         f"{rows_name}{tuple(rows_of.shape)} has {rows_of.shape[0]} rows "
                         f"but {name}{tuple(x.shape)} has {x.shape[0]}")
    return x


def check_token_batch(mask, **tensors: torch.Tensor) -> torch.Tensor:
    """Per-token inputs: each named tensor (B, T) floating, one shape, not empty; returns the bool mask.

    The first tensor named is the one the mask is matched against in messages.
    """
    for name, t in tensors.items():
        check_floating(name, t, ndim=2)
    check_same_shape(**tensors)
    first_name, first = next(iter(tensors.items()))
    check_not_empty(first_name, first)
    m = check_mask(mask, first, first_name)
    return check_mask_selects(m)


def check_pair_batch(**tensors: torch.Tensor) -> None:
    """Per-sequence inputs (preference pairs, rewards): each named tensor (B,) floating, one shape, B ≥ 1."""
    for name, t in tensors.items():
        check_floating(name, t, ndim=1)
    check_same_shape(**tensors)
    first_name, first = next(iter(tensors.items()))
    check_not_empty(first_name, first)


def _range_text(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite real hyperparameter inside [low, high] (open ends with ``low_open``/``high_open``); returns float."""
    wanted = _range_text(low, high, low_open, high_open)
    wanted = f"a finite number {wanted}".rstrip()
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex() and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {wanted}, got {type(value).__name__} {value!r}")
    v = float(value)
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if not math.isfinite(v) or too_low or too_high:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return v


def check_integer(name: str, value, low: int) -> int:
    """An integer hyperparameter (not bool) ≥ ``low``; returns int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: tuple) -> None:
    """``value`` must be one of ``choices``: equal and of the same type (so True is not 1, nor 2.0 the 2)."""
    if isinstance(value, bool) or not any(type(value) is type(c) and value == c for c in choices):
        listing = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}: {name} must be one of {listing}")
