"""Bad input at the public boundary of teachkit.rlhf: a correct result or a clear error, never a silent wrong value.

Each test below started as a reproduction of a silent wrong answer or an unhelpful crash.
"""

import math

import pytest
import torch

from teachkit import rlhf
from teachkit.devtools.fuzz_rlhf import fuzz
from teachkit.rlhf import validate

NAN, INF = float("nan"), float("inf")


def t(x, dtype=torch.float64, **kw):
    return torch.tensor(x, dtype=dtype, **kw)


A = t([-1.0, -2.0])
FOUR = (A, A - 0.5, A + 0.1, A - 0.3)


# ---------------------------------------------------------------- poison under mask 0

@pytest.mark.parametrize("poison", [NAN, INF, -INF])
def test_masked_var_poison_under_mask_reaches_neither_value_nor_gradient(poison):
    x = t([[1.0, 2.0, poison], [3.0, poison, poison]], requires_grad=True)
    m = t([[1, 1, 0], [1, 0, 0]])
    v = rlhf.masked_var(x, m)
    assert v.item() == pytest.approx(1.0)
    v.backward()
    clean = t([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]], requires_grad=True)
    rlhf.masked_var(clean, m).backward()
    torch.testing.assert_close(x.grad, clean.grad)
    assert bool((x.grad[~m.bool()] == 0).all())


@pytest.mark.parametrize("poison", [NAN, INF, -INF])
def test_whiten_poison_under_mask_reaches_neither_value_nor_gradient(poison):
    x = t([[1.0, 2.0, poison], [4.0, poison, poison]], requires_grad=True)
    m = t([[1, 1, 0], [1, 0, 0]])
    out = rlhf.whiten(x, m)
    assert bool(torch.isfinite(out).all())
    (out * t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool((x.grad[~m.bool()] == 0).all())


# ---------------------------------------------------------------- dtypes

def test_gae_with_integer_inputs_is_a_clear_error_not_truncated_advantages():
    r, v = torch.tensor([[0, 0, 1], [0, 1, 0]]), torch.zeros(2, 3, dtype=torch.int64)
    m = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with pytest.raises(TypeError, match=r"rewards must be a floating-point tensor.*rewards\.float\(\)"):
        rlhf.gae(r, v, m, gamma=0.9, lam=0.9)
    adv, _ = rlhf.gae(r.float(), v.float(), m, gamma=0.9, lam=0.9)
    torch.testing.assert_close(adv, torch.tensor([[0.6561, 0.81, 1.0], [0.81, 1.0, 0.0]]))


def test_masked_mean_and_aggregate_loss_on_bool_are_clear_errors_not_the_sum():
    x, m = torch.tensor([[True, False, True]]), torch.ones(1, 3)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        rlhf.masked_mean(x, m)
    with pytest.raises(TypeError, match="per_token must be a floating-point tensor"):
        rlhf.aggregate_loss(x, m)
    assert rlhf.masked_mean(x.double(), m).item() == pytest.approx(2 / 3)


BOOL_CALLS = {
    "ppo_policy_loss": lambda b, f, m: rlhf.ppo_policy_loss(b, f, f, m),
    "ppo_value_loss": lambda b, f, m: rlhf.ppo_value_loss(b, f, f, m),
    "clip_fraction": lambda b, f, m: rlhf.clip_fraction(b, f, m),
    "grpo_loss": lambda b, f, m: rlhf.grpo_loss(b, f, f, f[:, 0], m),
    "reinforce_loss": lambda b, f, m: rlhf.reinforce_loss(b, f[:, 0], m),
    "gae": lambda b, f, m: rlhf.gae(b, f, m),
    "whiten": lambda b, f, m: rlhf.whiten(b, m),
    "kl_k1": lambda b, f, m: rlhf.kl_k1(b, f),
    "kl_k3": lambda b, f, m: rlhf.kl_k3(b, f),
    "dpo_loss": lambda b, f, m: rlhf.dpo_loss(b[:, 0], *[f[:, 0]] * 3),
    "bradley_terry_loss": lambda b, f, m: rlhf.bradley_terry_loss(b[:, 0], f[:, 0]),
    "remax_advantages": lambda b, f, m: rlhf.remax_advantages(b[:, 0], f[:, 0]),
    "tdpo_loss": lambda b, f, m: rlhf.tdpo_loss(b[:, 0], *[f[:, 0]] * 3),
    "sequence_logps": lambda b, f, m: rlhf.sequence_logps(b, m),
}


@pytest.mark.parametrize("name", sorted(BOOL_CALLS))
def test_bool_values_are_a_type_error_that_names_the_argument(name):
    b, f, m = torch.ones(2, 3, dtype=torch.bool), -torch.ones(2, 3), torch.ones(2, 3)
    with pytest.raises(TypeError, match=r"must be a floating-point tensor, got dtype torch.bool"):
        BOOL_CALLS[name](b, f, m)


def test_bradley_terry_on_int64_names_the_argument():
    with pytest.raises(TypeError, match="chosen_rewards must be a floating-point tensor"):
        rlhf.bradley_terry_loss(torch.tensor([1, 2]), torch.tensor([0, 1]))


@pytest.mark.parametrize("fn", [rlhf.masked_sum, rlhf.masked_mean, rlhf.masked_var])
def test_masked_reductions_given_a_list_name_the_argument(fn):
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fn([1.0, 2.0], torch.ones(2))
    with pytest.raises(TypeError, match="mask must be a torch.Tensor"):
        fn(torch.ones(2), [1, 1])


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int8, torch.int64, torch.float16, torch.float64])
def test_masks_of_any_zero_one_dtype_give_the_same_result(mask_dtype):
    x = t([[1.0, 5.0, NAN], [2.0, NAN, NAN]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert rlhf.masked_mean(x, m.to(mask_dtype)).item() == pytest.approx(8 / 3)


# ---------------------------------------------------------------- NaN under mask 1 propagates

def test_sequential_kl_keeps_a_nan_in_an_unmasked_ref_logit():
    pol, ref = torch.zeros(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64)
    ref[0, 1, 0] = NAN
    assert math.isnan(rlhf.sequential_kl(pol, ref, torch.ones(1, 2)).item())
    ref[0, 1, 0] = 0.0  # the same NaN under mask 0 is padding: it never counts
    ref_padded = ref.clone()
    ref_padded[0, 1] = NAN
    torch.testing.assert_close(rlhf.sequential_kl(pol, ref_padded, t([[1, 0]])), t([0.0]))


def test_clip_fraction_does_not_count_a_nan_log_prob_as_inside_the_clip():
    logp, old = t([[0.0, NAN]]), torch.zeros(1, 2, dtype=torch.float64)
    assert math.isnan(rlhf.clip_fraction(logp, old, torch.ones(1, 2)).item())
    assert rlhf.clip_fraction(logp, old, t([[1, 0]])).item() == 0.0


# ---------------------------------------------------------------- the empty-batch policy

E2, E1 = torch.zeros(0, 3), torch.zeros(0)
EMPTY_CALLS = {
    "grpo_loss": lambda: rlhf.grpo_loss(E2, E2, E2, E1, E2),
    "aggregate_loss": lambda: rlhf.aggregate_loss(E2, E2),
    "aggregate_loss token-mean": lambda: rlhf.aggregate_loss(E2, E2, "token-mean"),
    "bradley_terry_loss": lambda: rlhf.bradley_terry_loss(E1, E1),
    "ppo_policy_loss": lambda: rlhf.ppo_policy_loss(E2, E2, E2, E2),
    "ppo_value_loss": lambda: rlhf.ppo_value_loss(E2, E2, E2, E2),
    "reinforce_loss": lambda: rlhf.reinforce_loss(E2, E1, E2),
    "dpo_loss": lambda: rlhf.dpo_loss(E1, E1, E1, E1),
    "orpo_loss": lambda: rlhf.orpo_loss(E1, E1),
    "gae T=0": lambda: rlhf.gae(torch.zeros(2, 0), torch.zeros(2, 0), torch.zeros(2, 0)),
    "masked_mean all-zero mask": lambda: rlhf.masked_mean(torch.ones(2, 3), torch.zeros(2, 3)),
    "ppo_policy_loss all-zero mask": lambda: rlhf.ppo_policy_loss(*[torch.zeros(2, 3)] * 4),
    "grpo_advantages": lambda: rlhf.grpo_advantages(E1, 4),
}


@pytest.mark.parametrize("name", sorted(EMPTY_CALLS))
def test_every_empty_batch_is_the_same_clear_error(name):
    with pytest.raises(ValueError, match="empty batch is an error"):
        EMPTY_CALLS[name]()


def test_an_all_zero_row_in_a_non_empty_batch_contributes_zero():
    per_token = t([[1.0, 3.0], [NAN, NAN]])
    mask = t([[1, 1], [0, 0]])
    assert rlhf.aggregate_loss(per_token, mask).item() == pytest.approx(1.0)   # (2 + 0) / 2 rows, as TRL
    assert rlhf.aggregate_loss(per_token, mask, "token-mean").item() == pytest.approx(2.0)
    adv, ret = rlhf.gae(per_token, per_token, mask)
    assert adv[1].tolist() == [0.0, 0.0] and ret[1].tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- hyperparameters

@pytest.mark.parametrize("bad", [NAN, INF, -INF, 0.0, -0.1, True, "0.1", None])
@pytest.mark.parametrize("call", [
    lambda b: rlhf.dpo_loss(*FOUR, beta=b), lambda b: rlhf.dpop_loss(*FOUR, beta=b),
    lambda b: rlhf.ipo_loss(*FOUR, beta=b), lambda b: rlhf.simpo_loss(A, A - 1, beta=b),
    lambda b: rlhf.implicit_rewards(*FOUR, beta=b), lambda b: rlhf.tdpo_loss(*FOUR, beta=b),
    lambda b: rlhf.tdpo_rewards(*FOUR, beta=b)],
    ids=["dpo", "dpop", "ipo", "simpo", "implicit", "tdpo", "tdpo_rewards"])
def test_beta_must_be_a_finite_positive_number(call, bad):
    with pytest.raises((ValueError, TypeError), match="beta must be a finite number > 0"):
        call(bad)


@pytest.mark.parametrize("call, name", [
    (lambda v: rlhf.dpop_loss(*FOUR, lam=v), "lam"), (lambda v: rlhf.orpo_loss(A, A - 1, lam=v), "lam"),
    (lambda v: rlhf.tdpo_loss(*FOUR, alpha=v), "alpha"), (lambda v: rlhf.simpo_loss(A, A - 1, gamma=v), "gamma")])
def test_non_negative_hyperparameters_reject_nan_and_inf(call, name):
    for bad in (NAN, INF, -1.0):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            call(bad)
    assert torch.isfinite(call(0.0))


def test_tdpo_rewards_checks_beta():
    with pytest.raises(ValueError, match="beta"):
        rlhf.tdpo_rewards(*FOUR, beta=-0.1)


def test_whiten_and_grpo_advantages_need_a_positive_eps():
    for bad in (-1.0, 0.0, NAN):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            rlhf.whiten(t([[1.0, 2.0]]), torch.ones(1, 2), eps=bad)
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            rlhf.grpo_advantages(t([1.0, 0.0]), 2, eps=bad)


def test_clip_fraction_checks_clip_eps():
    z = torch.zeros(1, 2)
    for bad in (-0.2, 0.0, NAN, INF):
        with pytest.raises(ValueError, match="clip_eps must be a finite number > 0"):
            rlhf.clip_fraction(z, z, torch.ones(1, 2), clip_eps=bad)


def test_gae_checks_gamma_and_lam():
    z = torch.zeros(1, 2)
    for name in ("gamma", "lam"):
        for bad in (NAN, -0.1, 1.5):
            with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0 and <= 1"):
                rlhf.gae(z, z, torch.ones(1, 2), **{name: bad})


# ---------------------------------------------------------------- the validation layer itself

def test_check_number_accepts_reals_and_returns_a_float():
    import numpy as np

    assert validate.check_number("beta", np.float32(0.5), low=0.0) == 0.5
    assert validate.check_number("beta", torch.tensor(2), low=0.0) == 2.0
    assert validate.check_number("lam", 0, low=0.0) == 0.0
    with pytest.raises(TypeError, match="beta"):
        validate.check_number("beta", [0.1])


def test_check_mask_returns_bool_and_names_the_values():
    assert validate.check_mask(torch.tensor([1.0, 0.0]), torch.zeros(2)).dtype == torch.bool
    with pytest.raises(ValueError, match=r"mask must be the same shape as logp, \(2,\)"):
        validate.check_mask(torch.ones(3), torch.zeros(2), "logp")
    with pytest.raises(ValueError, match="only 0 and 1.*got nan"):
        validate.check_mask(t([1.0, NAN]), torch.zeros(2))


def test_select_or_zero_needs_a_bool_mask():
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        rlhf.select_or_zero(torch.ones(2), torch.ones(2))
    x = t([1.0, NAN], requires_grad=True)
    rlhf.select_or_zero(x, torch.tensor([True, False])).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0]


# ---------------------------------------------------------------- the whole API, fuzzed

def test_fuzzing_the_public_api_finds_no_silent_wrong_answer_and_no_unhelpful_error():
    counts, bad = fuzz(seeds=1)
    assert not bad, "\n".join(bad[:20])
    assert counts["correct"] > 250 and counts["clear error"] > 500
