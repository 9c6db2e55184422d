"""Generation, EOS masks and the one shift by one in completion_logprobs."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from teachkit.toy.generate import (check_groups, completion_logits, completion_logprobs, eos_mask, generate,
                                   sequence_logprob)
from teachkit.toy.model import GPT, GPTConfig

EOS, PAD = 1, 0


def _model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=9, block_size=14, d_model=32, d_ff=64))


def test_eos_mask_keeps_the_first_eos_and_drops_what_follows():
    comp = torch.tensor([[3, 1, 4, 1], [1, 0, 0, 0], [3, 3, 3, 3], [2, 2, 2, 1]])
    want = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]).float()
    assert torch.equal(eos_mask(comp, EOS), want)


@pytest.mark.parametrize("greedy", [True, False])
def test_kv_cache_generation_gives_the_same_tokens_as_without_cache(greedy):
    m = _model()
    prompts = torch.randint(2, 9, (16, 3), generator=torch.Generator().manual_seed(1))
    with_cache = generate(m, prompts, 8, greedy=greedy, generator=torch.Generator().manual_seed(7))
    without = generate(m, prompts, 8, greedy=greedy, generator=torch.Generator().manual_seed(7),
                       use_cache=False)
    assert torch.equal(with_cache.completions, without.completions)
    assert torch.equal(with_cache.mask, without.mask)


def test_generation_pads_after_eos_and_is_seeded():
    m = _model(3)
    prompts = torch.randint(2, 9, (64, 3), generator=torch.Generator().manual_seed(0))
    a = generate(m, prompts, 6, generator=torch.Generator().manual_seed(5), temperature=2.0)
    b = generate(m, prompts, 6, generator=torch.Generator().manual_seed(5), temperature=2.0)
    assert torch.equal(a.completions, b.completions)
    assert a.completions.shape == (64, 6)
    assert torch.equal(a.mask, eos_mask(a.completions, EOS))
    after = ~a.mask.bool()
    assert after.any() and (a.completions[after] == PAD).all()
    assert torch.equal(a.lengths, a.mask.sum(1))


def test_greedy_picks_the_most_likely_token_at_every_step():
    m = _model()
    prompts = torch.randint(2, 9, (8, 3), generator=torch.Generator().manual_seed(2))
    r = generate(m, prompts, 1, greedy=True)
    logits = m(prompts)[:, -1]
    assert torch.equal(r.completions[:, 0], logits.argmax(-1))


def test_completion_logprobs_equal_minus_cross_entropy_of_the_shifted_sequence():
    m = _model()
    g = torch.Generator().manual_seed(0)
    prompts, comp = torch.randint(0, 9, (4, 3), generator=g), torch.randint(0, 9, (4, 5), generator=g)
    x = torch.cat([prompts, comp], 1)
    logits = m(x)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, 9), x[:, 1:].reshape(-1), reduction="none").view(4, 7)
    torch.testing.assert_close(completion_logprobs(m, prompts, comp), -ce[:, 2:])


class _NextIsPlusOne(nn.Module):
    """A fake model certain that the next token is the current one + 1 (mod V)."""

    def forward(self, idx, cache=None):
        return F.one_hot((idx + 1) % 9, 9).float() * 50.0


def test_the_shift_by_one_is_in_the_right_direction():
    prompts = torch.tensor([[2, 3]])
    right = torch.tensor([[4, 5, 6]])
    assert completion_logprobs(_NextIsPlusOne(), prompts, right).max() > -1e-6
    jump = completion_logprobs(_NextIsPlusOne(), prompts, torch.tensor([[5, 6, 7]]))
    assert jump[0, 0] < -40 and jump[0, 1:].min() > -1e-6  # only 3 -> 5 is a surprise


def test_padding_under_mask_zero_never_leaks():
    m = _model()
    prompts = torch.tensor([[2, 3, 4], [5, 6, 7]])
    comp = torch.tensor([[5, 1, -100, 99], [3, 3, 1, -7]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    lp = completion_logprobs(m, prompts, comp, mask)
    assert torch.isfinite(lp).all() and (lp[~mask.bool()] == 0).all()
    clean = torch.where(mask.bool(), comp, torch.zeros_like(comp))
    torch.testing.assert_close(lp[mask.bool()], completion_logprobs(m, prompts, clean)[mask.bool()])
    sequence_logprob(m, prompts, comp, mask).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_temperature_divides_the_logits():
    m = _model()
    prompts, comp = torch.tensor([[2, 3]]), torch.tensor([[4, 5]])
    logits = m(torch.cat([prompts, comp], 1))[:, 1:3] / 2.0
    want = torch.log_softmax(logits, -1).gather(-1, comp[..., None]).squeeze(-1)
    torch.testing.assert_close(completion_logprobs(m, prompts, comp, temperature=2.0), want)


def test_bad_input_gives_clear_errors():
    m = _model()
    with pytest.raises(TypeError, match="LongTensor"):
        generate(m, torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="temperature"):
        generate(m, torch.zeros(2, 3, dtype=torch.long), 4, temperature=0.0)
    with pytest.raises(ValueError, match="batch size"):
        completion_logprobs(m, torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape of completions"):
        completion_logprobs(m, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long),
                            torch.ones(2, 3))


def _grouped(n_prompts=6, G=4, P=3, seed=1):
    prompts = torch.randint(2, 9, (n_prompts, P), generator=torch.Generator().manual_seed(seed))
    return prompts.repeat_interleave(G, dim=0), G


@pytest.mark.parametrize("T", [1, 2, 6])
def test_shared_prompt_logits_and_gradients_match_the_plain_forward(T):
    m = _model(2)
    prompts, G = _grouped()
    comp = torch.randint(0, 9, (prompts.shape[0], T), generator=torch.Generator().manual_seed(3))
    plain = completion_logits(m, prompts, comp)
    grads_plain = torch.autograd.grad(plain.log_softmax(-1).square().sum(), list(m.parameters()))
    shared = completion_logits(m, prompts, comp, group_size=G)
    grads_shared = torch.autograd.grad(shared.log_softmax(-1).square().sum(), list(m.parameters()))
    assert shared.shape == plain.shape
    torch.testing.assert_close(shared, plain, rtol=0, atol=1e-5)
    for a, b in zip(grads_shared, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_shared_prompt_runs_fewer_positions():
    m = _model(2)
    prompts, G = _grouped(n_prompts=6, G=4, P=3)
    comp = torch.randint(0, 9, (24, 5), generator=torch.Generator().manual_seed(3))
    seen = []
    hook = m.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(out.shape[0] * out.shape[1]))
    completion_logits(m, prompts, comp)
    plain, seen[:] = sum(seen), []
    completion_logits(m, prompts, comp, group_size=G)
    hook.remove()
    assert plain == 24 * (3 + 5) and sum(seen) == 6 * 3 + 24 * (5 - 1)


@pytest.mark.parametrize("greedy", [True, False])
def test_grouped_generation_gives_the_same_tokens(greedy):
    m = _model()
    prompts, G = _grouped(n_prompts=8, G=4)
    plain = generate(m, prompts, 8, greedy=greedy, generator=torch.Generator().manual_seed(7))
    shared = generate(m, prompts, 8, greedy=greedy, generator=torch.Generator().manual_seed(7), group_size=G)
    assert torch.equal(shared.completions, plain.completions)
    assert torch.equal(shared.mask, plain.mask)


def test_groups_are_checked():
    m = _model()
    prompts, G = _grouped(n_prompts=3, G=2)
    assert check_groups(prompts, G) == G and check_groups(prompts[:5], 1) == 1
    with pytest.raises(ValueError, match="whole number of groups"):
        check_groups(prompts[:5], G)
    mixed = prompts.clone()
    mixed[1, 0] = (mixed[1, 0] + 1) % 9
    with pytest.raises(ValueError, match="rows differ within a group"):
        completion_logits(m, mixed, torch.zeros(6, 2, dtype=torch.long), group_size=G)
    with pytest.raises(ValueError, match="group_size must be"):
        check_groups(prompts, 0)
    with pytest.raises(ValueError, match="use_cache"):
        generate(m, prompts, 3, group_size=G, use_cache=False)
