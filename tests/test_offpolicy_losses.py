"""Off-policy preference losses (issue 5): hand-computed values, reductions to DPO, stability, errors."""

import math

import pytest
import torch

from teachkit.rlhf import (dpo_loss, dpop_loss, implicit_rewards, ipo_loss, log1mexp, log_odds, orpo_loss,
                           sequence_logps, sequential_kl, simpo_loss, tdpo_loss, tdpo_rewards)

LN2 = math.log(2.0)


def t(*xs, dtype=torch.float64, grad=False):
    return torch.tensor(xs, dtype=dtype, requires_grad=grad)


def softplus(x):  # −log σ(x) = log(1 + e^{−x}), written out by hand
    return math.log1p(math.exp(-x))


def random_logps(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(n, generator=g, dtype=torch.float64) * 20 + 0.1) for _ in range(4)]


# ---------------------------------------------------------------- DPO and friends


def test_dpo_hand_value():
    # margin = (−1 − −1.5) − (−2 − −1.5) = 0.5 + 0.5 = 1  ->  −log σ(0.1) = log(1 + e^−0.1)
    loss = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.1)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(0.6443966600735709, abs=1e-12)
    assert loss.item() == pytest.approx(softplus(0.1), abs=1e-12)


def test_dpo_is_mean_over_pairs():
    loss = dpo_loss(t(-1.0, 0.0), t(-2.0, 0.0), t(-1.5, 0.0), t(-1.5, 0.0), beta=0.1)
    assert loss.item() == pytest.approx((softplus(0.1) + LN2) / 2, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.01, 0.1, 2.0])
def test_dpo_is_ln2_at_reference_with_gradient_minus_beta_over_2(seed, beta):
    pc, pr, _, _ = random_logps(seed)
    pc, pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    loss = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=beta)
    assert loss.item() == pytest.approx(LN2, abs=1e-12)
    loss.backward()
    n = pc.numel()  # d/dπ_c of −log σ(β·0) averaged over n pairs = −β·σ(0)/n
    assert torch.allclose(pc.grad, torch.full_like(pc, -beta / 2 / n))
    assert torch.allclose(pr.grad, torch.full_like(pr, beta / 2 / n))


def test_implicit_rewards_hand_value():
    rc, rr = implicit_rewards(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.2)
    assert rc.item() == pytest.approx(0.1) and rr.item() == pytest.approx(-0.1)


def test_dpop_hand_value_with_penalty():
    # chosen 1 nat below its reference: margin = (−1) − (−2) = 1, penalty = 1, λ = 2 -> z = −1
    loss = dpop_loss(t(-2.0), t(-3.0), t(-1.0), t(-1.0), beta=0.1, lam=2.0)
    assert loss.item() == pytest.approx(0.7443966600735709, abs=1e-12)
    assert loss.item() == pytest.approx(softplus(-0.1), abs=1e-12)


def test_dpop_penalty_is_inside_the_beta_bracket():
    # inside β: −log σ(0.1·(1 − 50)) ; outside β would be −log σ(0.1 − 50); additive would be DPO + 50
    loss = dpop_loss(t(-2.0), t(-3.0), t(-1.0), t(-1.0), beta=0.1, lam=50.0)
    assert loss.item() == pytest.approx(softplus(0.1 * (1 - 50)), abs=1e-9)


def test_dpop_forms_hand_values():
    # margin h = 1, penalty P = 1, β = 0.1, λ = 2
    args = (t(-2.0), t(-3.0), t(-1.0), t(-1.0))
    assert dpop_loss(*args, beta=0.1, lam=2.0, form="a").item() == pytest.approx(softplus(0.1 * (1 - 2)), abs=1e-12)
    assert dpop_loss(*args, beta=0.1, lam=2.0, form="b").item() == pytest.approx(softplus(0.1 * 1 - 2), abs=1e-12)
    assert dpop_loss(*args, beta=0.1, lam=2.0, form="c").item() == pytest.approx(softplus(0.1 * 1) + 2.0, abs=1e-12)


def test_dpop_form_b_weighs_the_penalty_one_over_beta_more():
    pc, pr, rc, rr = t(-2.0, -1.0), t(-3.0, -4.0), t(-1.0, -1.5), t(-1.0, -2.0)
    assert torch.allclose(dpop_loss(pc, pr, rc, rr, beta=0.1, lam=5.0, form="b"),
                          dpop_loss(pc, pr, rc, rr, beta=0.1, lam=50.0, form="a"))


@pytest.mark.parametrize("form", ["a", "b", "c"])
def test_dpop_forms_equal_dpo_above_reference(form):
    pc, pr, rc, rr = random_logps(4)
    rc = pc - torch.rand_like(pc)
    assert torch.allclose(dpop_loss(pc, pr, rc, rr, form=form), dpo_loss(pc, pr, rc, rr))


def test_dpop_rejects_unknown_form():
    with pytest.raises(ValueError, match="form"):
        dpop_loss(t(-2.0), t(-3.0), t(-1.0), t(-1.0), form="d")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dpop_equals_dpo_when_chosen_at_or_above_reference(seed):
    pc, pr, rc, rr = random_logps(seed)
    rc = pc - torch.rand_like(pc)          # reference chosen strictly below the policy
    rc[0] = pc[0]                           # and one exactly at it
    for lam in (0.5, 50.0):
        assert torch.allclose(dpop_loss(pc, pr, rc, rr, lam=lam), dpo_loss(pc, pr, rc, rr))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dpop_equals_dpo_when_lambda_is_zero(seed):
    pc, pr, rc, rr = random_logps(seed)
    assert torch.allclose(dpop_loss(pc, pr, rc, rr, lam=0.0), dpo_loss(pc, pr, rc, rr))


def test_dpop_gradient_pushes_chosen_up_harder_than_dpo_below_reference():
    pc = t(-2.0, grad=True)
    dpo_loss(pc, t(-3.0), t(-1.0), t(-1.0)).backward()
    g_dpo = pc.grad.clone()
    pc.grad = None
    dpop_loss(pc, t(-3.0), t(-1.0), t(-1.0), lam=5.0).backward()
    assert g_dpo.item() < 0 and pc.grad.item() < g_dpo.item()


def test_ipo_hand_value_and_minimum():
    assert ipo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.1).item() == pytest.approx(16.0)
    # margin exactly 1/(2β) = 5 gives 0
    assert ipo_loss(t(0.0), t(-5.0), t(0.0), t(0.0), beta=0.1).item() == pytest.approx(0.0)


def test_simpo_hand_value():
    # β·(−0.5 − −1) − γ = 2·0.5 − 0.5 = 0.5
    loss = simpo_loss(t(-0.5), t(-1.0), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(0.47407698418010663, abs=1e-12)


def test_sequence_logps_sum_and_average_ignore_nan_padding():
    lp = t(-1.0, -2.0, float("nan"), -4.0, float("nan"), float("nan")).reshape(2, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(sequence_logps(lp, mask), t(-3.0, -4.0))
    assert torch.equal(sequence_logps(lp, mask, average=True), t(-1.5, -4.0))
    with pytest.raises(ValueError, match="all-zero mask"):
        sequence_logps(lp, torch.tensor([[1, 0, 0], [0, 0, 0]]), average=True)


# ---------------------------------------------------------------- TDPO


def test_sequential_kl_hand_value_and_masking():
    # position 0: π = (½, ½), π_ref = (¾, ¼): KL = ¾ ln(3/2) + ¼ ln(1/2); position 1 is padding (NaN)
    pol = t(0.0, 0.0, float("nan"), float("nan")).reshape(1, 2, 2).requires_grad_()
    ref = t(math.log(3.0), 0.0, float("nan"), 1.0).reshape(1, 2, 2)
    mask = torch.tensor([[1, 0]])
    kl = sequential_kl(pol, ref, mask)
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kl.shape == (1,) and kl.item() == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(0.1308120, abs=1e-6)
    kl.sum().backward()
    assert torch.isfinite(pol.grad).all() and torch.all(pol.grad[0, 1] == 0)
    # ∂KL/∂logit_v = π_v − π_ref_v
    assert torch.allclose(pol.grad[0, 0], t(0.5 - 0.75, 0.5 - 0.25))


@pytest.mark.parametrize("seed", [0, 1])
def test_sequential_kl_matches_torch_distributions_and_is_zero_at_reference(seed):
    g = torch.Generator().manual_seed(seed)
    pol, ref = torch.randn(3, 5, 11, generator=g), torch.randn(3, 5, 11, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    want = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=ref),
                                             torch.distributions.Categorical(logits=pol))
    want = (want * mask).sum(-1)
    assert torch.allclose(sequential_kl(pol, ref, mask), want, atol=1e-6)
    assert torch.allclose(sequential_kl(pol, pol.clone(), mask), torch.zeros(3), atol=1e-6)


def test_sequential_kl_reference_zero_probability_tokens_give_no_nan():
    pol = torch.zeros(1, 1, 3)
    ref = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    kl = sequential_kl(pol, ref, torch.ones(1, 1))
    assert kl.item() == pytest.approx(math.log(1.5), abs=1e-6)  # ½ ln(½/⅓) · 2


def test_tdpo_hand_values():
    args = (t(1.0), t(-1.0), t(0.5), t(2.0))   # m_w, m_l, kl_w, kl_l
    # TDPO1: z = 2 − (2 − 0.5) = 0.5 ; TDPO2 (α=0.5): z = 2 − 0.5·1.5 = 1.25
    assert tdpo_loss(*args, beta=0.1, variant=1).item() == pytest.approx(softplus(0.05), abs=1e-12)
    assert tdpo_loss(*args, beta=0.1, alpha=0.5, variant=2).item() == pytest.approx(softplus(0.125), abs=1e-12)


def test_tdpo2_stops_the_gradient_through_chosen_kl_and_tdpo1_does_not():
    kl_w, kl_l = t(0.5, grad=True), t(2.0, grad=True)
    tdpo_loss(t(1.0), t(-1.0), kl_w, kl_l, variant=2).backward()
    assert kl_w.grad is None and kl_l.grad.item() > 0
    tdpo_loss(t(1.0), t(-1.0), kl_w, kl_l, variant=1).backward()
    assert kl_w.grad.item() < 0  # raising the chosen-side KL raises z, so it lowers the loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tdpo_reduces_to_dpo(seed):
    pc, pr, rc, rr = random_logps(seed)
    kl_w, kl_l = torch.rand_like(pc), torch.rand_like(pc) * 3
    dpo = dpo_loss(pc, pr, rc, rr, beta=0.3)
    # TDPO2 with α = 0, whatever the KLs
    assert torch.allclose(tdpo_loss(pc - rc, pr - rr, kl_w, kl_l, beta=0.3, alpha=0.0, variant=2), dpo)
    # TDPO1 at π = π_ref: logratios and sequential KLs are all zero -> ln 2, exactly DPO's value there
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 4, 9, generator=g, dtype=torch.float64)
    zero_kl = sequential_kl(logits, logits.clone(), torch.ones(6, 4))
    zeros = torch.zeros(6, dtype=torch.float64)
    got = tdpo_loss(zeros, zeros, zero_kl, zero_kl, beta=0.3, variant=1)
    assert torch.allclose(got, dpo_loss(pc, pr, pc, pr, beta=0.3)) and got.item() == pytest.approx(LN2)
    # and TDPO1 with equal KLs on both sides is DPO
    assert torch.allclose(tdpo_loss(pc - rc, pr - rr, kl_w, kl_w, beta=0.3, variant=1), dpo)


def test_tdpo_rewards():
    rc, rr = tdpo_rewards(t(1.0, grad=True), t(-1.0), t(0.5), t(2.0), beta=0.1)
    assert rc.item() == pytest.approx(0.15) and rr.item() == pytest.approx(0.1) and not rc.requires_grad


# ---------------------------------------------------------------- ORPO


def test_log_odds_hand_values():
    # p = ½: odds 1, log-odds 0 ; p = ¼: odds ⅓ ; p = e^−60: log-odds ≈ −60
    got = log_odds(t(math.log(0.5), math.log(0.25), -60.0))
    assert torch.allclose(got, t(0.0, -math.log(3.0), -60.0), atol=1e-12)


def test_orpo_hand_value():
    # NLL = ln 2 ; log-odds ratio = 0 − (−ln 3) = ln 3 ; −log σ(ln 3) = ln(4/3)
    loss = orpo_loss(t(math.log(0.5)), t(math.log(0.25)), lam=0.1)
    assert loss.item() == pytest.approx(LN2 + 0.1 * math.log(4.0 / 3.0), abs=1e-12)
    assert orpo_loss(t(math.log(0.5)), t(math.log(0.25)), lam=0.0).item() == pytest.approx(LN2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orpo_is_stable_at_the_extremes(dtype):
    extremes = [-60.0, -30.0, -1.0, -math.log(2.0), -1e-3, -1e-5, -1e-7]
    x = torch.tensor(extremes, dtype=dtype, requires_grad=True)
    lo = log_odds(x)
    assert torch.isfinite(lo).all()
    lo.sum().backward()
    assert torch.isfinite(x.grad).all()
    # accuracy against float64 closed forms: log-odds(−1e−7) ≈ −1e−7 − ln(1e−7), log-odds(−60) ≈ −60
    assert lo[-1].item() == pytest.approx(-math.log(-math.expm1(-1e-7)) - 1e-7, rel=1e-4)
    assert lo[0].item() == pytest.approx(-60.0, rel=1e-6)
    c = torch.tensor(extremes, dtype=dtype, requires_grad=True)
    r = torch.tensor(extremes[::-1], dtype=dtype, requires_grad=True)
    loss = orpo_loss(c, r)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(c.grad).all() and torch.isfinite(r.grad).all()


def test_log1mexp_matches_naive_form_where_that_is_accurate_and_beats_it_near_zero():
    x = t(-5.0, -1.0, -0.1)
    assert torch.allclose(log1mexp(x), torch.log(1 - torch.exp(x)))
    assert log1mexp(torch.tensor([-1e-9], dtype=torch.float32)).item() == pytest.approx(math.log(1e-9), rel=1e-5)
    assert math.isinf(torch.log(1 - torch.exp(torch.tensor(-1e-9))).item())  # the naive form fails


def test_log_odds_clamps_certainty_and_rejects_positive():
    assert torch.isfinite(log_odds(t(0.0))).all()
    with pytest.raises(ValueError, match="<= 0"):
        log_odds(t(0.1))
    with pytest.raises(ValueError, match="NaN"):
        log_odds(t(float("nan")))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [dpo_loss, dpop_loss, ipo_loss, implicit_rewards])
def test_four_logps_shape_errors(fn):
    a = t(-1.0, -2.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(a, a, a, t(-1.0))
    with pytest.raises(ValueError, match="1 dimension"):
        fn(a[None], a[None], a[None], a[None])
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([-1.0], a, a, a)
    with pytest.raises(TypeError, match="floating-point"):
        fn(*[torch.tensor([1, 2])] * 4)
    with pytest.raises(ValueError, match="empty"):
        fn(*[t()] * 4)
    with pytest.raises(ValueError, match="beta"):
        fn(a, a, a, a, beta=0.0)


def test_other_argument_errors():
    a = t(-1.0, -2.0)
    with pytest.raises(ValueError, match="lam"):
        dpop_loss(a, a, a, a, lam=-1.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        simpo_loss(a, t(-1.0))
    with pytest.raises(ValueError, match="variant"):
        tdpo_loss(a, a, a, a, variant=3)
    with pytest.raises(ValueError, match="alpha"):
        tdpo_loss(a, a, a, a, alpha=-0.5)
    with pytest.raises(ValueError, match="shape mismatch"):
        tdpo_loss(a, a, a, t(1.0))
    with pytest.raises(ValueError, match="shape mismatch"):
        orpo_loss(a, t(-1.0))
    with pytest.raises(ValueError, match="1 dimension"):
        orpo_loss(a[None], a[None])
    with pytest.raises(ValueError, match="lam"):
        orpo_loss(a, a, lam=-0.1)


def test_sequential_kl_shape_errors():
    x = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match="3 dimension"):
        sequential_kl(x[0], x[0], torch.ones(3))
    with pytest.raises(ValueError, match="shape mismatch"):
        sequential_kl(x, torch.zeros(2, 3, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask must be"):
        sequential_kl(x, x, torch.ones(3, 2))
    with pytest.raises(ValueError, match="only 0 and 1"):
        sequential_kl(x, x, torch.full((2, 3), 0.5))
