"""The stored toy world: contract, reward-model quality, evaluation, and data-file validation."""

import shutil

import pytest
import torch

import teachkit.toy.build_data as build_data
import teachkit.toy.world as world_mod
from teachkit.artifacts import ArtifactError
from teachkit.toy.evaluate import evaluate_policy
from teachkit.toy.generate import completion_logprobs, generate
from teachkit.toy.reward_model import pair_accuracy, sequence_rewards
from teachkit.toy.world import load_world

# Thresholds this world promises (checked on the stored files, recomputed here, not read back):
RM_HELDOUT_ACCURACY = {"arithmetic": 0.85, "length": 0.90}
SFT_GOLD_RANGE = {"arithmetic": (0.45, 0.75), "length": (0.55, 0.80)}


@pytest.fixture(scope="module", params=["arithmetic", "length"])
def world(request):
    return load_world(request.param)


def test_reward_model_accuracy_on_held_out_pairs_is_above_threshold(world):
    acc = pair_accuracy(world.reward_model, world.pairs.heldout)
    assert acc >= RM_HELDOUT_ACCURACY[world.task.name]
    assert len(world.pairs.heldout) >= 100


def test_sft_policy_is_decent_but_clearly_suboptimal(world):
    lo, hi = SFT_GOLD_RANGE[world.task.name]
    stats = evaluate_policy(world, world.new_policy())
    assert lo < stats["gold_reward"] < hi
    assert stats["kl_to_ref"] == pytest.approx(0.0, abs=1e-5)
    assert stats["eos_rate"] > 0.95
    assert set(stats) >= {"gold_reward", "proxy_reward", "kl_to_ref", "mean_length"}


def test_policy_copies_are_trainable_and_the_reference_is_frozen(world):
    policy = world.new_policy()
    assert all(p.requires_grad for p in policy.parameters())
    assert not any(p.requires_grad for p in world.reference.parameters())
    assert not any(p.requires_grad for p in world.reward_model.parameters())
    x = world.eval_prompts[:8]
    torch.testing.assert_close(policy(x), world.reference(x))
    critic = world.new_policy(value_head=True)
    assert critic.values(x).shape == x.shape
    with torch.no_grad():
        policy.tok_emb.weight.add_(1.0)  # editing a copy leaves the world untouched
    assert torch.allclose(world.new_policy()(x), world.reference(x))


def test_base_model_is_untrained_and_far_from_the_reference(world):
    stats = evaluate_policy(world, world.new_base_model())
    assert stats["gold_reward"] < 0.2 and stats["kl_to_ref"] > 5.0


def test_pairs_are_labelled_by_the_gold_reward(world):
    for pairs in (world.pairs.train, world.pairs.heldout):
        assert (pairs.chosen_gold > pairs.rejected_gold).all()
        gold_c = world.gold_reward(pairs.prompts, pairs.chosen, pairs.chosen_mask)
        gold_r = world.gold_reward(pairs.prompts, pairs.rejected, pairs.rejected_mask)
        torch.testing.assert_close(gold_c, pairs.chosen_gold)
        torch.testing.assert_close(gold_r, pairs.rejected_gold)


def test_arithmetic_has_low_edit_pairs_one_token_apart():
    pairs = load_world("arithmetic").pairs.train
    low = pairs[pairs.low_edit]
    assert len(low) > 50
    one_token = ((low.chosen != low.rejected).sum(1) == 1).float().mean()
    assert one_token > 0.8


def test_proxy_reward_ignores_padding_after_eos(world):
    r = generate(world.reference, world.eval_prompts[:16], world.task.max_new_tokens,
                 generator=torch.Generator().manual_seed(0))
    garbage = torch.where(r.mask.bool(), r.completions, torch.full_like(r.completions, 3))
    torch.testing.assert_close(world.proxy_reward(r.prompts, r.completions, r.mask),
                               world.proxy_reward(r.prompts, garbage, r.mask))
    assert world.proxy_reward(r.prompts, r.completions, r.mask).shape == (16,)


def test_evaluate_is_seeded_and_kl_grows_when_the_policy_moves(world):
    policy = world.new_policy()
    assert evaluate_policy(world, policy, seed=3) == evaluate_policy(world, policy, seed=3)
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    r = generate(policy, world.eval_prompts[:32], world.task.max_new_tokens,
                 generator=torch.Generator().manual_seed(0))
    (-completion_logprobs(policy, r.prompts, r.completions, r.mask).sum()).backward()
    opt.step()
    assert evaluate_policy(world, policy)["kl_to_ref"] > 0.01


def _copy_data(tmp_path, monkeypatch, task="arithmetic"):
    for what in ("policy", "reward", "pairs"):
        shutil.copy(world_mod.data_path(task, what), tmp_path / f"toy_{task}_{what}.pt")
    monkeypatch.setattr(world_mod, "data_path", lambda t, what: tmp_path / f"toy_{t}_{what}.pt")
    return tmp_path / f"toy_{task}_policy.pt"


def test_truncated_data_file_gives_a_clear_error(tmp_path, monkeypatch):
    path = _copy_data(tmp_path, monkeypatch)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="make data"):
        load_world("arithmetic")


def test_corrupt_data_file_gives_a_clear_error(tmp_path, monkeypatch):
    path = _copy_data(tmp_path, monkeypatch)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # flip one byte inside the weights
    path.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="(corrupt|checksum).*make data"):
        load_world("arithmetic")


def test_missing_and_mislabelled_files_give_clear_errors(tmp_path, monkeypatch):
    path = _copy_data(tmp_path, monkeypatch)
    for what in ("policy", "reward", "pairs"):  # arithmetic files under the length task's names
        shutil.copy(tmp_path / f"toy_arithmetic_{what}.pt", tmp_path / f"toy_length_{what}.pt")
    with pytest.raises(ArtifactError, match="built for task 'arithmetic'"):
        load_world("length")
    path.unlink()
    with pytest.raises(ArtifactError, match="missing.*make data"):
        load_world("arithmetic")


def test_build_is_deterministic(tmp_path, monkeypatch):
    cfg = build_data.BuildConfig()
    cfg.sft.n_demos, cfg.sft.steps, cfg.sft.batch_size = 64, 3, 16
    cfg.n_pair_prompts, cfg.reward.steps, cfg.reward.batch_size = 60, 3, 16
    blobs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        monkeypatch.setattr(build_data, "data_path", lambda t, what, d=tmp_path / run: d / f"{t}_{what}.pt")
        build_data.build_task("arithmetic", cfg, verbose=False)
        blobs.append([(tmp_path / run / f"arithmetic_{w}.pt").read_bytes() for w in ("policy", "reward", "pairs")])
    assert blobs[0] == blobs[1]


def test_reward_model_scores_the_last_token_under_the_mask(world):
    rm = world.reward_model
    r = generate(world.reference, world.eval_prompts[:4], world.task.max_new_tokens,
                 generator=torch.Generator().manual_seed(1))
    x = torch.cat([r.prompts, r.completions], 1)
    last = r.prompts.shape[1] - 1 + r.mask.sum(1).long()
    want = rm.values(x)[torch.arange(4), last]
    torch.testing.assert_close(sequence_rewards(rm, r.prompts, r.completions, r.mask), want)
