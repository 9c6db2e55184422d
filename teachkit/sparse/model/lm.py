"""A small ReLU language model trained on Python's own standard library.

The corpus needs no download: the ``.py`` files at the top of the standard library and the
pydoc topic pages (``pydoc_data/topics.py``, the language reference as text) ship with every
Python. Tokens are bytes (vocabulary 256), so nothing needs a trained tokenizer.

The network is ``teachkit.toy.model.GPT`` with ReLU FFNs. Training adds a small L1 penalty on
the FFN activations, ``λ · mean_l mean |h_l|`` (ProSparse's idea without its schedule), which
pushes more of them to exactly zero; its weight is in :class:`LMConfig`.

Numpy export for the sparse engine. The FFN ``proj(relu(fc(x)))`` has biases. A constant-1
*bias channel* folds the fc bias into the bundle so the bias-free kernels apply unchanged::

    x̃ = [x, 1]  (d+1),   up_i = [fc.weight[i], fc.bias[i]],   down_i = [proj.weight[:, i], 0]
    FFN(x) = (Σ_{i∈active} relu(up_i·x̃) down_i)[:d] + proj.bias
"""

from __future__ import annotations

import math
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ... import artifacts
from ...toy.model import GPT, GPTConfig

__all__ = ["LMConfig", "stdlib_corpus", "encode", "decode", "train_lm", "save_lm", "load_lm",
           "record_ffn", "perplexity", "export_numpy", "numpy_ffn", "LM_PATH", "LM_KIND",
           "LM_VERSION"]

LM_PATH = artifacts.path_for("sparse_lm.pt")
LM_KIND, LM_VERSION = "sparse-relu-lm", 1


@dataclass
class LMConfig:
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_ff: int = 512
    block_size: int = 128
    batch_size: int = 16
    steps: int = 900
    lr: float = 3e-3
    warmup: int = 50
    l1: float = 2e-3            # weight of the L1 penalty on FFN activations
    corpus_bytes: int = 2_000_000
    seed: int = 0

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=256, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, d_model=self.d_model, d_ff=self.d_ff,
                         activation="relu")


def stdlib_corpus(max_bytes: int = 2_000_000) -> tuple[bytes, bytes, list[str]]:
    """(train, held_out, file names): pydoc topics + top-level stdlib modules, every 10th
    file held out. Deterministic for a given Python version."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [root / "pydoc_data" / "topics.py"] + sorted(root.glob("*.py"))
    train, held, names, total = [], [], [], 0
    for k, f in enumerate(files):
        if not f.exists():
            continue
        data = f.read_bytes()
        (held if k % 10 == 9 else train).append(data)
        names.append(f.name)
        total += len(data)
        if total >= max_bytes and held:
            break
    if not train or not held:
        raise RuntimeError(f"found no standard-library sources under {root}")
    return b"\n".join(train), b"\n".join(held), names


def encode(text: str | bytes) -> torch.Tensor:
    """Bytes → LongTensor of token ids 0..255."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return torch.tensor(list(data), dtype=torch.long)


def decode(ids) -> str:
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def _batch(data: torch.Tensor, cfg: LMConfig, g: torch.Generator):
    ix = torch.randint(len(data) - cfg.block_size - 1, (cfg.batch_size,), generator=g)
    x = torch.stack([data[i:i + cfg.block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + cfg.block_size] for i in ix])
    return x, y


def train_lm(cfg: LMConfig = LMConfig(), log=print):
    """Train the ReLU LM; returns (model, payload dict ready for :func:`save_lm`)."""
    torch.manual_seed(cfg.seed)
    train_b, held_b, names = stdlib_corpus(cfg.corpus_bytes)
    train, held = encode(train_b), encode(held_b)
    model = GPT(cfg.gpt_config())
    acts: list[torch.Tensor] = []          # post-ReLU activations of this step, with grad
    hooks = [b.mlp.act.register_forward_hook(lambda m, a, out: acts.append(out))
             for b in model.blocks]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(cfg.seed)
    history, t0 = [], time.perf_counter()
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (
            1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = _batch(train, cfg, g)
        acts.clear()
        logits = model(x)
        ce = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        l1 = torch.stack([a.mean() for a in acts]).mean()
        loss = ce + cfg.l1 * l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            history.append((step, float(ce.detach())))
            log(f"step {step:5d}  loss {float(ce.detach()):.3f}  L1 {float(l1.detach()):.4f}  "
                f"{time.perf_counter() - t0:.0f} s")
    for h in hooks:
        h.remove()
    model.eval()
    payload = {"config": asdict(cfg),
               "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
               "history": torch.tensor(history, dtype=torch.float32),
               "train_sample": train[: 200_000].to(torch.uint8),
               "held_out": held[: 60_000].to(torch.uint8),
               "files": names, "python_stdlib": sysconfig.get_paths()["stdlib"]}
    return model, payload


def save_lm(payload: dict, path=LM_PATH) -> Path:
    return artifacts.save(payload, path, LM_KIND, LM_VERSION)


def load_lm(path=LM_PATH):
    """(model in eval mode, payload). Raises a clear error telling you to run ``make data``."""
    payload = artifacts.load(path, LM_KIND, LM_VERSION)
    cfg = LMConfig(**payload["config"])
    model = GPT(cfg.gpt_config())
    model.load_state_dict(payload["state"])
    model.eval()
    return model, payload


@torch.no_grad()
def record_ffn(model: GPT, tokens: torch.Tensor, block: int | None = None):
    """FFN inputs and activations of every layer on a 1-D token stream.

    Returns ``(xs, hs)``: lists over layers of float32 arrays ``(N, d_model)`` (the FFN input
    LN(x), what a predictor sees) and ``(N, d_ff)`` (post-ReLU activations).
    """
    block = block or model.config.block_size
    n = (len(tokens) // block) * block
    if n == 0:
        raise ValueError(f"need at least {block} tokens, got {len(tokens)}")
    idx = tokens[:n].long().view(-1, block)
    xs = [[] for _ in model.blocks]
    handles = [b.mlp.register_forward_pre_hook(lambda m, a, l=l: xs[l].append(a[0].detach()))
               for l, b in enumerate(model.blocks)]
    try:
        hs = model.mlp_activations(idx)
    finally:
        for h in handles:
            h.remove()
    d, f = model.config.d_model, model.config.d_ff
    return ([torch.cat(x).reshape(-1, d).numpy() for x in xs],
            [h.reshape(-1, f).numpy() for h in hs])


@torch.no_grad()
def perplexity(model: GPT, tokens: torch.Tensor, masker=None, block: int | None = None) -> float:
    """exp(mean next-byte cross-entropy) on ``tokens`` in non-overlapping blocks.

    ``masker(layer, x) -> mask`` (numpy, (N, d_ff), bool or 0/1), if given, is applied to every
    FFN's activations: the model then runs with only the neurons the masker keeps. ``x`` is the
    FFN input of *this* (masked) run. Dropped neurons are selected away (``torch.where``), never
    multiplied by 0, so a NaN or inf in a dropped neuron cannot leak.
    """
    block = block or model.config.block_size
    n = ((len(tokens) - 1) // block) * block
    x, y = tokens[:n].long().view(-1, block), tokens[1:n + 1].long().view(-1, block)
    handles = []
    if masker is not None:
        for l, b in enumerate(model.blocks):
            store: dict = {}

            def save_input(mod, args, store=store):
                store["x"] = args[0]

            def apply_mask(mod, args, out, l=l, store=store):
                xin = store["x"].reshape(-1, store["x"].shape[-1]).numpy()
                mask = torch.from_numpy(np.asarray(masker(l, xin)) != 0).reshape(out.shape)
                return torch.where(mask, out, torch.zeros((), dtype=out.dtype))   # select

            handles += [b.mlp.register_forward_pre_hook(save_input),
                        b.mlp.act.register_forward_hook(apply_mask)]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.exp(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))))


def export_numpy(model: GPT) -> dict:
    """All weights as float32 numpy arrays, FFNs as bias-channel bundles (see module doc).

    Keys: ``config`` (dict), ``tok_emb`` (V, d), ``pos_emb`` (P, d), ``ln_f_w``, ``ln_f_b``, and
    ``layers``: a list of dicts with ``ln1_w, ln1_b, qkv_w (3d, d), qkv_b, attn_proj_w (d, d),
    attn_proj_b, ln2_w, ln2_b, ffn_bundles (d_ff, 2, d+1), ffn_proj_b (d,)``.
    """
    from ..compute.bundles import make_bundles

    f32 = lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)  # noqa: E731
    out = {"config": model.config.to_dict(), "tok_emb": f32(model.tok_emb.weight),
           "pos_emb": f32(model.pos_emb.weight), "ln_f_w": f32(model.ln_f.weight),
           "ln_f_b": f32(model.ln_f.bias), "layers": []}
    for b in model.blocks:
        up = np.concatenate([f32(b.mlp.fc.weight), f32(b.mlp.fc.bias)[:, None]], axis=1)
        down = np.concatenate([f32(b.mlp.proj.weight), np.zeros((1, up.shape[0]), np.float32)])
        out["layers"].append({
            "ln1_w": f32(b.ln1.weight), "ln1_b": f32(b.ln1.bias),
            "qkv_w": f32(b.attn.qkv.weight), "qkv_b": f32(b.attn.qkv.bias),
            "attn_proj_w": f32(b.attn.proj.weight), "attn_proj_b": f32(b.attn.proj.bias),
            "ln2_w": f32(b.ln2.weight), "ln2_b": f32(b.ln2.bias),
            "ffn_bundles": make_bundles(up, down), "ffn_proj_b": f32(b.mlp.proj.bias)})
    return out


def numpy_ffn(layer: dict, x: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """FFN of one exported layer on one FFN input ``x`` (d,), over neurons ``idx`` (all if None)."""
    from ..compute.kernels import sparse_ffn_bundled

    B = layer["ffn_bundles"]
    xa = np.append(x.astype(np.float32), np.float32(1.0))
    idx = np.arange(B.shape[0], dtype=np.int64) if idx is None else idx
    out = sparse_ffn_bundled(B, idx, xa, np.zeros(B.shape[2], np.float32), gated=False)
    return out[:-1] + layer["ffn_proj_b"]
