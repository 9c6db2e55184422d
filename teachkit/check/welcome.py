"""Exercises of notebook 00: the worked example that shows how checking works."""

from __future__ import annotations

import torch

from ._core import Exercise, assert_close, matches_reference
from ..rlhf.masking import masked_mean as _masked_mean_reference

__all__ = ["masked_mean", "neg_log_sigmoid"]


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
    hints=(
        'only the entries under mask 1 count, both in the sum and in the count; padding may hold NaN, and NaN · 0 is NaN',
        'mean = Σ_{mask=1} x / Σ mask, where padding is *selected away*, not multiplied by 0',
        'torch.where(mask.bool(), x, 0).sum() / mask.sum()',
    ),
)


def _nls_reference(z: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(-z)


def _nls_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(16, generator=g) * 3,)


def _nls_ln2_at_zero(fn):
    assert_close(fn(torch.zeros(3)), torch.full((3,), 0.6931471805599453), "−log σ(0)")


def _nls_finite_at_extremes(fn):
    z = torch.tensor([-200.0, -80.0, 80.0, 200.0])
    got = fn(z)
    if not torch.isfinite(got).all():
        raise AssertionError(f"for z = {z.tolist()} you returned {got.tolist()}: "
                             "overflow or log(0) somewhere (float32)")
    assert_close(got, _nls_reference(z), "at large |z|", rtol=1e-5, atol=1e-5)


def _nls_wrong_naive(z):
    return -torch.log(torch.sigmoid(z))


def _nls_wrong_log1p_exp(z):
    return torch.log1p(torch.exp(-z))


def _nls_wrong_sign(z):
    return torch.nn.functional.softplus(z)


neg_log_sigmoid = Exercise(
    name="neg_log_sigmoid",
    reference=_nls_reference,
    properties=[
        ("−log σ(0) = ln 2 ≈ 0.6931", _nls_ln2_at_zero),
        ("it matches softplus(−z) on random inputs", matches_reference(_nls_reference, _nls_inputs)),
        ("it stays finite and accurate for z = ±200 in float32", _nls_finite_at_extremes),
    ],
    wrong_answers={"naive −log(sigmoid(z))": _nls_wrong_naive,
                   "log1p(exp(−z)) overflows": _nls_wrong_log1p_exp,
                   "wrong sign": _nls_wrong_sign},
    hints=(
        '−log σ(z) = log(1 + e^(−z)); e^(−z) overflows for very negative z and σ(z) rounds to 0 for very positive −z',
        'for z < 0 rewrite log(1 + e^(−z)) = −z + log(1 + e^z): then the exponent is never positive',
        'clamp(-z, min=0) + log1p(exp(-|z|)), or torch.nn.functional.softplus(-z)',
    ),
)
