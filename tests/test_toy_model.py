"""The tiny GPT: shapes, causality, the KV cache, the value head and the FFN-activation hook."""

import pytest
import torch

from teachkit.toy.model import GPT, GPTConfig


def _model(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=12, d_model=32, d_ff=64, **kw))


def test_logits_shape_and_value_head():
    idx = torch.randint(0, 11, (3, 7))
    assert _model()(idx).shape == (3, 7, 11)
    assert _model(value_head=True).values(idx).shape == (3, 7)
    with pytest.raises(ValueError, match="value head"):
        _model().values(idx)


def test_causal_attention_later_tokens_do_not_change_earlier_logits():
    m = _model()
    idx = torch.randint(0, 11, (2, 8))
    other = idx.clone()
    other[:, 5:] = (other[:, 5:] + 1) % 11
    a, b = m(idx), m(other)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_kv_cache_gives_the_same_logits_as_a_full_forward(activation):
    m = _model(activation=activation)
    idx = torch.randint(0, 11, (2, 9))
    full = m(idx)
    cache = m.new_cache()
    parts = [m(idx[:, :4], cache)] + [m(idx[:, t:t + 1], cache) for t in range(4, 9)]
    assert cache.length == 9
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_mlp_activations_are_post_relu_and_match_a_forward_hook():
    m = _model()
    idx = torch.randint(0, 11, (2, 6))
    acts = m.mlp_activations(idx)
    assert len(acts) == 2 and acts[0].shape == (2, 6, 64)
    assert all((a >= 0).all() for a in acts) and (acts[0] == 0).any()
    seen = []
    handle = m.blocks[1].mlp.act.register_forward_hook(lambda mod, inp, out: seen.append(out))
    m(idx)
    handle.remove()
    torch.testing.assert_close(seen[0], acts[1])
    assert m.blocks[0].mlp.last_activation is None  # recording is switched off again


def test_gelu_activations_can_be_negative():
    acts = _model(activation="gelu").mlp_activations(torch.randint(0, 11, (2, 6)))
    assert (acts[0] < 0).any()


def test_clear_errors_for_bad_input_and_bad_configs():
    m = _model()
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        m(torch.full((1, 3), 11))
    with pytest.raises(TypeError, match="LongTensor"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(vocab_size=5, activation="tanh")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=5, d_model=30, n_head=4)
