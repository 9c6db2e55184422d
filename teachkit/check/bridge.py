"""Exercises of notebook 15 (from the toy to TRL): the weight map, TRL's default KL, RLOO's sequence ratio.

References are plain torch, so ``import teachkit.check`` never loads TRL; ``tests/test_trl_bridge.py``
proves each reference equals TRL's own code.
"""

from __future__ import annotations

import torch

from ._core import Exercise, assert_close, matches_reference
from ..bridge.hf_model import weight_map
from ..rlhf.grpo import grpo_loss as _grpo_loss
from ..rlhf.kl import kl_k3 as _k3
from ..toy.masking import select_or_zero
from ..toy.model import GPT, GPTConfig

__all__ = ["gpt2_state_dict", "bias_corrected_k3", "rloo_sequence_loss"]


# ------------------------------------------------------------------ the weight map

def _gpt2_state_dict_reference(toy_state: dict, n_layer: int) -> dict:
    return {hf: (toy_state[toy].t() if transpose else toy_state[toy]) for toy, hf, transpose in weight_map(n_layer)}


def _toy_state(seed: int, n_layer: int = 2) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=14, block_size=7, n_layer=n_layer, n_head=2, d_model=8, d_ff=24))
        # init leaves every LayerNorm at weight 1, bias 0: perturb all, so a swapped tensor shows
        return {k: v.detach() + 0.1 * torch.randn(v.shape) for k, v in model.state_dict().items()}


def _keys_are_gpt2_names(fn):
    for seed, n_layer in ((0, 2), (1, 3)):
        state = _toy_state(seed, n_layer)
        want = _gpt2_state_dict_reference(state, n_layer)
        got = fn({k: v.clone() for k, v in state.items()}, n_layer)
        if not isinstance(got, dict):
            raise AssertionError(f"return a dict of name -> tensor, got {type(got).__name__}")
        if set(got) != set(want):
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise AssertionError(f"with n_layer={n_layer} the keys differ: missing {missing[:3]}, "
                                 f"unexpected {extra[:3]}")


def _tensors_agree(fn):
    for seed, n_layer in ((0, 2), (1, 3)):
        state = _toy_state(seed, n_layer)
        want = _gpt2_state_dict_reference(state, n_layer)
        got = fn({k: v.clone() for k, v in state.items()}, n_layer)
        for name in want:
            assert_close(got[name], want[name], name, rtol=0, atol=0)


def _wrong_no_transpose(toy_state, n_layer):
    return {hf: toy_state[toy] for toy, hf, _ in weight_map(n_layer)}


def _wrong_transpose_every_matrix(toy_state, n_layer):
    return {hf: (toy_state[toy].t() if toy_state[toy].dim() == 2 else toy_state[toy])
            for toy, hf, _ in weight_map(n_layer)}


def _wrong_swapped_layer_norms(toy_state, n_layer):
    out = _gpt2_state_dict_reference(toy_state, n_layer)
    for i in range(n_layer):
        for p in ("weight", "bias"):
            a, b = f"transformer.h.{i}.ln_1.{p}", f"transformer.h.{i}.ln_2.{p}"
            out[a], out[b] = out[b], out[a]
    return out


gpt2_state_dict = Exercise(
    name="gpt2_state_dict",
    reference=_gpt2_state_dict_reference,
    properties=[("the keys are GPT-2's parameter names, lm_head.weight left out (it is tied to wte)",
                 _keys_are_gpt2_names),
                ("every toy tensor lands under its GPT-2 name, Linear weights transposed for Conv1D",
                 _tensors_agree)],
    wrong_answers={"forgets the Conv1D transpose": _wrong_no_transpose,
                   "also transposes the embeddings": _wrong_transpose_every_matrix,
                   "swaps ln_1 and ln_2": _wrong_swapped_layer_norms,
                   "adds the tied lm_head.weight": lambda s, n: {**_gpt2_state_dict_reference(s, n),
                                                                 "lm_head.weight": s["tok_emb.weight"]}},
    hints=("GPT-2's Conv1D stores (in, out), nn.Linear (out, in); embeddings, LayerNorms and biases keep their shape.",
           "tok_emb → transformer.wte, pos_emb → transformer.wpe, blocks.i.ln1/ln2 → transformer.h.i.ln_1/ln_2, "
           "attn.qkv → attn.c_attn, attn.proj → attn.c_proj, mlp.fc/proj → mlp.c_fc/c_proj, ln_f → transformer.ln_f.",
           "for each block i and each (toy, gpt2) Linear pair: out[f'transformer.h.{i}.{gpt2}.weight'] = "
           "toy_state[f'blocks.{i}.{toy}.weight'].t(); biases and the rest copy as they are."),
)


# ------------------------------------------------------------------ TRL's default KL term

def _bias_corrected_k3_reference(logp, old_logp, ref_logp):
    return _k3(logp, ref_logp) * torch.exp(logp - old_logp)


def _token_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(6, 5, generator=g, dtype=torch.float64) * 3
    logp = old + 0.4 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    ref = old + 0.4 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    return logp, old, ref


def _k3_at_ratio_one(fn):
    logp, _, ref = _token_inputs(9)
    assert_close(fn(logp, logp.clone(), ref), _k3(logp, ref), "at logp = old_logp (ratio 1) the term is plain k3")


bias_corrected_k3 = Exercise(
    name="bias_corrected_k3",
    reference=_bias_corrected_k3_reference,
    properties=[("at ratio 1 it is plain k3", _k3_at_ratio_one),
                ("matches k3 · π/π_old per token", matches_reference(_bias_corrected_k3_reference, _token_inputs))],
    wrong_answers={"plain k3 (TRL's use_bias_correction_kl=False)": lambda lp, old, ref: _k3(lp, ref),
                   "divides by the ratio": lambda lp, old, ref: _k3(lp, ref) * torch.exp(old - lp),
                   "ratio to the reference": lambda lp, old, ref: _k3(lp, ref) * torch.exp(lp - ref)},
    hints=("TRL multiplies each token's k3 by the importance ratio π/π_old.",
           "k3 = e^d − d − 1 with d = ref_logp − logp; the ratio is exp(logp − old_logp).",
           "return kl_k3(logp, ref_logp) * torch.exp(logp - old_logp)"),
)


# ------------------------------------------------------------------ RLOO's sequence ratio

def _rloo_sequence_loss_reference(logp, old_logp, advantages, mask, eps):
    m = mask.bool()
    seq = select_or_zero(logp, m).sum(1, keepdim=True)
    seq_old = select_or_zero(old_logp, m).sum(1, keepdim=True)
    return _grpo_loss(seq, seq_old, None, advantages, torch.ones_like(seq), eps, beta=0.0)


def _rloo_inputs(seed: int):
    logp, old, _ = _token_inputs(seed)
    g = torch.Generator().manual_seed(100 + seed)
    mask = (torch.arange(5)[None] < torch.randint(1, 6, (6,), generator=g)[:, None]).double()
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    return logp, old, adv, mask, 0.2


def _rloo_token_mask(fn):
    logp, old, adv, mask, eps = _rloo_inputs(3)
    noisy = torch.where(mask.bool(), logp, torch.full_like(logp, float("nan")))
    assert_close(fn(noisy, old, adv, mask, eps), _rloo_sequence_loss_reference(logp, old, adv, mask, eps),
                 "with NaN under mask 0 (select, don't multiply)")


rloo_sequence_loss = Exercise(
    name="rloo_sequence_loss",
    reference=_rloo_sequence_loss_reference,
    properties=[("padding never counts", _rloo_token_mask),
                ("clips exp(Σ logp − Σ old_logp), one ratio per sequence, mean over sequences",
                 matches_reference(_rloo_sequence_loss_reference, _rloo_inputs))],
    wrong_answers={"clips each token's ratio": lambda lp, old, a, m, e: _grpo_loss(lp, old, None, a, m, e, beta=0.0),
                   "no clip": lambda lp, old, a, m, e: _rloo_sequence_loss_reference(lp, old, a, m, 1e6),
                   "multiplies by the mask": lambda lp, old, a, m, e: _grpo_loss(
                       (lp * m).sum(1, keepdim=True), (old * m).sum(1, keepdim=True), None, a,
                       torch.ones(len(a), 1, dtype=lp.dtype), e, beta=0.0)},
    hints=("Sum each sequence's log-probs under the mask first, then one ratio and one clip per sequence.",
           "ρ_i = exp(Σ_t logp − Σ_t old_logp) over the mask; loss = mean_i −min(ρ_i A_i, clip(ρ_i, 1−ε, 1+ε) A_i).",
           "s = torch.where(mask.bool(), logp, torch.zeros_like(logp)).sum(1) (same for old_logp), "
           "then the clipped surrogate on exp(s − s_old)."),
)
