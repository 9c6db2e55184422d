"""The toy GPT as a Hugging Face ``transformers`` model, and the toy vocabulary as an HF tokenizer.

The toy GPT (``teachkit.toy.model``) is GPT-2 in miniature: pre-LN blocks, a fused q/k/v
projection, a two-layer MLP, learned positions and an output head tied to the token embedding.
So ``GPT2LMHeadModel`` holds the same function once the weights are mapped:

    toy                              GPT-2 (transformers)
    tok_emb.weight    (V, d)         transformer.wte.weight    (and lm_head.weight, tied)
    pos_emb.weight    (T, d)         transformer.wpe.weight
    blocks.l.ln1 / ln2               transformer.h.l.ln_1 / ln_2
    blocks.l.attn.qkv (nn.Linear)    transformer.h.l.attn.c_attn (Conv1D: weight transposed)
    blocks.l.attn.proj               transformer.h.l.attn.c_proj (transposed)
    blocks.l.mlp.fc / proj           transformer.h.l.mlp.c_fc / c_proj (transposed)
    ln_f                             transformer.ln_f

GPT-2's ``Conv1D`` stores its weight as (in, out), an ``nn.Linear`` as (out, in): hence the
transposes. Both split the fused projection as q | k | v and scale attention by 1/√d_head.
Dropout is 0 and the activation is the toy's (ReLU or GELU), so logits agree to float rounding.

Nothing is downloaded: the config is built here and the tokenizer is made from the toy's symbols
(``tokenizers``' WordLevel model over single characters, ``<pad>`` and ``<eos>`` as special tokens).
"""

from __future__ import annotations

import torch

from ..toy.model import GPT, GPTConfig

__all__ = ["gpt2_config", "weight_map", "to_hf", "from_hf", "hf_tokenizer"]

_ACTIVATION = {"relu": "relu", "gelu": "gelu"}


def gpt2_config(cfg: GPTConfig):
    """A ``GPT2Config`` with the toy's sizes, no dropout, tied head, and the toy's pad/EOS ids."""
    from transformers import GPT2Config

    if cfg.value_head:
        raise ValueError("only a policy converts: this GPTConfig has a value head (GPT2LMHeadModel has none)")
    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.d_model, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.d_ff, activation_function=_ACTIVATION[cfg.activation],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        bos_token_id=cfg.eos_id, eos_token_id=cfg.eos_id, pad_token_id=cfg.pad_id,
        tie_word_embeddings=True, use_cache=True)


def weight_map(n_layer: int):
    """The table above as data: ``(toy name, GPT-2 name, transpose?)`` for every tensor of a toy GPT
    with ``n_layer`` blocks (``lm_head.weight`` is left out: it is tied to ``wte``).

    ``transpose`` is True for the Linear weights that GPT-2 stores as ``Conv1D``. :func:`to_hf` and
    :func:`from_hf` copy along it; ``teachkit.check.gpt2_state_dict`` checks a learner's map against it.
    """
    yield "tok_emb.weight", "transformer.wte.weight", False
    yield "pos_emb.weight", "transformer.wpe.weight", False
    for i in range(n_layer):
        t, h = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b in (("ln1", "ln_1"), ("ln2", "ln_2")):
            yield t + a + ".weight", h + b + ".weight", False
            yield t + a + ".bias", h + b + ".bias", False
        for a, b in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                     ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            yield t + a + ".weight", h + b + ".weight", True
            yield t + a + ".bias", h + b + ".bias", False
    yield "ln_f.weight", "transformer.ln_f.weight", False
    yield "ln_f.bias", "transformer.ln_f.bias", False


def to_hf(model: GPT):
    """A ``GPT2LMHeadModel`` computing the same logits as the toy ``model`` (a copy: no shared tensors)."""
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT):
        raise TypeError(f"to_hf expects a teachkit GPT, got {type(model).__name__}")
    hf = GPT2LMHeadModel(gpt2_config(model.config))
    src = model.state_dict()
    dst = hf.state_dict()
    with torch.no_grad():
        for toy_name, hf_name, transpose in weight_map(model.config.n_layer):
            w = src[toy_name].t() if transpose else src[toy_name]
            if dst[hf_name].shape != w.shape:
                raise ValueError(f"{toy_name} {tuple(w.shape)} does not fit {hf_name} {tuple(dst[hf_name].shape)}")
            dst[hf_name].copy_(w)
    hf.tie_weights()
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("GPT2LMHeadModel did not tie lm_head to wte: logits would differ")
    hf.generation_config.pad_token_id = model.config.pad_id
    hf.generation_config.eos_token_id = model.config.eos_id
    return hf.to(model.device).train(model.training)


def from_hf(hf, config: GPTConfig) -> GPT:
    """The toy GPT holding the weights of a (trained) ``GPT2LMHeadModel`` made by :func:`to_hf`."""
    model = GPT(GPTConfig(**{**config.to_dict(), "value_head": False}))
    src = hf.state_dict()
    state = {}
    for toy_name, hf_name, transpose in weight_map(config.n_layer):
        if hf_name not in src:
            raise ValueError(f"the HF model has no {hf_name}: was it made by to_hf with this config?")
        w = src[hf_name].detach().cpu()
        state[toy_name] = (w.t() if transpose else w).clone()
    model.load_state_dict(state)
    return model


def hf_tokenizer(task):
    """A ``PreTrainedTokenizerFast`` over a toy task's symbols: the same ids as ``task.tokenizer``.

    Each character is a token; ``<pad>`` (id 0) and ``<eos>`` (id 1) are special tokens, matched
    whole. No BOS is added, so ``tok("3+4=").input_ids == task.tokenizer.encode("3+4=")``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = task.tokenizer.symbols
    vocab = {s: i for i, s in enumerate(symbols)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                  unk_token="<pad>", model_max_length=task.block_size,
                                  clean_up_tokenization_spaces=False)
    if tok.convert_tokens_to_ids(symbols) != list(range(len(symbols))):
        raise RuntimeError("the HF tokenizer's ids differ from the toy vocabulary")
    return tok
