"""Activation predictors: which FFN neurons will fire for this input? One per layer.

Two kinds, both trained with binary cross-entropy on recorded (FFN input x, active mask) pairs:

* **low-rank** (Deja Vu, LLM in a flash): ``logits = (x A) B + c`` with A (d, r), B (r, d_ff) and
  no nonlinearity. It costs r·(d + d_ff) multiply-adds per token, against the dense FFN's
  2·d·d_ff (up and down; 3·d·d_ff with a gate).
* **MLP** (PowerInfer): ``logits = relu(x W1 + b1) W2 + b2`` with a hidden width r (the same
  cost plus r biases).

Neuron i is predicted active when ``sigmoid(logit_i) > threshold``. Lowering the threshold
raises **recall** (share of truly active neurons the predictor keeps: a missed neuron is an
error in the output) and lowers **precision** (share of predicted neurons that really fire: a
false positive costs bandwidth, not accuracy). Sparse inference wants recall close to 1.

Inference runs in numpy (``predict``/``predict_mask``) so the engine needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Predictor", "train_predictor", "recall_precision", "threshold_sweep"]


@dataclass
class Predictor:
    """Numpy weights of one layer's predictor; ``kind`` is 'lowrank' or 'mlp'."""

    kind: str
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    history: list = field(default_factory=list)

    @property
    def d(self) -> int:
        return self.W1.shape[0]

    @property
    def d_ff(self) -> int:
        return self.W2.shape[1]

    def n_params(self) -> int:
        return sum(a.size for a in (self.W1, self.b1, self.W2, self.b2))

    def logits(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.shape[-1] != self.d:
            raise ValueError(f"predictor expects inputs with last dimension {self.d}, "
                             f"got shape {X.shape}")
        hidden = X @ self.W1 + self.b1
        if self.kind == "mlp":
            hidden = np.maximum(hidden, 0)
        return hidden @ self.W2 + self.b2

    def predict_mask(self, X: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Boolean (..., d_ff): sigmoid(logit) > threshold, computed as logit > logit(threshold)."""
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        return self.logits(X) > np.log(threshold / (1 - threshold))

    def predict(self, x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Sorted int64 indices of the neurons predicted active for one input ``x`` (d,)."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"predict takes one input vector (d,), got shape {x.shape}; "
                             f"use predict_mask for a batch")
        return np.flatnonzero(self.predict_mask(x, threshold)).astype(np.int64)

    def to_payload(self) -> dict:
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return {"kind": self.kind, "W1": t(self.W1), "b1": t(self.b1), "W2": t(self.W2),
                "b2": t(self.b2), "history": [float(v) for v in self.history]}

    @classmethod
    def from_payload(cls, p: dict) -> "Predictor":
        return cls(p["kind"], p["W1"].numpy(), p["b1"].numpy(), p["W2"].numpy(),
                   p["b2"].numpy(), list(p.get("history", [])))


def _check_data(X, M):
    X, M = np.asarray(X), np.asarray(M)
    if X.ndim != 2 or M.ndim != 2 or len(X) != len(M):
        raise ValueError(f"need X (N, d) and masks (N, d_ff) with the same N, got {X.shape} "
                         f"and {M.shape}")
    if len(X) < 2:
        raise ValueError("need at least 2 recorded tokens to train a predictor")
    return X.astype(np.float32), (M != 0).astype(np.float32)


def train_predictor(X, M, kind: str = "lowrank", rank: int = 64, epochs: int = 10,
                    batch_size: int = 256, lr: float = 3e-3, seed: int = 0) -> Predictor:
    """Fit a predictor to FFN inputs ``X`` (N, d) and activity masks ``M`` (N, d_ff).

    ``history`` holds the mean training BCE of every epoch, so a test can see it fall.
    """
    if kind not in ("lowrank", "mlp"):
        raise ValueError(f"kind must be 'lowrank' or 'mlp', got {kind!r}")
    X, M = _check_data(X, M)
    g = torch.Generator().manual_seed(seed)
    d, d_ff = X.shape[1], M.shape[1]
    mu, sd = X.mean(0), X.std(0) + 1e-6                      # standardise inputs, fold back later
    Xt, Mt = torch.from_numpy((X - mu) / sd), torch.from_numpy(M)
    W1 = (torch.randn(d, rank, generator=g) / d ** 0.5).requires_grad_()
    b1 = torch.zeros(rank, requires_grad=True)
    W2 = (torch.randn(rank, d_ff, generator=g) / rank ** 0.5).requires_grad_()
    rate = Mt.mean(0).clamp(1e-4, 1 - 1e-4)
    b2 = torch.log(rate / (1 - rate)).clone().requires_grad_()   # start at the base rates
    params = [W1, W2, b2] + ([b1] if kind == "mlp" else [])
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    for _ in range(epochs):
        perm, total = torch.randperm(len(Xt), generator=g), 0.0
        for s in range(0, len(Xt), batch_size):
            j = perm[s:s + batch_size]
            h = Xt[j] @ W1 + b1
            if kind == "mlp":
                h = torch.relu(h)
            loss = F.binary_cross_entropy_with_logits(h @ W2 + b2, Mt[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(j)
        history.append(total / len(Xt))
    with torch.no_grad():                                    # x_std = (x - mu)/sd folded into W1
        W1f = (W1 / torch.from_numpy(sd)[:, None]).numpy()
        b1f = (b1 - torch.from_numpy(mu / sd) @ W1).numpy()
    return Predictor(kind, W1f.astype(np.float32), b1f.astype(np.float32),
                     W2.detach().numpy().astype(np.float32), b2.detach().numpy().astype(np.float32),
                     history)


def recall_precision(pred, true) -> tuple[float, float]:
    """(recall, precision) of boolean predicted vs true activity masks (any equal shapes)."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {pred.shape} and "
                         f"{true.shape}")
    tp = np.logical_and(pred, true).sum()
    recall = tp / true.sum() if true.sum() else 1.0
    precision = tp / pred.sum() if pred.sum() else 1.0
    return float(recall), float(precision)


def threshold_sweep(pred: Predictor, X, M, thresholds=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)):
    """Rows of (threshold, recall, precision, predicted fraction) on held-out data."""
    logits = pred.logits(X)
    true = np.asarray(M) != 0
    rows = []
    for t in thresholds:
        mask = logits > np.log(t / (1 - t))
        r, p = recall_precision(mask, true)
        rows.append((float(t), r, p, float(mask.mean())))
    return rows
