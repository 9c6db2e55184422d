"""Property-based tests (hypothesis) of teachkit.rlhf under random and hostile input.

The contract: a correct result (equal to a reference computed on clean input) or a clear error
(ValueError/TypeError naming the argument); never a silent wrong value. Derandomized and bounded,
so the file runs in seconds and gives the same examples on every run.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teachkit import rlhf
from teachkit.devtools.fuzz_rlhf import SPECS, classify, perturbations

PROFILE = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
POISONS = st.sampled_from([math.nan, math.inf, -math.inf, 1e30])
VALUE_DTYPES = st.sampled_from([torch.float32, torch.float64])
MASK_DTYPES = st.sampled_from([torch.bool, torch.int8, torch.int64, torch.float32, torch.float64])


@st.composite
def masked_batches(draw, prefix=False):
    """(x, mask, clean_x) with x poisoned under mask 0; rows of all 0 allowed; some masks all 0."""
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(B, T, generator=g, dtype=torch.float64).to(draw(VALUE_DTYPES))
    if prefix:
        lengths = torch.tensor(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
        keep = torch.arange(T)[None] < lengths[:, None]
    else:
        keep = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B)))
    x = torch.where(keep, clean, torch.tensor(draw(POISONS), dtype=clean.dtype))
    return x, keep.to(draw(MASK_DTYPES)), torch.where(keep, clean, 0)


def _grad(fn, x, *args):
    x = x.detach().clone().requires_grad_()
    out = fn(x, *args)
    (out if not isinstance(out, tuple) else sum(o.sum() for o in out)).sum().backward()
    return out, x.grad


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype != torch.float64 else {"rtol": 1e-10, "atol": 1e-12}


@PROFILE
@given(masked_batches())
def test_masked_reductions_match_boolean_indexing_and_never_leak(batch):
    x, mask, clean = batch
    keep = mask.bool()
    if not keep.any():
        for fn in (rlhf.masked_sum, rlhf.masked_mean, rlhf.masked_var):
            with pytest.raises(ValueError, match="mask selects nothing"):
                fn(x, mask)
        return
    selected = clean[keep].double()
    n = selected.numel()
    want = {rlhf.masked_sum: selected.sum(), rlhf.masked_mean: selected.mean(),
            rlhf.masked_var: selected.var() if n > 1 else torch.tensor(0.0, dtype=torch.float64)}
    for fn, expected in want.items():
        got, grad = _grad(fn, x, mask)
        _, clean_grad = _grad(fn, clean, mask)
        torch.testing.assert_close(got.double(), expected, **_tol(x.dtype))
        assert bool(torch.isfinite(grad).all()), f"{fn.__name__} leaked poison into the gradient"
        assert bool((grad[~keep] == 0).all())
        torch.testing.assert_close(grad, clean_grad)


@PROFILE
@given(masked_batches(), st.sampled_from([1e-8, 1e-3, 1.0]), st.booleans())
def test_whiten_matches_its_definition_and_never_leaks(batch, eps, shift_mean):
    x, mask, clean = batch
    keep = mask.bool()
    if not keep.any():
        with pytest.raises(ValueError, match="mask selects nothing"):
            rlhf.whiten(x, mask, eps=eps)
        return
    sel = clean[keep].double()
    var = sel.var() if sel.numel() > 1 else torch.tensor(0.0, dtype=torch.float64)
    expected = (clean.double() - sel.mean()) / torch.sqrt(var + eps) + (0 if shift_mean else sel.mean())
    expected = torch.where(keep, expected, 0)
    got, grad = _grad(rlhf.whiten, x, mask, shift_mean, eps)
    torch.testing.assert_close(got.double(), expected, rtol=1e-3, atol=1e-3 if x.dtype != torch.float64 else 1e-9)
    assert bool(torch.isfinite(grad).all()) and bool((grad[~keep] == 0).all())


def _gae_loop(r, v, lengths, gamma, lam):
    """Plain-Python GAE over each row's valid prefix (float64), independent of the library."""
    B, T = r.shape
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        last = 0.0
        for s in reversed(range(lengths[b])):
            next_v = float(v[b, s + 1]) if s + 1 < lengths[b] else 0.0
            last = float(r[b, s]) + gamma * next_v - float(v[b, s]) + gamma * lam * last
            adv[b][s] = last
    return torch.tensor(adv, dtype=torch.float64)


@PROFILE
@given(masked_batches(prefix=True), st.sampled_from([0.0, 0.5, 0.9, 1.0]), st.sampled_from([0.0, 0.95, 1.0]))
def test_gae_matches_a_plain_loop_and_never_leaks(batch, gamma, lam):
    rewards, mask, clean = batch
    keep = mask.bool()
    values = torch.where(keep, torch.linspace(-1, 1, keep.numel()).view_as(clean).to(clean.dtype), math.nan)
    if not keep.any():
        with pytest.raises(ValueError, match="mask selects nothing"):
            rlhf.gae(rewards, values, mask, gamma, lam)
        return
    adv, ret = rlhf.gae(rewards, values, mask, gamma, lam)
    want = _gae_loop(clean.double(), torch.where(keep, values, 0).double(), keep.sum(1).tolist(), gamma, lam)
    torch.testing.assert_close(adv.double(), want, rtol=1e-4, atol=1e-5)
    assert bool(torch.isfinite(ret).all()) and bool((ret[~keep] == 0).all())


HYPER_CALLS = [(name, h) for name, spec in SPECS.items() for h in spec.hyper]


@PROFILE
@given(st.sampled_from(HYPER_CALLS),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-3, 3), st.booleans(),
                 st.none(), st.text(max_size=3)))
def test_hyperparameters_are_finite_numbers_in_range_or_a_clear_error(call, value):
    name, hname = call
    spec = SPECS[name]
    low, high, low_open, high_open = spec.hyper[hname]
    kwargs = spec.make(torch.Generator().manual_seed(0), 3, 4)
    is_real = isinstance(value, (int, float)) and not isinstance(value, bool)
    valid = is_real and math.isfinite(value) and (
        low is None or (value > low if low_open else value >= low)) and (
        high is None or (value < high if high_open else value <= high))
    if not valid:
        with pytest.raises((ValueError, TypeError), match=hname):
            spec.fn(**kwargs, **{hname: value})
        return
    out = spec.fn(**kwargs, **{hname: value})
    for o in out if isinstance(out, tuple) else (out,):
        # a finite answer, or inf from a legitimately huge value (e.g. IPO's 1/(2β) with β = 1e-300)
        assert not bool(torch.isnan(o).any()), f"{name}({hname}={value!r}) returned NaN"


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(st.sampled_from(sorted(SPECS)), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**16), st.data())
def test_any_perturbation_of_any_function_is_correct_or_a_clear_error(name, B, T, seed, data):
    spec = SPECS[name]
    calls = list(perturbations(spec, torch.Generator().manual_seed(seed), B, T))
    call, reference = calls[data.draw(st.integers(0, len(calls) - 1))]
    outcome = classify(spec, call, reference)
    assert outcome in ("correct", "clear error"), f"{name}({call.what}) at B={B}, T={T}: {outcome}"
