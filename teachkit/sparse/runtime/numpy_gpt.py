"""The trained GPT of ``teachkit.toy.model`` in numpy, with any FFN backend (dense, or the sparse engine).

``NumpyGPT.generate`` runs the polymorphic engine end to end: dense prefill (the whole prompt,
each layer's FFN streamed from flash by :meth:`SparseFFN.dense_layer`) and sparse decode (one
token at a time through :class:`SparseFFN`). ``PredictorAdapter`` puts notebook 10's predictors
on the engine's bias-channel input.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from .trace import Trace

if TYPE_CHECKING:
    from .engine import SparseFFN

__all__ = ["NumpyGPT", "PredictorAdapter"]


def _layernorm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps) * w + b).astype(np.float32)


def _relu(a):
    return np.maximum(a, 0.0)


class NumpyGPT:
    """``teachkit.toy.model.GPT`` (pre-LN, learned positions, tied head, ReLU MLP) in numpy.

    Built from ``teachkit.sparse.model.lm.export_numpy(model)``, whose FFNs are bias-channel bundles:
    the FFN input is ``[LN(x), 1]`` (length d+1), up row i is ``[W1_i, b1_i]``, down row i is
    ``[W2[:, i], 0]``; the down bias is added densely. Everything except the bundles is the
    engine's fixed region (:attr:`fixed`); the bundles go to the flash file.
    """

    def __init__(self, exported: dict):
        c = exported["config"]
        if c.get("activation", "relu") != "relu":
            raise ValueError("sparse inference needs the ReLU model (activation='relu')")
        self.n_head, self.d, self.n_layers, self.block_size = c["n_head"], c["d_model"], c["n_layer"], c["block_size"]
        self.layers = [{k: v for k, v in L.items() if k != "ffn_bundles"} for L in exported["layers"]]
        self.bundles = [L["ffn_bundles"] for L in exported["layers"]]
        self.emb, self.pos = exported["tok_emb"], exported["pos_emb"]
        self.ln_f = (exported["ln_f_w"], exported["ln_f_b"])
        self.fixed = {"tok_emb": self.emb, "pos_emb": self.pos, "ln_f_w": self.ln_f[0], "ln_f_b": self.ln_f[1]}
        for l, L in enumerate(self.layers):
            self.fixed.update({f"{l}.{k}": v for k, v in L.items()})

    def _attn(self, l, x, cache):
        p, C, H = self.layers[l], self.d, self.n_head
        h = _layernorm(x, p["ln1_w"], p["ln1_b"])
        qkv = h @ p["qkv_w"].T + p["qkv_b"]
        q, k, v = (a.reshape(len(x), H, C // H).transpose(1, 0, 2) for a in np.split(qkv, 3, axis=1))
        past = 0 if cache[l] is None else cache[l][0].shape[1]
        if cache[l] is not None:
            k, v = np.concatenate([cache[l][0], k], 1), np.concatenate([cache[l][1], v], 1)
        cache[l] = (k, v)
        att = q @ k.transpose(0, 2, 1) / np.sqrt(C // H)
        allowed = np.tril(np.ones((len(x), past + len(x)), bool), k=past)
        att = np.where(allowed, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(1, 0, 2).reshape(len(x), C)
        return (y @ p["attn_proj_w"].T + p["attn_proj_b"]).astype(np.float32)

    def kv_cache_bytes(self) -> int:
        """Bytes of a full KV cache (float32 K and V for ``block_size`` positions, every layer)."""
        return self.n_layers * 2 * self.block_size * self.d * 4

    def _check_engine(self, engine, n_prompt: int) -> None:
        if engine.kv_bytes < self.kv_cache_bytes():
            raise ValueError(f"the engine's budget counts {engine.kv_bytes} B of KV cache but this model needs "
                             f"{self.kv_cache_bytes()} B: build it with kv_bytes=gpt.kv_cache_bytes()")
        if n_prompt > engine.cfg.max_prompt:
            raise ValueError(f"prompt of {n_prompt} tokens, but the engine's prefill buffers hold "
                             f"max_prompt = {engine.cfg.max_prompt}")

    def ffn_input(self, l, x):
        h = _layernorm(x, self.layers[l]["ln2_w"], self.layers[l]["ln2_b"])
        return np.concatenate([h, np.ones((len(h), 1), np.float32)], axis=1)

    def forward(self, tokens, cache, ffn_dense=None, ffn_token=None, trace: Trace | None = None):
        """Logits of the last position. ``ffn_dense(l, H)`` handles all rows, ``ffn_token(l, h)`` one row."""
        pos0 = 0 if cache[0] is None else cache[0][0].shape[1]
        if pos0 + len(tokens) > self.block_size:
            raise ValueError(f"sequence of {pos0 + len(tokens)} tokens exceeds block_size {self.block_size}")
        x = self.emb[tokens] + self.pos[pos0:pos0 + len(tokens)]
        for l in range(self.n_layers):
            t0 = time.perf_counter()
            x = x + self._attn(l, x, cache)
            if trace is not None:
                trace.add("compute", "attention", l, -1, t0, time.perf_counter())
            H = self.ffn_input(l, x)
            out = ffn_dense(l, H) if ffn_dense is not None else np.stack([ffn_token(l, h) for h in H])
            x = x + out[:, :self.d] + self.layers[l]["ffn_proj_b"]
        h = _layernorm(x[-1:], *self.ln_f)
        return (h @ self.emb.T)[0]

    def dense_ffn(self, l, H):
        B = self.bundles[l]
        return _relu(H @ B[:, 0].T) @ B[:, 1]

    def next_token_logprobs(self, tokens, engine: SparseFFN | None = None) -> np.ndarray:
        """Teacher-forced decode: log p(tokens[t+1] | tokens[:t+1]) one token at a time (the decode path)."""
        cache = [None] * self.n_layers
        out = []
        if engine is not None:
            self._check_engine(engine, 1)
        for t in range(min(len(tokens), self.block_size) - 1):
            tok = np.array([int(tokens[t])])
            if engine is None:
                logits = self.forward(tok, cache, ffn_dense=self.dense_ffn)
            else:
                logits = self.forward(tok, cache, ffn_token=engine)
                engine.end_token()
            z = logits - logits.max()
            out.append(z[int(tokens[t + 1])] - np.log(np.exp(z).sum()))
        return np.array(out)

    def generate(self, prompt, n_new: int, engine: SparseFFN | None = None) -> list[int]:
        """Greedy decoding. With ``engine``: dense prefill streamed from flash, sparse decode."""
        cache = [None] * self.n_layers
        tokens = [int(t) for t in prompt]
        if not tokens:
            raise ValueError("the prompt must hold at least one token")
        if engine is None:
            logits = self.forward(np.array(tokens), cache, ffn_dense=self.dense_ffn)
        else:
            self._check_engine(engine, len(tokens))
            logits = self.forward(np.array(tokens), cache,
                                  ffn_dense=lambda l, H: engine.dense_layer(l, H, _relu), trace=engine.trace)
        out = []
        for _ in range(n_new):
            nxt = int(np.argmax(logits))
            out.append(nxt)
            if len(tokens) + len(out) >= self.block_size:
                break
            if engine is None:
                logits = self.forward(np.array([nxt]), cache, ffn_dense=self.dense_ffn)
            else:
                logits = self.forward(np.array([nxt]), cache, ffn_token=engine, trace=engine.trace)
                engine.end_token()
        return out


class PredictorAdapter:
    """Notebook 10's per-layer predictors (``Predictor.predict(x)``) on the engine's bias-channel input."""

    def __init__(self, predictors: list, threshold: float = 0.5):
        self.predictors, self.threshold = predictors, threshold
        self.nbytes = sum(a.nbytes for p in predictors for a in (p.W1, p.b1, p.W2, p.b2))

    def __call__(self, layer: int, x: np.ndarray) -> np.ndarray:
        return self.predictors[layer].predict(x[:-1], self.threshold)
