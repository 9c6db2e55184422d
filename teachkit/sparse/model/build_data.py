"""``make data`` step for the sparse topic: train the ReLU LM, then its per-layer predictors.

Writes ``data/sparse_lm.pt`` (the model, a training-text sample and held-out text) and
``data/sparse_predictors.pt`` (a low-rank and an MLP predictor per layer). Deterministic:
fixed seeds, one thread. About 4 minutes on one quiet core.
"""

from __future__ import annotations

import torch

from ... import artifacts
from .lm import LMConfig, load_lm, record_ffn, save_lm, train_lm
from .predictor import Predictor, train_predictor

__all__ = ["main", "PRED_PATH", "PRED_KIND", "PRED_VERSION", "PREDICTOR_RANK", "load_predictors",
           "train_layer_predictors"]

PRED_PATH = artifacts.path_for("sparse_predictors.pt")
PRED_KIND, PRED_VERSION = "sparse-predictors", 1
PREDICTOR_RANK = 32           # hidden width of both predictor kinds
N_RECORD = 32_768             # training tokens recorded for the predictors


def train_layer_predictors(xs, hs, kind: str, rank: int = PREDICTOR_RANK, epochs: int = 8,
                           seed: int = 0) -> list[Predictor]:
    """One predictor per layer from recorded FFN inputs ``xs`` and activations ``hs``."""
    return [train_predictor(x, h > 0, kind=kind, rank=rank, epochs=epochs, seed=seed + l)
            for l, (x, h) in enumerate(zip(xs, hs))]


def load_predictors(path=PRED_PATH) -> dict[str, list[Predictor]]:
    """``{"lowrank": [per layer], "mlp": [per layer]}`` from ``data/sparse_predictors.pt``.

    A predictor of layer l takes that layer's FFN input LN2(x) (d_model values, *without* the
    bias channel) and ``predict(x, threshold)`` returns int64 neuron indices into the layer's
    ``ffn_bundles`` from :func:`teachkit.sparse.model.lm.export_numpy`.
    """
    p = artifacts.load(path, PRED_KIND, PRED_VERSION)
    return {k: [Predictor.from_payload(q) for q in p[k]] for k in ("lowrank", "mlp")}


def main() -> None:
    torch.set_num_threads(1)
    _, payload = train_lm(LMConfig())
    save_lm(payload)
    model, payload = load_lm()
    xs, hs = record_ffn(model, payload["train_sample"][:N_RECORD])
    preds = {k: train_layer_predictors(xs, hs, k) for k in ("lowrank", "mlp")}
    artifacts.save({k: [p.to_payload() for p in v] for k, v in preds.items()} |
                   {"rank": PREDICTOR_RANK, "n_tokens": len(xs[0])},
                   PRED_PATH, PRED_KIND, PRED_VERSION)
    print(f"wrote {artifacts.path_for('sparse_lm.pt')} and {PRED_PATH}")


if __name__ == "__main__":
    main()
