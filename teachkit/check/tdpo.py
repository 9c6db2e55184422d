"""Exercises of notebook 07 (TDPO): the sequential KL, TDPO2 (worked) and TDPO1 (graded)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Exercise, assert_close, matches_reference
from ._inputs import t64 as _t
from ..rlhf.tdpo import sequential_kl as _seq_kl_ref, tdpo_loss as _tdpo_ref

__all__ = ["sequential_kl", "tdpo2_loss", "tdpo1_loss", "reverse_sequential_kl"]


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


# ------------------------------------------------------------------ TDPO1 (notebook 07, graded)

def _tdpo1_reference(m_w, m_l, k_w, k_l, beta):
    return _tdpo_ref(m_w, m_l, k_w, k_l, beta=beta, variant=1)


def _tdpo1_hand_value(fn):
    # z = (1 − −1) − (2 − 0.5) = 0.5 ; −log σ(0.1·0.5): the KL difference with weight 1, no α
    assert_close(fn(_t(1.0), _t(-1.0), _t(0.5), _t(2.0), 0.1), math.log1p(math.exp(-0.05)),
                 "tdpo1(m_w=1, m_l=−1, kl_w=0.5, kl_l=2, β=0.1): z = 2 − (2 − 0.5)")


def _tdpo1_beta_outside(fn):
    # β multiplies the KL difference too: with β = 2 and z = 0.5, −log σ(1)
    assert_close(fn(_t(1.0), _t(-1.0), _t(0.5), _t(2.0), 2.0), math.log1p(math.exp(-1.0)),
                 "the same pair with β = 2: β scales the whole z, KL term included")


def _tdpo1_both_gradients(fn):
    m_w, m_l, k_w, k_l, _, _ = _tdpo_inputs(8)
    k_w, k_l = k_w.clone().requires_grad_(), k_l.clone().requires_grad_()
    fn(m_w, m_l, k_w, k_l, 0.5).backward()
    if k_w.grad is None or float(k_w.grad.abs().max()) == 0.0:
        raise AssertionError("no gradient reached chosen_seq_kl: TDPO1 has no stop-gradient (that is TDPO2's)")
    assert k_l.grad is not None, "the rejected-side KL must receive a gradient"
    assert_close(k_w.grad, -k_l.grad, "∂L/∂kl_w against −∂L/∂kl_l (the two KLs enter as a plain difference)")


def _tdpo1_wrong_detach(m_w, m_l, k_w, k_l, beta):
    return -F.logsigmoid(beta * ((m_w - m_l) - (k_l - k_w.detach()))).mean()


def _tdpo1_wrong_alpha(m_w, m_l, k_w, k_l, beta):
    return -F.logsigmoid(beta * ((m_w - m_l) - 0.5 * (k_l - k_w))).mean()


def _tdpo1_wrong_sign(m_w, m_l, k_w, k_l, beta):
    return -F.logsigmoid(beta * ((m_w - m_l) + (k_l - k_w))).mean()


def _tdpo1_wrong_beta_inside(m_w, m_l, k_w, k_l, beta):
    return -F.logsigmoid(beta * (m_w - m_l) - (k_l - k_w)).mean()


tdpo1_loss = Exercise(
    name="tdpo1_loss",
    reference=_tdpo1_reference,
    properties=[
        ("a single pair gives −log σ(β·[(m_w − m_l) − (kl_l − kl_w)]) (weight 1, no α)", _tdpo1_hand_value),
        ("β scales the whole bracket, the KL difference included", _tdpo1_beta_outside),
        ("gradient flows through both sequential KLs, equal and opposite (no stop-gradient)", _tdpo1_both_gradients),
        ("it matches teachkit.rlhf.tdpo_loss(variant=1) on random inputs",
         matches_reference(_tdpo1_reference, lambda s: _tdpo_inputs(s)[:4] + (0.1,))),
    ],
    wrong_answers={"keeps TDPO2's stop-gradient on chosen_seq_kl": _tdpo1_wrong_detach,
                   "keeps TDPO2's α (0.5)": _tdpo1_wrong_alpha,
                   "adds the KL difference instead of subtracting it": _tdpo1_wrong_sign,
                   "β on the margin only, the KL difference outside it": _tdpo1_wrong_beta_inside},
    hints=(
        "TDPO1 is where TDPO2 came from: the same margin minus the difference of the sequential KLs, "
        "but with weight 1 and both KLs live (the gradient reaches the chosen side too)",
        "L = mean of −log σ(β·[(m_w − m_l) − (kl_l − kl_w)])",
        "z = (m_w - m_l) - (kl_l - kl_w); return -F.logsigmoid(beta * z).mean()",
    ),
)


# ------------------------------------------------------------------ the reverse sequential KL (notebook 07, graded)

def _rev_kl_reference(policy_logits, ref_logits, mask):
    """Σ_t KL(π_θ(·|t) ‖ π_ref(·|t)): the forward sequential KL with the two models' roles swapped."""
    return _seq_kl_ref(ref_logits, policy_logits, mask)


def _rev_hand_value(fn):
    pol = _t(0.0, 0.0).reshape(1, 1, 2)
    ref = _t(math.log(3.0), 0.0).reshape(1, 1, 2)
    want = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)   # KL(π = (½,½) ‖ π_ref = (¾,¼))
    assert_close(fn(pol, ref, torch.ones(1, 1)), _t(want), "KL(policy=(½,½) ‖ ref=(¾,¼)), direction policy ‖ ref")


def _rev_mode_seeking(fn):
    # the policy drops the reference's second token (logit −1e9): the reverse KL stays log(4/3);
    # the forward KL would charge ¼·1e9
    pol = _t(0.0, -1e9).reshape(1, 1, 2)
    ref = _t(math.log(3.0), 0.0).reshape(1, 1, 2)
    got = fn(pol, ref, torch.ones(1, 1))
    assert_close(got, _t(math.log(4.0 / 3.0)),
                 "a policy that never writes a token the reference allows: the reverse KL is log(4/3), finite")


def _rev_nan_padding(fn):
    pol, ref, mask = _kl_inputs(6)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    keep = mask.bool()[..., None]
    got = fn(torch.where(keep, pol, nan), torch.where(keep, ref, nan), mask)
    assert_close(got, _rev_kl_reference(pol, ref, mask), "with NaN logits at padded positions")


reverse_sequential_kl = Exercise(
    name="reverse_sequential_kl",
    reference=_rev_kl_reference,
    properties=[
        ("each position contributes KL(π_θ ‖ π_ref), the average taken under the policy", _rev_hand_value),
        ("dropping a token the reference allows costs little (mode-seeking): log(4/3) here", _rev_mode_seeking),
        ("it sums over the unmasked positions: matches the reference on random logits",
         matches_reference(_rev_kl_reference, _kl_inputs)),
        ("NaN logits at padded positions never leak into the result", _rev_nan_padding),
    ],
    wrong_answers={"the forward direction KL(π_ref ‖ π_θ)": _seq_kl_ref,
                   "multiplies by the mask (NaN leaks)": lambda pol, ref, mask: _kl_wrong_multiply(ref, pol, mask),
                   "averages over positions": lambda pol, ref, mask: _rev_kl_reference(pol, ref, mask) / mask.sum(-1)},
    hints=(
        "the same sum over positions as the forward sequential KL, but the average at each position is taken "
        "under the policy's next-token distribution, so the roles of the two models swap",
        "SeqKL_rev = Σ_t Σ_v p_θ(v|t)·(log p_θ(v|t) − log p_ref(v|t)) over positions with mask 1",
        "select the logits with torch.where(mask[..., None], ·, 0); pol_lp, ref_lp = log_softmax of each; "
        "(pol_lp.exp() * (pol_lp - ref_lp)).sum(-1); torch.where(mask.bool(), ·, 0).sum(-1)",
    ),
)
