"""SFT loss and training, preference-pair construction, and the reward model's initialisation."""

import torch
import torch.nn.functional as F

from teachkit.toy.pairs import PreferencePairs, low_edit_pairs, pairs_from_samples
from teachkit.toy.reward_model import RewardModelConfig, reward_model_from, train_reward_model
from teachkit.toy.sft import SFTConfig, new_model, sft_loss, train_sft
from teachkit.toy.tasks import get_task


def test_sft_loss_is_the_token_mean_cross_entropy_of_completion_tokens():
    task = get_task("arithmetic")
    model = new_model(task, seed=1)
    d = task.demonstrations(8, torch.Generator().manual_seed(0))
    x = torch.cat([d.prompts, d.completions], 1)
    targets = torch.where(d.mask.bool(), d.completions, torch.full_like(d.completions, -100))
    logits = model(x)[:, task.prompt_len - 1:-1]
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(sft_loss(model, d.prompts, d.completions, d.mask), want)


def test_sft_lowers_the_loss_and_is_seeded():
    task = get_task("length")
    d = task.demonstrations(256, torch.Generator().manual_seed(0))
    cfg = SFTConfig(steps=30, batch_size=32)
    a, b = new_model(task, seed=0), new_model(task, seed=0)
    ha, hb = train_sft(a, d, cfg), train_sft(b, d, cfg)
    assert ha["loss"] == hb["loss"]
    assert sum(ha["loss"][-5:]) < sum(ha["loss"][:5])


def test_new_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    new_model(get_task(), seed=7)
    torch.testing.assert_close(torch.rand(3), want)


def test_sampled_pairs_drop_ties_and_prefer_the_higher_gold_reward():
    task = get_task("length")
    model = new_model(task, seed=0)
    prompts = task.sample_prompts(64, torch.Generator().manual_seed(0))
    pairs = pairs_from_samples(task, model, prompts, torch.Generator().manual_seed(1))
    assert 0 < len(pairs) <= 64
    assert (pairs.chosen_gold > pairs.rejected_gold).all() and not pairs.low_edit.any()


def test_low_edit_pairs_put_the_right_answer_first():
    task = get_task("arithmetic")
    prompts = task.all_prompts()
    pairs = low_edit_pairs(task, prompts, torch.Generator().manual_seed(0))
    torch.testing.assert_close(task.gold_reward(prompts, pairs.chosen, pairs.chosen_mask), torch.ones(100))
    torch.testing.assert_close(task.gold_reward(prompts, pairs.rejected, pairs.rejected_mask), torch.zeros(100))
    both = PreferencePairs.cat([pairs, pairs[:10]])
    assert len(both) == 110 and len(both[both.low_edit]) == 110


def test_reward_model_starts_from_the_policy_and_learns_separable_pairs():
    task = get_task("length")
    policy = new_model(task, seed=0)
    rm = reward_model_from(policy)
    x = task.all_prompts()
    torch.testing.assert_close(rm(x), policy(x))
    n = 64  # target length 1: "a" beats any longer string
    prompts = task.prompts_for(torch.ones(n, dtype=torch.long))
    chosen, chosen_mask = task.encode_completions(["a<eos>"] * n)
    rejected, rejected_mask = task.encode_completions(["ab" * (i % 3) + "aaa<eos>" for i in range(n)])
    pairs = PreferencePairs(prompts, chosen, chosen_mask, rejected, rejected_mask, torch.ones(n),
                            torch.zeros(n), torch.zeros(n, dtype=torch.bool))
    hist = train_reward_model(rm, pairs, RewardModelConfig(steps=40, batch_size=32, lr=1e-3, eval_every=20))
    assert hist["train_accuracy"][-1] == 1.0 and hist["loss"][-1] < 0.3


def test_toy_losses_are_rlhf_s_to_the_bit():
    """toy sits below rlhf, so SFT and the reward model compute their losses themselves: they must
    equal ``rlhf.masked_mean`` and ``rlhf.bradley_terry_loss`` exactly."""
    from teachkit.rlhf import bradley_terry_loss, masked_mean
    from teachkit.toy.generate import completion_logprobs
    from teachkit.toy.reward_model import sequence_rewards

    task = get_task("arithmetic")
    model = new_model(task, seed=1)
    d = task.demonstrations(8, torch.Generator().manual_seed(0))
    logp = completion_logprobs(model, d.prompts, d.completions, d.mask)
    assert torch.equal(sft_loss(model, d.prompts, d.completions, d.mask), -masked_mean(logp, d.mask))

    pairs = low_edit_pairs(task, task.all_prompts(), torch.Generator().manual_seed(0))
    rm = reward_model_from(model)
    cfg = RewardModelConfig(steps=1, batch_size=16, eval_every=1)
    batch = pairs[torch.randint(0, len(pairs), (cfg.batch_size,), generator=torch.Generator().manual_seed(cfg.seed))]
    rm.train()
    want = bradley_terry_loss(sequence_rewards(rm, batch.prompts, batch.chosen, batch.chosen_mask),
                              sequence_rewards(rm, batch.prompts, batch.rejected, batch.rejected_mask)).item()
    assert train_reward_model(rm, pairs, cfg)["loss"] == [want]
