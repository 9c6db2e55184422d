"""Toy tasks: tokenizer round trip, gold rewards on hand-written samples, demonstrators."""

import pytest
import torch

from teachkit.toy.tasks import DEFAULT_TASK, get_task


@pytest.mark.parametrize("name", ["arithmetic", "length"])
def test_tokenizer_round_trip(name):
    tok = get_task(name).tokenizer
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        ids = torch.randint(0, tok.vocab_size, (7,), generator=g).tolist()
        assert tok.encode(tok.decode(ids)) == ids
    assert tok.decode(tok.encode("<eos><pad>")) == "<eos><pad>"
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    with pytest.raises(ValueError, match="unknown symbol"):
        tok.encode("?")


def test_default_task_is_arithmetic_and_unknown_names_fail():
    assert DEFAULT_TASK == "arithmetic" and get_task().name == "arithmetic"
    with pytest.raises(ValueError, match="unknown task"):
        get_task("chess")


def _arith(texts, prompt="3+4="):
    t = get_task("arithmetic")
    prompts = torch.tensor([t.tokenizer.encode(prompt)] * len(texts))
    comp, mask = t.encode_completions(texts)
    return t.gold_reward(prompts, comp, mask).tolist()


def test_arithmetic_gold_reward_on_hand_written_answers():
    assert _arith(["7<eos>", "8<eos>", "6<eos>", "07<eos>", "7", "<eos>"]) == [1, 0, 0, 0, 0, 0]
    assert _arith(["12<eos>", "13<eos>", "2<eos>"], prompt="5+7=") == [1, 0, 0]


def test_arithmetic_ignores_tokens_after_the_first_eos():
    t = get_task("arithmetic")
    prompts = torch.tensor([t.tokenizer.encode("3+4=")])
    comp = torch.tensor([t.tokenizer.encode("7<eos>9")])
    assert t.gold_reward(prompts, comp, torch.tensor([[1.0, 1.0, 0.0]])).item() == 1.0


def test_off_by_one_answers_differ_by_one_token():
    t = get_task("arithmetic")
    right, _ = t.completions_for(torch.tensor([14, 7]))
    wrong, _ = t.completions_for(torch.tensor([15, 8]))
    assert ((right != wrong).sum(1) == 1).all()


def test_arithmetic_demonstrator_is_right_about_sixty_percent_of_the_time():
    t = get_task("arithmetic")
    d = t.demonstrations(4000, torch.Generator().manual_seed(0))
    right = t.gold_reward(d.prompts, d.completions, d.mask)
    carry = t.answers(d.prompts) >= 10
    assert 0.55 < right.mean() < 0.65
    assert 0.3 < right[carry].mean() < 0.4 and 0.75 < right[~carry].mean() < 0.85
    assert t.all_prompts().shape == (100, 4)


def test_length_gold_reward_on_hand_written_samples():
    t = get_task("length")
    prompts = torch.tensor([t.tokenizer.encode("3:")] * 6)
    comp, mask = t.encode_completions(["aba<eos>", "ab<eos>", "abab<eos>", "<eos>", "aaa", "a1a<eos>"])
    want = [1.0, 1 - 1 / 6, 1 - 1 / 6, 0.5, 0.0, 0.0]
    torch.testing.assert_close(t.gold_reward(prompts, comp, mask), torch.tensor(want))


def test_length_demonstrator_rarely_writes_long_targets():
    t = get_task("length")
    d = t.demonstrations(6000, torch.Generator().manual_seed(0))
    k, n = t.targets(d.prompts), t.lengths(d.completions, d.mask)
    assert (n >= 1).all()
    assert (n[k == 6] == 6).float().mean() < 0.25
    assert (n[k == 1] == 1).float().mean() > 0.5


def test_show_prints_readable_samples(capsys):
    t = get_task("arithmetic")
    prompts = torch.tensor([t.tokenizer.encode("3+4=")])
    comp, mask = t.encode_completions(["7<eos>"])
    t.show(prompts, comp, mask)
    assert "3+4= → 7<eos>" in capsys.readouterr().out
    with pytest.raises(ValueError, match="prompts must be"):
        t.gold_reward(comp, comp, mask)
