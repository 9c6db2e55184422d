"""Exercises of notebooks 05–08: DPO, DPOP, TDPO (sequential KL, TDPO2) and ORPO (log-odds, loss)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ..rlhf.dpo import dpo_loss as _dpo_ref, dpop_loss as _dpop_ref
from ..rlhf.orpo import log_odds as _log_odds_ref, orpo_loss as _orpo_ref
from ..rlhf.tdpo import sequential_kl as _seq_kl_ref, tdpo_loss as _tdpo_ref

__all__ = ["dpo_loss", "dpop_loss", "sequential_kl", "tdpo2_loss", "log_odds", "orpo_loss"]

LN2 = math.log(2.0)


def _t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def _four_logps(seed: int):
    g = torch.Generator().manual_seed(seed)
    return tuple(-(torch.rand(8, generator=g, dtype=torch.float64) * 10 + 0.5) for _ in range(4))


def _dpo_reference(pc, pr, rc, rr, beta):
    return _dpo_ref(pc, pr, rc, rr, beta=beta)


def _dpo_matches_reference(fn):
    for beta in (0.1, 2.0):
        matches_reference(_dpo_reference, lambda seed: _four_logps(seed) + (beta,))(fn)


# ------------------------------------------------------------------ DPO (notebook 05)

def _dpo_ln2_at_reference(fn):
    pc, pr, _, _ = _four_logps(7)
    assert_close(fn(pc, pr, pc.clone(), pr.clone(), 0.1), LN2, "loss at π = π_ref (should be ln 2)")


def _dpo_hand_value(fn):
    # margin = (−1 − −1.5) − (−2 − −1.5) = 1  ->  −log σ(β·1) with β = 0.5
    assert_close(fn(_t(-1.0), _t(-2.0), _t(-1.5), _t(-1.5), 0.5), math.log1p(math.exp(-0.5)),
                 "dpo_loss(−1, −2, −1.5, −1.5, β=0.5)")


def _dpo_stable(fn):
    # margins +200 and −200 with β = 1 in float32: −log σ(200) ≈ 0, −log σ(−200) = 200
    pc = torch.tensor([200.0, 0.0], dtype=torch.float32)
    zero = torch.zeros(2, dtype=torch.float32)
    got = fn(pc, torch.tensor([0.0, 200.0], dtype=torch.float32), zero.clone(), zero.clone(), 1.0)
    if not bool(torch.isfinite(torch.as_tensor(got)).all()):
        raise AssertionError(f"the loss at margins ±200 (float32) must be finite, got {float(got)}: "
                             "use F.logsigmoid, not log(sigmoid(·))")
    assert_close(got, 100.0, "mean DPO loss for margins +200 and −200 (β = 1, float32)", rtol=1e-4)


def _dpo_wrong_naive_log_sigmoid(pc, pr, rc, rr, beta):
    return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()


def _dpo_wrong_no_reference(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * (pc - pr)).mean()


def _dpo_wrong_sign(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean()


def _dpo_wrong_no_beta(pc, pr, rc, rr, beta):
    return -F.logsigmoid((pc - rc) - (pr - rr)).mean()


def _dpo_wrong_sum(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()


dpo_loss = Exercise(
    name="dpo_loss",
    reference=_dpo_reference,
    properties=[
        ("the loss is ln 2 when the policy equals the reference", _dpo_ln2_at_reference),
        ("a single pair with margin 1 and β = 0.5 gives −log σ(0.5)", _dpo_hand_value),
        ("it matches teachkit.rlhf.dpo_loss on random pairs (β = 0.1 and β = 2)", _dpo_matches_reference),
        ("it stays finite for margins of ±200 in float32 (−log σ(−200) = 200)", _dpo_stable),
    ],
    wrong_answers={"forgets the reference log-probs": _dpo_wrong_no_reference,
                   "prefers the rejected completion (sign flipped)": _dpo_wrong_sign,
                   "ignores β": _dpo_wrong_no_beta,
                   "sums over pairs instead of averaging": _dpo_wrong_sum,
                   "naive −log(sigmoid(·)) overflows": _dpo_wrong_naive_log_sigmoid},
    hints=(
        "the loss is a Bradley–Terry likelihood whose reward is β times the log-ratio to the reference, so each completion's log-prob is measured against the reference's",
        'L = mean over pairs of −log σ(β·[(π_c − ref_c) − (π_r − ref_r)])',
        'margin = (pc - rc) - (pr - rr); return -F.logsigmoid(beta * margin).mean()',
    ),
)


# ------------------------------------------------------------------ DPOP (notebook 06)

def _dpop_is_dpo_above_reference(fn):
    pc, pr, rc, rr = _four_logps(3)
    rc = pc - 0.25
    assert_close(fn(pc, pr, rc, rr, 0.1, 50.0), _dpo_ref(pc, pr, rc, rr, beta=0.1),
                 "with every chosen log-prob above its reference (should equal DPO)")


def _dpop_penalty_inside_beta(fn):
    # chosen 1 nat below its reference: margin 1, penalty 1, λ = 50: −log σ(0.1·(1 − 50))
    assert_close(fn(_t(-2.0), _t(-3.0), _t(-1.0), _t(-1.0), 0.1, 50.0), math.log1p(math.exp(4.9)),
                 "dpop_loss(−2, −3, −1, −1, β=0.1, λ=50) (penalty inside the β bracket)")


def _dpop_pushes_chosen_up(fn):
    # chosen 0.5 nat below its reference: the penalty must add to the gradient on π_c (not just the value)
    args = [_t(-2.0, -4.0), _t(-3.0, -5.0), _t(-1.5, -3.5), _t(-3.0, -5.0)]
    grads = []
    for loss_fn in (fn, lambda *a: _dpo_ref(*a[:4], beta=a[4])):
        pc = args[0].clone().requires_grad_()
        loss_fn(pc, *(a.clone() for a in args[1:]), 0.1, 5.0).backward()
        if pc.grad is None:
            raise AssertionError("no gradient reached the chosen log-probs (did you detach the penalty?)")
        grads.append(pc.grad.abs())
    if not bool((grads[0] > 1.5 * grads[1]).all()):
        raise AssertionError(f"with the chosen log-prob below the reference, |∂loss/∂π_c| should exceed DPO's "
                             f"({grads[1].tolist()}), got {grads[0].tolist()}: the penalty must carry a gradient")


def _dpop_inputs(seed):
    return _four_logps(seed) + (0.1, 5.0)


def _dpop_reference(pc, pr, rc, rr, beta, lam):
    return _dpop_ref(pc, pr, rc, rr, beta=beta, lam=lam)


def _dpop_wrong_outside_beta(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return -F.logsigmoid(beta * margin - lam * torch.clamp(rc - pc, min=0)).mean()


def _dpop_wrong_additive(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return (-F.logsigmoid(beta * margin) + lam * torch.clamp(rc - pc, min=0)).mean()


def _dpop_wrong_detached_penalty(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return -F.logsigmoid(beta * (margin - lam * torch.clamp(rc - pc, min=0).detach())).mean()


def _dpop_wrong_penalty_sign(pc, pr, rc, rr, beta, lam):
    margin = (pc - rc) - (pr - rr)
    return -F.logsigmoid(beta * (margin - lam * torch.clamp(pc - rc, min=0))).mean()


dpop_loss = Exercise(
    name="dpop_loss",
    reference=_dpop_reference,
    properties=[
        ("DPOP equals DPO while the chosen log-prob is above the reference", _dpop_is_dpo_above_reference),
        ("the penalty λ·max(0, ref_c − π_c) sits inside the β bracket", _dpop_penalty_inside_beta),
        ("it matches teachkit.rlhf.dpop_loss on random pairs",
         matches_reference(_dpop_reference, _dpop_inputs)),
        ("below the reference the penalty raises |∂loss/∂π_c| above DPO's (it carries a gradient)",
         _dpop_pushes_chosen_up),
    ],
    wrong_answers={"penalty outside β (inside log σ)": _dpop_wrong_outside_beta,
                   "penalty added outside log σ": _dpop_wrong_additive,
                   "penalises the chosen log-prob for rising": _dpop_wrong_penalty_sign,
                   "detaches the penalty (right value, no gradient)": _dpop_wrong_detached_penalty},
    hints=(
        'DPOP is DPO plus a penalty that switches on only when the chosen log-prob falls below the reference, placed inside the β bracket',
        'L = mean of −log σ(β·[h − λ·max(0, ref_c − π_c)]), h the DPO margin',
        'penalty = torch.clamp(rc - pc, min=0); -F.logsigmoid(beta * (margin - lam * penalty)).mean()',
    ),
)


# ------------------------------------------------------------------ sequential KL (notebook 07)

def _kl_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    pol, ref = torch.randn(3, 5, 7, generator=g, dtype=torch.float64), torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return pol, ref, mask


def _kl_hand_value(fn):
    pol = _t(0.0, 0.0).reshape(1, 1, 2)
    ref = _t(math.log(3.0), 0.0).reshape(1, 1, 2)
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)   # KL(π_ref ‖ π), π_ref = (¾, ¼), π = (½, ½)
    assert_close(fn(pol, ref, torch.ones(1, 1)), _t(want), "KL(ref=(¾,¼) ‖ policy=(½,½)), direction ref ‖ policy")


def _kl_nan_padding(fn):
    pol, ref, mask = _kl_inputs(4)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    keep = mask.bool()[..., None]
    got = fn(torch.where(keep, pol, nan), torch.where(keep, ref, nan), mask)
    assert_close(got, _seq_kl_ref(pol, ref, mask), "with NaN logits at padded positions")


def _kl_wrong_reverse(pol, ref, mask):
    return _seq_kl_ref(ref, pol, mask)


def _kl_wrong_multiply(pol, ref, mask):
    lp, lr = F.log_softmax(pol, -1), F.log_softmax(ref, -1)
    return ((lr.exp() * (lr - lp)).sum(-1) * mask).sum(-1)


def _kl_wrong_mean(pol, ref, mask):
    return _seq_kl_ref(pol, ref, mask) / mask.sum(-1)


sequential_kl = Exercise(
    name="sequential_kl",
    reference=_seq_kl_ref,
    properties=[
        ("each position contributes KL(π_ref ‖ π_θ) over the whole vocabulary", _kl_hand_value),
        ("it sums (not averages) over the unmasked positions: matches teachkit.rlhf.sequential_kl",
         matches_reference(_seq_kl_ref, _kl_inputs)),
        ("NaN logits at padded positions never leak into the result", _kl_nan_padding),
    ],
    wrong_answers={"reverse direction KL(π_θ ‖ π_ref)": _kl_wrong_reverse,
                   "multiplies by the mask (NaN leaks)": _kl_wrong_multiply,
                   "averages over positions": _kl_wrong_mean},
    hints=(
        'at every real position compare the whole next-token distributions, KL(π_ref ‖ π_θ), and add them up over the sequence; padding never enters the arithmetic',
        'SeqKL = Σ_t Σ_v p_ref(v|t)·(log p_ref(v|t) − log p_θ(v|t)) over positions with mask 1',
        'select the logits first with torch.where(mask[..., None], ·, 0); log_softmax both; (ref_lp.exp() * (ref_lp - pol_lp)).sum(-1); torch.where(mask, ·, 0).sum(-1)',
    ),
)


# ------------------------------------------------------------------ TDPO2 (notebook 07)

def _tdpo_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    m_w, m_l = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    k_w, k_l = torch.rand(6, generator=g, dtype=torch.float64), torch.rand(6, generator=g, dtype=torch.float64) * 3
    return m_w, m_l, k_w, k_l, 0.1, 0.5


def _tdpo_ref2(m_w, m_l, k_w, k_l, beta, alpha):
    return _tdpo_ref(m_w, m_l, k_w, k_l, beta=beta, alpha=alpha, variant=2)


def _tdpo_hand_value(fn):
    # z = (1 − −1) − 0.5·(2 − 0.5) = 1.25 ; −log σ(0.1·1.25)
    assert_close(fn(_t(1.0), _t(-1.0), _t(0.5), _t(2.0), 0.1, 0.5), math.log1p(math.exp(-0.125)),
                 "tdpo2(m_w=1, m_l=−1, kl_w=0.5, kl_l=2, β=0.1, α=0.5)")


def _tdpo_stop_gradient(fn):
    m_w, m_l, k_w, k_l, beta, alpha = _tdpo_inputs(5)
    k_w, k_l = k_w.clone().requires_grad_(), k_l.clone().requires_grad_()
    fn(m_w, m_l, k_w, k_l, beta, alpha).backward()
    got = 0.0 if k_w.grad is None else float(k_w.grad.abs().max())
    assert got == 0.0, f"the gradient through chosen_seq_kl should be 0 (stop-gradient), got max |grad| {got:.3g}"
    assert k_l.grad is not None and float(k_l.grad.abs().max()) > 0, "the rejected-side KL must receive a gradient"


def _tdpo_wrong_no_detach(m_w, m_l, k_w, k_l, beta, alpha):
    return -F.logsigmoid(beta * ((m_w - m_l) - alpha * (k_l - k_w))).mean()


def _tdpo_wrong_sign(m_w, m_l, k_w, k_l, beta, alpha):
    return -F.logsigmoid(beta * ((m_w - m_l) + alpha * (k_l - k_w.detach()))).mean()


def _tdpo_wrong_no_alpha(m_w, m_l, k_w, k_l, beta, alpha):
    return -F.logsigmoid(beta * ((m_w - m_l) - (k_l - k_w.detach()))).mean()


tdpo2_loss = Exercise(
    name="tdpo2_loss",
    reference=_tdpo_ref2,
    properties=[
        ("a single pair gives −log σ(β·[(m_w − m_l) − α(kl_l − kl_w)])", _tdpo_hand_value),
        ("it matches teachkit.rlhf.tdpo_loss(variant=2) on random inputs", matches_reference(_tdpo_ref2, _tdpo_inputs)),
        ("no gradient flows through the chosen-side KL (stop-gradient)", _tdpo_stop_gradient),
    ],
    wrong_answers={"forgets the stop-gradient on chosen_seq_kl": _tdpo_wrong_no_detach,
                   "adds the KL difference instead of subtracting it": _tdpo_wrong_sign,
                   "ignores α": _tdpo_wrong_no_alpha},
    hints=(
        "TDPO2 is DPO's margin minus α times the difference of the two sequential KLs, with the chosen-side KL a constant (stop-gradient)",
        'L = mean of −log σ(β·[(m_w − m_l) − α·(kl_l − sg[kl_w])])',
        'z = (m_w - m_l) - alpha * (kl_l - kl_w.detach()); -F.logsigmoid(beta * z).mean()',
    ),
)


# ------------------------------------------------------------------ ORPO (notebook 08)

def _odds_hand_values(fn):
    x = _t(math.log(0.5), math.log(0.25), math.log(0.8))
    assert_close(fn(x), _t(0.0, -math.log(3.0), math.log(4.0)), "log-odds at p = ½, ¼, ⅘")


def _odds_extremes(fn):
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([-60.0, -1e-7], dtype=dtype, requires_grad=True)
        y = fn(x)
        if not bool(torch.isfinite(y).all()):
            raise AssertionError(f"log-odds at ℓ̄ = −60 and −1e−7 in {dtype} must be finite, got {y.tolist()}")
        assert_close(y, _log_odds_ref(x.detach().double()), f"log-odds at ℓ̄ = −60 and −1e−7 in {dtype}",
                     rtol=1e-4, atol=1e-4)
        y.sum().backward()
        if not bool(torch.isfinite(x.grad).all()):
            raise AssertionError(f"gradients at ℓ̄ = −60 and −1e−7 in {dtype} must be finite")


def _odds_wrong_naive(x):
    return x - torch.log(1 - torch.exp(x))


def _odds_wrong_log1p(x):
    return x - torch.log1p(-torch.exp(x))


def _odds_wrong_prob(x):
    return torch.exp(x) - torch.log(-torch.expm1(x))


log_odds = Exercise(
    name="log_odds",
    reference=_log_odds_ref,
    properties=[
        ("log-odds(log p) = log(p / (1 − p))", _odds_hand_values),
        ("it is accurate and finite, with finite gradients, at ℓ̄ = −60 and ℓ̄ = −1e−7 (float32 and float64)",
         _odds_extremes),
    ],
    wrong_answers={"naive log(1 − exp(ℓ̄)) (cancels near 0)": _odds_wrong_naive,
                   "log1p(−exp(ℓ̄)) everywhere (inaccurate near 0)": _odds_wrong_log1p,
                   "uses p instead of log p in the first term": _odds_wrong_prob},
    hints=(
        'log-odds(ℓ) = ℓ − log(1 − e^ℓ); the second term loses all precision one way near ℓ = 0 and another way for very negative ℓ',
        'log(1 − e^ℓ) = log(−expm1(ℓ)) for ℓ > −ln 2, log1p(−exp(ℓ)) below',
        'near = ell > -ln 2; give each branch a harmless input where unused (torch.where(near, ell, -1.0) …); ell - torch.where(near, log(-expm1(·)), log1p(-exp(·)))',
    ),
)


def _orpo_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    c = -(torch.rand(8, generator=g, dtype=torch.float64) * 3 + 0.01)
    r = -(torch.rand(8, generator=g, dtype=torch.float64) * 3 + 0.01)
    return c, r, 0.1


def _orpo_hand_value(fn):
    # NLL = ln 2 ; log-odds ratio = 0 − (−ln 3) ; −log σ(ln 3) = ln(4/3)
    assert_close(fn(_t(math.log(0.5)), _t(math.log(0.25)), 0.5), LN2 + 0.5 * math.log(4.0 / 3.0),
                 "orpo_loss(log ½, log ¼, λ=0.5)")


def _orpo_near_certain(fn):
    # rejected completions the model is almost sure of (ℓ̄ = −1e−7) in float32: the log-odds need log1mexp
    c = torch.tensor([-1.0, -0.5], dtype=torch.float32)
    r = torch.tensor([-1e-7, -1e-7], dtype=torch.float32)
    want = _orpo_ref(c.double(), r.double(), lam=1.0)
    assert_close(fn(c, r, 1.0), want, "orpo_loss with ℓ̄_l = −1e−7 in float32 (λ = 1)", rtol=1e-4, atol=1e-4)


def _orpo_wrong_naive_odds(c, r, lam):
    odds = lambda x: x - torch.log(1 - torch.exp(x))  # noqa: E731
    return -c.mean() + lam * -F.logsigmoid(odds(c) - odds(r)).mean()


def _orpo_reference(c, r, lam):
    return _orpo_ref(c, r, lam=lam)


def _orpo_wrong_no_nll(c, r, lam):
    return lam * -F.logsigmoid(_log_odds_ref(c) - _log_odds_ref(r)).mean()


def _orpo_wrong_logprob_ratio(c, r, lam):
    return -c.mean() + lam * -F.logsigmoid(c - r).mean()


def _orpo_wrong_lam_on_nll(c, r, lam):
    return -lam * c.mean() - F.logsigmoid(_log_odds_ref(c) - _log_odds_ref(r)).mean()


orpo_loss = Exercise(
    name="orpo_loss",
    reference=_orpo_reference,
    properties=[
        ("NLL(chosen) + λ·(−log σ(log-odds ratio)) on a hand-computed pair", _orpo_hand_value),
        ("it matches teachkit.rlhf.orpo_loss on random pairs", matches_reference(_orpo_reference, _orpo_inputs)),
        ("it stays accurate when a completion is nearly certain (ℓ̄ = −1e−7, float32)", _orpo_near_certain),
    ],
    wrong_answers={"drops the SFT (NLL) term": _orpo_wrong_no_nll,
                   "uses the log-prob ratio instead of the log-odds ratio": _orpo_wrong_logprob_ratio,
                   "puts λ on the NLL term": _orpo_wrong_lam_on_nll,
                   "naive log-odds ℓ̄ − log(1 − exp(ℓ̄)) (cancels near 0)": _orpo_wrong_naive_odds},
    hints=(
        'ORPO is supervised fine-tuning on the chosen completion plus λ times a Bradley–Terry term on the log-odds (not the log-probs)',
        'L = mean(−ℓ̄_w) + λ·mean(−log σ(log-odds(ℓ̄_w) − log-odds(ℓ̄_l))), log-odds(ℓ) = ℓ − log(1 − e^ℓ)',
        'nll = -chosen.mean(); ratio = log_odds(chosen) - log_odds(rejected) (the accurate two-branch form); nll + lam * (-F.logsigmoid(ratio).mean())',
    ),
)
