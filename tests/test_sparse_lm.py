"""The stdlib ReLU LM: corpus, tokenizer, recording, masked perplexity, numpy export."""

import numpy as np
import pytest
import torch

from teachkit.artifacts import ArtifactError
from teachkit.sparse.model.lm import (LMConfig, decode, encode, export_numpy, load_lm, numpy_ffn, perplexity,
    record_ffn, save_lm, stdlib_corpus, train_lm)

TINY = LMConfig(d_model=32, n_layer=2, n_head=2, d_ff=64, block_size=32, batch_size=4, steps=3,
                corpus_bytes=120_000)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return train_lm(TINY, log=lambda s: None)


def test_corpus_is_real_python_and_deterministic():
    a_train, a_held, names = stdlib_corpus(120_000)
    b_train, b_held, _ = stdlib_corpus(120_000)
    assert a_train == b_train and a_held == b_held
    assert b"def " in a_train and len(a_held) > 0 and "topics.py" in names


def test_encode_decode_roundtrip():
    ids = encode("héllo\n")
    assert ids.dtype == torch.long and ids.max() < 256 and len(ids) == 7    # é is two bytes
    assert decode(ids) == "héllo\n"


def test_record_and_masked_perplexity(tiny):
    model, payload = tiny
    tokens = payload["held_out"][:256]
    xs, hs = record_ffn(model, tokens)
    assert len(xs) == 2 and xs[0].shape == (256, 32) and hs[0].shape == (256, 64)
    assert np.all(hs[0] >= 0)
    dense = perplexity(model, tokens)
    keep_all = perplexity(model, tokens, lambda l, x: np.ones((len(x), 64), bool))
    keep_none = perplexity(model, tokens, lambda l, x: np.zeros((len(x), 64), bool))
    assert keep_all == pytest.approx(dense, rel=1e-6)
    assert keep_none != pytest.approx(dense, rel=1e-3)
    with pytest.raises(ValueError, match="at least 32 tokens"):
        record_ffn(model, tokens[:5])


def test_masked_perplexity_selects_so_dropped_nan_cannot_leak(tiny):
    # poison neuron 0 of every FFN with NaN; a mask that drops it must give a finite result
    # (multiplying by the mask would give NaN * 0 = NaN)
    model, payload = tiny
    tokens = payload["held_out"][:256]

    def poison(mod, args, out):
        out = out.clone()
        out[..., 0] = float("nan")
        return out

    def drop_first(layer, x):
        m = np.ones((len(x), 64), bool)
        m[:, 0] = False
        return m

    handles = [b.mlp.act.register_forward_hook(poison) for b in model.blocks]
    try:
        assert np.isnan(perplexity(model, tokens))
        assert np.isfinite(perplexity(model, tokens, drop_first))
    finally:
        for h in handles:
            h.remove()


def test_numpy_export_matches_torch_ffn(tiny):
    model, payload = tiny
    w = export_numpy(model)
    assert w["layers"][0]["ffn_bundles"].shape == (64, 2, 33)          # bias channel: d + 1
    xs, hs = record_ffn(model, payload["held_out"][:64])
    with torch.no_grad():
        want = model.blocks[1].mlp(torch.from_numpy(xs[1][:3])).numpy()
    for t in range(3):
        np.testing.assert_allclose(numpy_ffn(w["layers"][1], xs[1][t]), want[t], rtol=1e-4, atol=1e-5)
        active = np.flatnonzero(hs[1][t] > 0).astype(np.int64)              # oracle active set
        np.testing.assert_allclose(numpy_ffn(w["layers"][1], xs[1][t], active), want[t],
                                   rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip_and_missing_file(tiny, tmp_path):
    model, payload = tiny
    path = save_lm(payload, tmp_path / "lm.pt")
    loaded, p2 = load_lm(path)
    x = payload["held_out"][:32].long().view(1, -1)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ArtifactError, match="make data"):
        load_lm(tmp_path / "missing.pt")


def test_training_is_reproducible(tiny):
    # same seed, same weights up to float rounding (BLAS may round differently with alignment)
    _, payload = tiny
    _, again = train_lm(TINY, log=lambda s: None)
    for k, v in payload["state"].items():
        torch.testing.assert_close(again["state"][k], v, rtol=1e-5, atol=1e-7)
    other = train_lm(LMConfig(**{**TINY.__dict__, "seed": 1}), log=lambda s: None)[1]
    assert not torch.allclose(other["state"]["blocks.0.mlp.fc.weight"],
                              payload["state"]["blocks.0.mlp.fc.weight"])
