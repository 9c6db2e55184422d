"""Exercises of notebook 01 (the toy world): EOS masks, completion log-probs, the Bradley–Terry loss."""

from __future__ import annotations

import math

import torch

from ..rlhf.reward import bradley_terry_loss as _bt_reference
from ..toy.generate import eos_mask as _eos_mask_reference
from ._core import Exercise, assert_close, matches_reference

__all__ = ["eos_mask", "completion_logprobs", "bradley_terry"]

EOS = 1


# ---------------------------------------------------------------- eos_mask(completions, eos_id)
def _completions(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (6, 7), generator=g), (EOS, 3, 4)[seed % 3]   # eos_id varies with the seed


def _eos_hand_example(fn):
    comp = torch.tensor([[3, 1, 4, 1], [1, 0, 0, 0], [3, 3, 3, 3], [2, 2, 2, 1]])
    want = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    assert_close(torch.as_tensor(fn(comp, EOS)).float(), want.float(),
                 "rows [3 EOS 4 EOS], [EOS 0 0 0], [3 3 3 3], [2 2 2 EOS]")


def _eos_other_id(fn):
    comp = torch.tensor([[3, 1, 3, 1], [1, 3, 0, 0], [2, 2, 2, 2]])
    want = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    assert_close(torch.as_tensor(fn(comp, 3)).float(), want.float(),
                 "with eos_id=3, rows [3 1 3 1], [1 3 0 0], [2 2 2 2] (use the eos_id argument)")


def _wrong_hard_coded_eos(completions, eos_id):
    return _eos_mask_reference(completions, 1)


def _wrong_excludes_eos(completions, eos_id):
    return ((completions == eos_id).long().cumsum(1) == 0).float()


def _wrong_no_subtract(completions, eos_id):
    is_eos = (completions == eos_id).long()
    return (is_eos.cumsum(1) <= 1).float()


def _wrong_keeps_everything(completions, eos_id):
    return torch.ones_like(completions, dtype=torch.float)


eos_mask = Exercise(
    name="eos_mask",
    reference=_eos_mask_reference,
    properties=[
        ("the mask is 1 up to AND including the first EOS, 0 after it (a row without EOS is all 1)",
         _eos_hand_example),
        ("it uses the eos_id it is given (here 3), not a fixed id", _eos_other_id),
        ("it matches teachkit.toy.eos_mask on random completions (eos_id 1, 3, 4)",
         matches_reference(_eos_mask_reference, _completions)),
    ],
    wrong_answers={"drops the EOS itself": _wrong_excludes_eos,
                   "keeps tokens after a second EOS": _wrong_no_subtract,
                   "keeps everything": _wrong_keeps_everything,
                   "hard-codes eos_id == 1": _wrong_hard_coded_eos},
    hints=(
        'a token is kept when no EOS came strictly before it; the first EOS itself is kept',
        'keep_t = [number of EOS among positions < t] == 0 = [cumsum(is_eos)_t − is_eos_t == 0]',
        'is_eos = (completions == eos_id).long(); ((is_eos.cumsum(1) - is_eos) == 0).float()',
    ),
)


# ------------------------------------------------ completion_logprobs(logits, completions, mask)
def _reference_logprobs(logits, completions, mask):
    P = logits.shape[1] - completions.shape[1]
    keep = mask.bool()
    ids = torch.where(keep, completions, torch.zeros_like(completions))
    logp = torch.log_softmax(logits[:, P - 1:-1], dim=-1).gather(-1, ids[..., None]).squeeze(-1)
    return torch.where(keep, logp, torch.zeros_like(logp))


def _lp_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    B, P, T, V = 4, 3, 5, 7
    completions = torch.randint(2, V, (B, T), generator=g)
    completions[torch.arange(B), torch.randint(0, T, (B,), generator=g)] = EOS
    mask = _eos_mask_reference(completions, EOS)
    logits = torch.randn(B, P + T, V, generator=g)
    return logits, completions, mask


def _lp_shift(fn):
    # logits at position i point (with certainty) at token i + 2; the completion is 4, 5, 6 after
    # the prompt 0, 1, 2, so the logits at positions 2, 3, 4 are the ones that predict it
    V = 9
    idx = torch.arange(6)
    logits = torch.nn.functional.one_hot((idx + 2) % V, V).float()[None] * 30.0
    completions, mask = torch.tensor([[4, 5, 6]]), torch.ones(1, 3)
    got = fn(logits, completions, mask)
    assert_close(got, torch.zeros(1, 3), "log-probs of the completion the logits predict (shift by one)",
                 atol=1e-6)


def _lp_padding(fn):
    logits, completions, mask = _lp_inputs(5)
    P = logits.shape[1] - completions.shape[1]
    dirty = torch.where(mask.bool(), completions, torch.full_like(completions, -100))
    poisoned = logits.clone()
    poisoned[:, P - 1:-1][~mask.bool()] = float("nan")  # the logits that predict padding
    got = fn(poisoned, dirty, mask)
    assert torch.isfinite(torch.as_tensor(got)).all(), "a value under mask 0 leaked (NaN * 0 is NaN)"
    assert_close(got, _reference_logprobs(logits, completions, mask), "with id -100 and NaN logits under mask 0")


def _wrong_no_shift(logits, completions, mask):
    P = logits.shape[1] - completions.shape[1]
    logp = torch.log_softmax(logits[:, P:], -1)
    ids = torch.where(mask.bool(), completions, torch.zeros_like(completions))
    return torch.where(mask.bool(), logp.gather(-1, ids[..., None]).squeeze(-1), torch.zeros(()))


def _wrong_multiply(logits, completions, mask):
    P = logits.shape[1] - completions.shape[1]
    logp = torch.log_softmax(logits[:, P - 1:-1], -1)
    return logp.gather(-1, completions[..., None].clamp(min=0)).squeeze(-1) * mask


def _wrong_raw_logits(logits, completions, mask):
    P = logits.shape[1] - completions.shape[1]
    ids = torch.where(mask.bool(), completions, torch.zeros_like(completions))
    got = logits[:, P - 1:-1].gather(-1, ids[..., None]).squeeze(-1)
    return torch.where(mask.bool(), got, torch.zeros(()))


completion_logprobs = Exercise(
    name="completion_logprobs",
    reference=_reference_logprobs,
    properties=[
        ("completion token j is predicted by the logits at position P + j - 1 (the shift by one)", _lp_shift),
        ("it matches log_softmax + gather on random logits", matches_reference(_reference_logprobs, _lp_inputs)),
        ("under mask 0 ids may be anything (even -100) and logits may be NaN: the result there is exactly 0",
         _lp_padding),
    ],
    wrong_answers={"forgets the shift": _wrong_no_shift,
                   "multiplies by the mask (NaN * 0 is NaN)": _wrong_multiply,
                   "uses raw logits, not log-probs": _wrong_raw_logits},
    hints=(
        'the logits at position i predict token i + 1, so the completion is predicted one position early; padding ids may be anything',
        'logp_j = log_softmax(logits[:, P + j − 1])[token_j], P = logits.shape[1] − T; 0 under mask 0',
        'log_softmax(logits[:, P-1:-1], -1).gather(-1, ids[..., None]).squeeze(-1), ids with padding replaced by 0, then torch.where(mask.bool(), ·, 0)',
    ),
)


# -------------------------------------------------------- bradley_terry(chosen, rejected)
def _bt_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, generator=g) * 2, torch.randn(16, generator=g) * 2


def _bt_ln2(fn):
    r = torch.tensor([0.3, -1.2, 4.0])
    assert_close(fn(r, r.clone()), torch.tensor(math.log(2.0)), "loss when chosen and rejected rewards are equal")


def _bt_stable(fn):
    got = fn(torch.tensor([0.0, 200.0]), torch.tensor([200.0, 0.0]))
    assert torch.isfinite(torch.as_tensor(got)), "the loss overflowed: use F.logsigmoid, not log(sigmoid(.))"
    assert_close(got, torch.tensor(100.0), "mean loss for margins −200 and +200", rtol=1e-4)


def _bt_scalar(fn):
    got = fn(*_bt_inputs(0))
    assert isinstance(got, torch.Tensor) and got.dim() == 0, "return a 0-dim tensor (the mean over pairs)"


def _wrong_bt_naive(c, r):
    return -torch.log(torch.sigmoid(c - r)).mean()


def _wrong_bt_sign(c, r):
    return -torch.nn.functional.logsigmoid(r - c).mean()


def _wrong_bt_sum(c, r):
    return -torch.nn.functional.logsigmoid(c - r).sum()


bradley_terry = Exercise(
    name="bradley_terry",
    reference=_bt_reference,
    properties=[
        ("equal rewards give a loss of ln 2 (the model is indifferent)", _bt_ln2),
        ("it returns a 0-dim tensor", _bt_scalar),
        ("it matches teachkit.rlhf.bradley_terry_loss: mean of −log σ(r_c − r_r)",
         matches_reference(_bt_reference, _bt_inputs)),
        ("it stays finite for huge margins (−log σ(−200) = 200)", _bt_stable),
    ],
    wrong_answers={"log of sigmoid overflows": _wrong_bt_naive,
                   "chosen and rejected swapped": _wrong_bt_sign,
                   "sums instead of averaging": _wrong_bt_sum},
    hints=(
        'the loss is the negative log-likelihood that the chosen completion wins, averaged over pairs',
        'L = mean(−log σ(r_c − r_r)), with log σ computed stably',
        '-F.logsigmoid(chosen - rejected).mean()',
    ),
)
