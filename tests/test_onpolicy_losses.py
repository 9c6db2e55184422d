"""The on-policy API of teachkit.rlhf against hand-computed values and its defining properties."""

import math

import pytest
import torch

from teachkit.rlhf import (
    aggregate_loss, clip_fraction, gae, grpo_advantages, grpo_loss, kl_k1, kl_k2, kl_k3,
    ppo_policy_loss, ppo_value_loss, reinforce_loss, remax_advantages, rloo_advantages, whiten,
)

NAN = float("nan")


def t(x, **kw):
    return torch.tensor(x, dtype=torch.float32, **kw)


# ----------------------------------------------------------------------------- KL estimators

def test_kl_estimators_hand_computed():
    logp, ref = t([[-1.0, -2.0]]), t([[-1.5, -1.0]])
    torch.testing.assert_close(kl_k1(logp, ref), t([[0.5, -1.0]]))
    torch.testing.assert_close(kl_k2(logp, ref), t([[0.125, 0.5]]))
    # d = ref - logp = [-0.5, 1.0]: e^-0.5 + 0.5 - 1 and e - 2
    torch.testing.assert_close(kl_k3(logp, ref), t([[0.10653066, 0.71828183]]))


def test_k3_never_negative_in_float32_and_accurate():
    d = torch.linspace(-30, 30, 200_001)
    d = torch.cat([d, t([1e-8, -1e-8, 1e-6, -1e-6, 3e-4, -3e-4, 0.0999999, 0.1, -0.1, 0.1000001])])
    got = kl_k3(torch.zeros_like(d), d)  # logp = 0, ref_logp = d
    assert bool((got >= 0).all())
    dd = d.double()
    exact = torch.where(dd.abs() < 1e-3, dd * dd * (0.5 + dd / 6 + dd * dd / 24), torch.expm1(dd) - dd)
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-30)


def test_k3_is_half_l_squared_near_zero():
    ell = t([1e-6, -1e-6, 1e-4, -1e-4, 1e-2, -1e-2])
    got = kl_k3(ell, torch.zeros_like(ell))
    ratio = got / (0.5 * ell ** 2)
    assert bool(((ratio - 1).abs() <= ell.abs()).all()), ratio  # k3 = ½ℓ²(1 − ℓ/3 + ...)
    naive = torch.exp(-ell) + ell - 1  # the cancelling form goes wrong (even ≤ 0) here
    assert not torch.allclose(naive[:2], got[:2], rtol=0.1)


def test_k3_gradient_is_finite_for_large_log_ratios():
    logp = t([[-60.0, -1e-7, 0.0, -0.05]], requires_grad=True)
    kl_k3(logp, t([[0.0, 0.0, -80.0, 0.0]])).sum().backward()
    assert bool(torch.isfinite(logp.grad).all())


def test_k1_and_k3_are_unbiased_k2_is_not():
    pi = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    ref = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    kl = float((pi * (pi / ref).log()).sum())
    lp, lr = pi.log(), ref.log()
    assert math.isclose(float((pi * kl_k1(lp, lr)).sum()), kl, rel_tol=1e-12)
    assert math.isclose(float((pi * kl_k3(lp, lr)).sum()), kl, rel_tol=1e-12)
    assert not math.isclose(float((pi * kl_k2(lp, lr)).sum()), kl, rel_tol=1e-2)


def test_kl_shape_mismatch():
    with pytest.raises(ValueError, match="logp.*ref_logp"):
        kl_k3(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------- GAE, whitening

def test_gae_hand_computed():
    adv, ret = gae(t([[0.0, 0.0, 1.0]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=1.0, lam=0.5)
    torch.testing.assert_close(adv, t([[0.225, 0.25, 0.3]]))
    torch.testing.assert_close(ret, t([[0.725, 0.85, 1.0]]))


def test_gae_bootstrap_is_zero_at_the_end_and_nan_after_it_never_leaks():
    rewards = t([[0.0, 2.0, NAN], [1.0, NAN, NAN]])
    values = t([[1.0, 1.0, NAN], [0.5, 7.0, NAN]])
    mask = t([[1, 1, 0], [1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    # row 0: A1 = 2 - 1 = 1;  A0 = 0 + 0.9*1 - 1 + 0.9*1 = 0.8.   row 1: A0 = 1 - 0.5
    torch.testing.assert_close(adv, t([[0.8, 1.0, 0.0], [0.5, 0.0, 0.0]]))
    torch.testing.assert_close(ret, t([[1.8, 2.0, 0.0], [1.0, 0.0, 0.0]]))


def test_gae_limits_lambda_one_and_zero():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    mask = torch.ones(3, 5)
    adv, _ = gae(r, v, mask, gamma=1.0, lam=1.0)  # Monte-Carlo return minus V
    torch.testing.assert_close(adv, r.flip(1).cumsum(1).flip(1) - v)
    adv0, _ = gae(r, v, mask, gamma=1.0, lam=0.0)  # one-step TD error
    next_v = torch.cat([v[:, 1:], torch.zeros(3, 1)], 1)
    torch.testing.assert_close(adv0, r + next_v - v)


def test_gae_rejects_bad_input():
    with pytest.raises(ValueError, match="1s followed by 0s"):
        gae(torch.zeros(1, 3), torch.zeros(1, 3), t([[1, 0, 1]]))
    with pytest.raises(ValueError, match="shape mismatch"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="gamma"):
        gae(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1, 3), gamma=1.5)


def test_whiten_hand_computed():
    x, mask = t([[2.0, 4.0, 6.0, NAN]]), t([[1, 1, 1, 0]])  # mean 4, Bessel var 4
    torch.testing.assert_close(whiten(x, mask), t([[-1.0, 0.0, 1.0, 0.0]]))
    torch.testing.assert_close(whiten(x, mask, shift_mean=False), t([[3.0, 4.0, 5.0, 0.0]]))


# ----------------------------------------------------------------------------- PPO

def _ppo_case():
    logp = t([[math.log(1.5), math.log(0.5), NAN], [math.log(1.1), math.log(0.5), NAN]], requires_grad=True)
    old = t([[0.0, 0.0, NAN], [0.0, 0.0, NAN]])
    adv = t([[1.0, 1.0, NAN], [-1.0, -1.0, NAN]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    return logp, old, adv, mask


def test_ppo_policy_loss_hand_computed_and_clipped_gradient():
    logp, old, adv, mask = _ppo_case()
    loss = ppo_policy_loss(logp, old, adv, mask, clip_eps=0.2)
    # per token: max(-1.5, -1.2) = -1.2, max(-0.5, -0.8) = -0.5, max(1.1, 1.1) = 1.1, max(0.5, 0.8) = 0.8
    assert math.isclose(loss.item(), (-1.2 - 0.5 + 1.1 + 0.8) / 4, rel_tol=1e-6)
    loss.backward()
    # clipped tokens get no gradient; the others get -A·ρ/4
    torch.testing.assert_close(logp.grad, t([[0.0, -0.125, 0.0], [0.275, 0.0, 0.0]]))
    assert math.isclose(clip_fraction(logp, old, mask).item(), 0.75)  # ratios 1.5, 0.5, 0.5 are out


def test_ppo_ratio_is_one_in_first_minibatch():
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(4, 6, generator=g).requires_grad_()
    adv = torch.randn(4, 6, generator=g)
    mask = torch.ones(4, 6)
    mask[2, 3:] = 0
    loss = ppo_policy_loss(logp, logp.detach(), adv, mask)
    ref = -(adv * mask).sum() / mask.sum()
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-6)
    assert clip_fraction(logp, logp.detach(), mask).item() == 0.0
    loss.backward()  # at ρ = 1 the gradient is the plain policy gradient −A/N
    torch.testing.assert_close(logp.grad, torch.where(mask.bool(), -adv / mask.sum(), torch.zeros(())))


def test_ppo_value_loss_hand_computed():
    values = t([[2.0, 0.0, 1.0, 1.5, NAN]])
    old = t([[1.0, 0.0, 1.0, 1.0, NAN]])
    returns = t([[1.5, 1.0, 0.0, 2.0, NAN]])
    mask = t([[1, 1, 1, 1, 0]])
    # per token: max(0.25, 0.09), max(1, 1), max(1, 1), max(0.25, 0.64)
    loss = ppo_value_loss(values, old, returns, mask, clip_eps=0.2)
    assert math.isclose(loss.item(), 0.5 * (0.25 + 1 + 1 + 0.64) / 4, rel_tol=1e-6)


def test_ppo_rejects_bad_shapes_and_eps():
    with pytest.raises(ValueError, match="advantages"):
        ppo_policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask"):
        ppo_policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_value_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), clip_eps=0)


# ----------------------------------------------------------------------------- baselines

def test_remax_advantages():
    torch.testing.assert_close(remax_advantages(t([1.0, 0.5]), t([0.5, 0.5])), t([0.5, 0.0]))
    with pytest.raises(ValueError, match="shape mismatch"):
        remax_advantages(t([1.0, 0.5]), t([0.5]))


def test_grpo_advantages_hand_computed_and_zero_std_groups():
    r = t([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # Bessel std of [1, 0, 0, 1] is sqrt(1/3)
    torch.testing.assert_close(grpo_advantages(r, 4), t([a, -a, -a, a, 0, 0, 0, 0]))
    torch.testing.assert_close(grpo_advantages(r, 4, scale=False), t([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))
    tricky = t([0.1, 0.1, 0.1, 0.7, 0.7, 0.7])  # float rounding must not leave residue
    assert bool((grpo_advantages(tricky, 3) == 0).all())
    assert bool((rloo_advantages(tricky, 3) == 0).all())


def test_grpo_advantages_rejects_bad_groups():
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo_advantages(torch.zeros(7), 4)
    with pytest.raises(ValueError, match="group_size"):
        grpo_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="NaN"):
        grpo_advantages(t([1.0, NAN]), 2)
    with pytest.raises(ValueError, match="dimension"):
        grpo_advantages(torch.zeros(2, 4), 4)


def test_rloo_baseline_leaves_own_sample_out():
    r = t([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(rloo_advantages(r, 4), t([2 / 3, -2 / 3, -2 / 3, 2 / 3]))
    g = torch.Generator().manual_seed(0)
    r = torch.randn(12, generator=g)
    adv = rloo_advantages(r, 3).view(4, 3)
    groups = r.view(4, 3)
    for i in range(3):
        others = torch.cat([groups[:, :i], groups[:, i + 1:]], 1).mean(1)
        torch.testing.assert_close(adv[:, i], groups[:, i] - others)
    # = G/(G-1) times GRPO's centred rewards
    torch.testing.assert_close(rloo_advantages(r, 3), 1.5 * grpo_advantages(r, 3, scale=False))


def test_reinforce_loss_hand_computed_and_nan_safe():
    logp = t([[-1.0, -2.0, NAN], [-0.5, NAN, NAN]], requires_grad=True)
    mask = t([[1, 1, 0], [1, 0, 0]])
    loss = reinforce_loss(logp, t([2.0, -1.0]), mask)
    assert math.isclose(loss.item(), 5.5 / 3, rel_tol=1e-6)  # -(2·-1 + 2·-2 + -1·-0.5)/3
    loss.backward()
    torch.testing.assert_close(logp.grad, t([[-2 / 3, -2 / 3, 0.0], [1 / 3, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="one value per sequence"):
        reinforce_loss(torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))


# ----------------------------------------------------------------------------- GRPO loss

def test_grpo_loss_aggregations_hand_computed():
    logp = torch.zeros(2, 3)
    mask = t([[1, 1, 1], [1, 0, 0]])
    adv = t([1.0, -1.0])  # ρ = 1: per token -A, i.e. row 0: -1 -1 -1, row 1: +1
    kw = dict(beta=0.0)
    assert math.isclose(grpo_loss(logp, logp, None, adv, mask, **kw).item(), 0.0, abs_tol=1e-7)
    assert math.isclose(grpo_loss(logp, logp, None, adv, mask, aggregation="token-mean", **kw).item(), -0.5)
    assert math.isclose(grpo_loss(logp, logp, None, adv, mask, aggregation="seq-mean-token-sum-norm",
                                  **kw).item(), -1 / 3, rel_tol=1e-6)
    # β = 0.5 and ref − logp = 1 everywhere: k3 = e − 2 on every token
    ref = torch.ones(2, 3)
    got = grpo_loss(logp, logp, ref, adv, mask, beta=0.5).item()
    assert math.isclose(got, ((-1 + 0.5 * (math.e - 2)) + (1 + 0.5 * (math.e - 2))) / 2, rel_tol=1e-6)


def test_grpo_loss_clip():
    logp = t([[math.log(1.5)], [math.log(0.5)]])
    old = torch.zeros(2, 1)
    adv = t([1.0, -1.0])
    loss = grpo_loss(logp, old, None, adv, torch.ones(2, 1), beta=0.0)
    assert math.isclose(loss.item(), (-1.2 + 0.8) / 2, rel_tol=1e-6)  # min(1.5, 1.2) and min(-0.5, -0.8)


def test_grpo_loss_near_zero_but_gradient_is_not():
    g = torch.Generator().manual_seed(0)
    logp = (torch.randn(8, 5, generator=g) - 2).requires_grad_()
    adv = grpo_advantages(torch.randn(8, generator=g), 4)
    loss = grpo_loss(logp, logp.detach(), None, adv, torch.ones(8, 5), beta=0.0)
    assert abs(loss.item()) < 1e-6
    loss.backward()
    assert logp.grad.norm().item() > 0.1


def test_zero_std_groups_give_zero_gradient():
    logp = torch.randn(4, 3).requires_grad_()
    adv = grpo_advantages(t([1.0, 1.0, 0.0, 0.0]), 2)
    grpo_loss(logp, logp.detach(), None, adv, torch.ones(4, 3), beta=0.0).backward()
    assert bool((logp.grad == 0).all())


def test_length_bias_of_the_paper_aggregation():
    """A wrong answer (A < 0) gets a per-token push 1/|o_i|: long ones are pushed down less."""
    mask = t([[1, 1, 1, 1], [1, 1, 0, 0]])
    adv = t([-1.0, -1.0])
    grads = {}
    for agg in ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"):
        logp = torch.zeros(2, 4, requires_grad=True)
        grpo_loss(logp, logp.detach(), None, adv, mask, beta=0.0, aggregation=agg).backward()
        grads[agg] = (logp.grad[0, 0].item(), logp.grad[1, 0].item())
    long_, short = grads["seq-mean-token-mean"]
    assert math.isclose(short / long_, 2.0, rel_tol=1e-6)
    for agg in ("token-mean", "seq-mean-token-sum-norm"):
        assert math.isclose(grads[agg][0], grads[agg][1], rel_tol=1e-6)


def test_grpo_loss_rejects_bad_input():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="one value per sequence"):
        grpo_loss(z, z, z, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="dimension"):
        grpo_loss(z, z, z, torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="unknown aggregation"):
        grpo_loss(z, z, z, torch.zeros(2), torch.ones(2, 3), aggregation="sum")
    with pytest.raises(ValueError, match="ref_logp is None"):
        grpo_loss(z, z, None, torch.zeros(2), torch.ones(2, 3), beta=0.1)
    with pytest.raises(ValueError, match="shape mismatch"):
        grpo_loss(z, torch.zeros(2, 4), z, torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_loss(z, torch.ones(2, 3), "mean")


# ----------------------------------------------------------------------------- NaN under the mask

def _poisoned(seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T = 4, 5
    mask = torch.ones(B, T)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    clean = [torch.randn(B, T, generator=g) * 0.3 - 1 for _ in range(4)]
    poisoned = [torch.where(mask.bool(), x, torch.tensor(NAN)) for x in clean]
    return clean, poisoned, mask


LOSSES = {
    "ppo_policy_loss": lambda a, b, c, d, m: ppo_policy_loss(a, b, c, m),
    "ppo_value_loss": lambda a, b, c, d, m: ppo_value_loss(a, b, c, m),
    "reinforce_loss": lambda a, b, c, d, m: reinforce_loss(a, c[:, 0].nan_to_num(0.5), m),
    "grpo_loss": lambda a, b, c, d, m: grpo_loss(a, b, d, c[:, 0].nan_to_num(0.5), m),
    "grpo_loss/token-mean": lambda a, b, c, d, m: grpo_loss(a, b, d, c[:, 0].nan_to_num(0.5), m,
                                                            aggregation="token-mean"),
    "grpo_loss/dr": lambda a, b, c, d, m: grpo_loss(a, b, d, c[:, 0].nan_to_num(0.5), m,
                                                    aggregation="seq-mean-token-sum-norm"),
    "gae": lambda a, b, c, d, m: sum(x.sum() for x in gae(a, b, m)),
    "whiten": lambda a, b, c, d, m: whiten(a, m).pow(2).sum(),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nan_under_mask_never_leaks_into_value_or_gradient(name):
    clean, poisoned, mask = _poisoned()
    fn = LOSSES[name]
    x_clean = clean[0].clone().requires_grad_()
    x_bad = poisoned[0].clone().requires_grad_()
    want = fn(x_clean, *clean[1:], mask)
    got = fn(x_bad, *poisoned[1:], mask)
    assert got.dim() == 0
    assert torch.isfinite(got), f"{name} leaked NaN"
    torch.testing.assert_close(got, want)
    want.backward()
    got.backward()
    assert bool(torch.isfinite(x_bad.grad).all()), f"{name} leaked NaN into the gradient"
    torch.testing.assert_close(x_bad.grad, x_clean.grad)
    assert bool((x_bad.grad[~mask.bool()] == 0).all())


def test_masks_must_be_zero_one():
    with pytest.raises(ValueError, match="only 0 and 1"):
        ppo_policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), t([[1, 2]]))
