"""A tiny decoder-only transformer (GPT) in plain PyTorch, with a KV cache and an optional value head.

    x_0 = tok_emb(idx) + pos_emb(positions)
    x_{l+1/2} = x_l + Attn(LN(x_l))          pre-LN: the residual stream is never normalised
    x_{l+1}   = x_{l+1/2} + MLP(LN(x_{l+1/2}))   MLP(h) = W_2 act(W_1 h), act = ReLU (default) or GELU
    logits = LN(x_L) @ tok_emb.weight^T        (weights tied)

Attention is causal: position i attends to positions 0..i. Generation needs one new position per
step; without a cache each step recomputes keys and values of the whole prefix (O(T^2) work in
total), with a cache (``KVCache``) it appends one key and one value per layer and attends the new
query to all stored keys (O(T) per step). Both give the same logits: a test checks it.

ReLU is the default because the sparse-inference notebooks reuse this model: after a ReLU most
FFN activations are exactly 0, which is what makes sparse inference possible.
``model.mlp_activations(idx)`` returns the post-activation FFN values of every layer; each block's
``mlp.act`` is an ``nn.Module`` so a forward hook works too.

With ``value_head=True`` the model also has a scalar head ``model.values(idx) -> (B, T)`` on the
final hidden state: PPO's critic and the Bradley–Terry reward model use it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

__all__ = ["GPTConfig", "GPT", "KVCache"]


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 16
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 256
    activation: str = "relu"
    value_head: bool = False
    pad_id: int = 0
    eos_id: int = 1

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "d_ff"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Keys and values of every layer for the positions seen so far: ``k[l]`` is (B, H, t, d_head)."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        """Positions stored so far (read it before a forward pass: each layer appends in turn)."""
        return self.layer_length(0)

    def layer_length(self, layer: int) -> int:
        return 0 if self.k[layer] is None else self.k[layer].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v

    def repeat_interleave(self, repeats: int) -> "KVCache":
        """A cache whose row ``b`` is row ``b // repeats`` of this one: a shared prefix, fanned out.

        The G completions of one prompt attend to the same prompt keys and values, so the prompt
        runs once per group and its cache is repeated G times. Gradients flow back through the
        repeat (summed over the group), exactly as if each copy had run the prompt itself.
        """
        out = KVCache(len(self.k))
        out.k = [None if k is None else k.repeat_interleave(repeats, dim=0) for k in self.k]
        out.v = [None if v is None else v.repeat_interleave(repeats, dim=0) for v in self.v]
        return out


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:
            past = cache.layer_length(layer)
            k, v = cache.append(layer, k, v)
        # query i sits at absolute position past + i and may see keys 0 .. past + i
        allowed = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.act = nn.ReLU() if cfg.activation == "relu" else nn.GELU()
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.record = False
        self.last_activation: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc(x))
        if self.record:
            self.last_activation = h.detach()
        return self.proj(h)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """``model(idx) -> logits (B, T, V)``; ``model.values(idx) -> (B, T)`` with a value head."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if not isinstance(cfg, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.value_head = nn.Linear(cfg.d_model, 1) if cfg.value_head else None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def eos_id(self) -> int:
        return self.config.eos_id

    @property
    def pad_id(self) -> int:
        return self.config.pad_id

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, d_model); with a cache, ``idx`` continues it."""
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.dim() != 2:
            got = f"{idx.dtype} tensor of shape {tuple(idx.shape)}" if isinstance(idx, torch.Tensor) \
                else type(idx).__name__
            raise TypeError(f"idx must be a (B, T) LongTensor of token ids, got {got}")
        past = 0 if cache is None else cache.length
        T = idx.shape[1]
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} exceeds block_size {self.config.block_size}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), "
                             f"got min {int(idx.min())} and max {int(idx.max())}")
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.hidden(idx, cache) @ self.tok_emb.weight.T

    def values(self, idx: torch.Tensor) -> torch.Tensor:
        """Scalar value-head output at every position, (B, T)."""
        if self.value_head is None:
            raise ValueError("this model has no value head: build it with GPTConfig(value_head=True)")
        return self.value_head(self.hidden(idx)).squeeze(-1)

    def new_cache(self) -> KVCache:
        return KVCache(self.config.n_layer)

    @torch.no_grad()
    def mlp_activations(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation FFN values ``act(W_1 LN(x))`` of every layer: a list of (B, T, d_ff)."""
        mlps = [block.mlp for block in self.blocks]
        for mlp in mlps:
            mlp.record, mlp.last_activation = True, None
        try:
            self.hidden(idx)
            return [mlp.last_activation for mlp in mlps]
        finally:
            for mlp in mlps:
                mlp.record, mlp.last_activation = False, None
