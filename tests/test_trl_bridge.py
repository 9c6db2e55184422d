"""teachkit against TRL: the same model in transformers, and TRL's own loss code on teachkit's tensors."""

import inspect
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from teachkit.bridge import from_hf, hf_tokenizer, to_hf
from teachkit.bridge import trl_losses as tl
from teachkit.rlhf import (dpo_loss, grpo_advantages, grpo_loss, kl_k3, orpo_loss, rloo_advantages,
                           sequence_logps)
from teachkit.toy import completion_logprobs, generate, load_world


@pytest.fixture(scope="module")
def world():
    return load_world()


@pytest.fixture(scope="module")
def policy(world):
    return world.new_policy().eval()


def _batch(seed=0, B=16, T=5, G=4):
    """Per-token log-probs with ρ ≠ 1 and a reference that differs, ragged masks, 0/1 rewards in groups of G."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (B,), generator=g)[:, None]).float()
    old = -torch.rand(B, T, generator=g) * 2
    ref = old + 0.1 * torch.randn(B, T, generator=g)
    logp = (old + 0.3 * torch.randn(B, T, generator=g)).requires_grad_()
    rewards = torch.randint(0, 2, (B,), generator=g).float()
    return logp, old, ref, rewards, mask, G


# ----------------------------------------------------------------------------- the model

def test_converted_model_gives_the_same_logits_and_greedy_tokens(world, policy):
    hf = to_hf(policy)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([world.eval_prompts[:32], torch.randint(0, world.config.vocab_size, (32, 3), generator=g)], 1)
    with torch.no_grad():
        diff = (policy(x) - hf(x).logits).abs().max().item()
    assert diff < 1e-5, diff
    prompts = world.eval_prompts[:32]
    ours = generate(policy, prompts, world.task.max_new_tokens, greedy=True)
    theirs = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=world.task.max_new_tokens,
                         do_sample=False)[:, prompts.shape[1]:]
    keep = ours.mask.bool()[:, :theirs.shape[1]]
    assert torch.equal(ours.completions[:, :theirs.shape[1]][keep], theirs[keep])


def test_round_trip_is_exact_and_the_copy_shares_nothing(world, policy):
    hf = to_hf(policy)
    back = from_hf(hf, world.config)
    x = world.eval_prompts[:8]
    assert torch.equal(back(x), policy(x))
    with torch.no_grad():
        hf.transformer.wte.weight.add_(1.0)
    assert not torch.equal(policy.tok_emb.weight, hf.transformer.wte.weight)
    assert torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)  # still tied


def test_a_model_with_a_value_head_is_refused(world):
    with pytest.raises(ValueError, match="value head"):
        to_hf(world.new_policy(value_head=True))


@pytest.mark.parametrize("task", ["arithmetic", "length"])
def test_tokenizer_has_the_toy_ids(task):
    from teachkit.toy import get_task

    t = get_task(task)
    tok = hf_tokenizer(t)
    for row in t.all_prompts():
        text = t.tokenizer.decode(row)
        assert tok(text).input_ids == row.tolist()
    assert tok.pad_token_id == t.tokenizer.pad_id and tok.eos_token_id == t.tokenizer.eos_id
    comp = t.tokenizer.encode(t.tokenizer.symbols[2] + "<eos>")
    assert tok(t.tokenizer.decode(comp)).input_ids == comp


# ----------------------------------------------------------------------------- the losses

@pytest.mark.parametrize("loss_type", tl.GRPO_LOSS_TYPES)
def test_grpo_loss_and_gradient_agree_with_trl(loss_type):
    logp, old, ref, rewards, mask, G = _batch()
    adv = grpo_advantages(rewards, G)
    ours = grpo_loss(logp, old, ref, adv, mask, 0.2, 0.04, tl.TEACHKIT_AGGREGATION[loss_type])
    theirs = tl.trl_grpo_loss(logp, old, ref, adv, mask, loss_type, beta=0.04, epsilon=0.2)
    g1, = torch.autograd.grad(ours, logp)
    g2, = torch.autograd.grad(theirs, logp)
    assert abs(ours.item() - theirs.item()) <= 1e-7
    assert (g1 - g2).abs().max().item() <= 1e-8
    assert g1.abs().max().item() > 1e-3  # a real gradient, not two zeros


def test_trl_default_kl_is_k3_times_the_ratio():
    logp, old, ref, rewards, mask, G = _batch(1)
    adv = grpo_advantages(rewards, G)
    plain = tl.trl_grpo_loss(logp, old, ref, adv, mask, "bnpo", beta=0.04)
    corrected = tl.trl_grpo_loss(logp, old, ref, adv, mask, "bnpo", beta=0.04, use_bias_correction_kl=True)
    assert abs(plain.item() - corrected.item()) > 1e-6
    ratio = torch.exp(logp - old)
    extra = 0.04 * (kl_k3(logp, ref) * (ratio - 1) * mask).sum() / mask.sum()
    assert abs((plain + extra).item() - corrected.item()) < 1e-6


def test_dr_grpo_divides_by_max_completion_length():
    logp, old, ref, rewards, mask, G = _batch(2)
    adv = grpo_advantages(rewards, G, scale=False)
    T = logp.shape[1]
    ours = grpo_loss(logp, old, ref, adv, mask, aggregation="seq-mean-token-sum-norm")
    theirs = tl.trl_grpo_loss(logp, old, ref, adv, mask, "dr_grpo", max_completion_length=T + 3)
    assert abs(ours.item() - theirs.item()) > 1e-6
    assert abs(ours.item() * T / (T + 3) - theirs.item()) < 1e-7


def test_advantages_agree_and_a_tied_group_is_the_one_difference():
    _, _, _, rewards, _, G = _batch(3, B=32)
    # TRL's nanstd rounds differently from torch.std: equal to float32 rounding, not bit for bit
    assert (tl.trl_grpo_advantages(rewards, G) - grpo_advantages(rewards, G)).abs().max() <= 1e-6
    lengthy = torch.randint(0, 7, (32,), generator=torch.Generator().manual_seed(3)).float() / 6
    assert (tl.trl_grpo_advantages(lengthy, G) - grpo_advantages(lengthy, G)).abs().max() <= 1e-6
    assert torch.equal(tl.trl_grpo_advantages(rewards, G, "none"), grpo_advantages(rewards, G, scale=False))
    assert torch.equal(tl.trl_rloo_advantages(rewards, G), rloo_advantages(rewards, G))
    tied = torch.full((8,), 1 - 1 / 6)  # a length-task reward that float32 cannot hold exactly
    theirs = tl.trl_grpo_advantages(tied, 8)
    assert theirs.abs().max().item() > 1e-5 and torch.equal(grpo_advantages(tied, 8), torch.zeros(8))


def test_copied_advantage_lines_are_still_in_the_installed_trl():
    from trl import GRPOTrainer, RLOOTrainer

    for cls, lines in ((GRPOTrainer, tl.GRPO_ADVANTAGE_LINES), (RLOOTrainer, tl.RLOO_ADVANTAGE_LINES)):
        src = inspect.getsource(cls._generate_and_score_completions)
        for line in lines:
            assert line in src, f"{cls.__name__} no longer has: {line}"


def test_rloo_trainer_clips_the_sequence_ratio():
    logp, old, _, rewards, mask, G = _batch(4)
    adv = rloo_advantages(rewards, G)
    theirs = tl.trl_rloo_loss(logp, old, adv, mask, epsilon=0.2)
    token_level = grpo_loss(logp, old, None, adv, mask, 0.2, beta=0.0)
    assert abs(theirs.item() - token_level.item()) > 1e-4
    seq = lambda x: sequence_logps(x, mask)[:, None]  # noqa: E731
    ours = grpo_loss(seq(logp), seq(old), None, adv, torch.ones(len(adv), 1), 0.2, beta=0.0)
    g1, = torch.autograd.grad(ours, logp)
    g2, = torch.autograd.grad(theirs, logp)
    assert abs(ours.item() - theirs.item()) <= 1e-7 and (g1 - g2).abs().max().item() <= 1e-7


def test_dpo_sigmoid_agrees_with_trl():
    g = torch.Generator().manual_seed(5)
    pc, pr, rc, rr = (torch.randn(16, generator=g) * 2 - 6 for _ in range(4))
    pc.requires_grad_()
    ours, theirs = dpo_loss(pc, pr, rc, rr, 0.1), tl.trl_dpo_loss(pc, pr, rc, rr, 0.1)
    g1, = torch.autograd.grad(ours, pc)
    g2, = torch.autograd.grad(theirs, pc)
    assert ours.item() == theirs.item() and torch.equal(g1, g2) and g1.abs().max() > 0


def test_orpo_odds_ratio_term_agrees_and_the_nll_is_over_prompt_and_completion(world, policy):
    pairs = world.pairs.train[:32]
    hf = to_hf(policy)
    c, r, nll = tl.trl_orpo_forward(hf, pairs.prompts, pairs.chosen, pairs.chosen_mask, pairs.rejected,
                                    pairs.rejected_mask)
    with torch.no_grad():
        lc = completion_logprobs(policy, pairs.prompts, pairs.chosen, pairs.chosen_mask)
        lr = completion_logprobs(policy, pairs.prompts, pairs.rejected, pairs.rejected_mask)
    mc, mr = sequence_logps(lc, pairs.chosen_mask, True), sequence_logps(lr, pairs.rejected_mask, True)
    assert (mc - c).abs().max() < 1e-5 and (mr - r).abs().max() < 1e-5
    term = orpo_loss(mc, mr, 0.1) - (-mc.mean())
    assert abs(term.item() - tl.trl_odds_ratio_loss(mc, mr, 0.1).item()) < 1e-6
    assert abs(nll.item() + mc.mean().item()) > 1.0       # not teachkit's completion-only NLL ...
    x = torch.cat([pairs.prompts, torch.where(pairs.chosen_mask.bool(), pairs.chosen, 0)], 1)
    with torch.no_grad():
        lp = torch.log_softmax(policy(x)[:, :-1], -1).gather(-1, x[:, 1:, None]).squeeze(-1)
    m = torch.cat([torch.ones_like(pairs.prompts[:, 1:]).float(), pairs.chosen_mask], 1)
    assert abs(nll.item() - (-(lp * m).sum() / m.sum()).item()) < 1e-5   # ... but the token mean of all


# ----------------------------------------------------------------------------- the trainers' data

def test_gold_reward_function_scores_trl_completions_like_the_task(world, policy):
    from teachkit.bridge.trl_runs import gold_reward_func

    prompts = world.eval_prompts[:64]
    roll = generate(policy, prompts, world.task.max_new_tokens, generator=torch.Generator().manual_seed(0))
    texts = [world.task.tokenizer.decode(p) for p in prompts]
    ids = [c[m.bool()].tolist() for c, m in zip(roll.completions, roll.mask)]
    got = gold_reward_func(world)(prompts=texts, completions=None, completion_ids=ids)
    want = world.gold_reward(roll.prompts, roll.completions, roll.mask)
    assert got == want.tolist() and 0 < sum(got) < len(got)


def test_dpo_trainer_sees_our_token_ids_and_reference_log_probs(world, tmp_path):
    from teachkit.bridge.trl_runs import TRLDPORun, dpo_trainer
    from teachkit.rlhf.offpolicy import pair_data

    ds = dpo_trainer(world, TRLDPORun(steps=1), str(tmp_path)).train_dataset
    pairs, ref = world.pairs.train, pair_data(world, "train")
    assert len(ds) == len(pairs)
    for i in (0, 1, len(ds) - 1):
        assert ds[i]["prompt_ids"] == pairs.prompts[i].tolist()
        assert ds[i]["chosen_ids"] == pairs.chosen[i][pairs.chosen_mask[i].bool()].tolist()
        assert ds[i]["rejected_ids"] == pairs.rejected[i][pairs.rejected_mask[i].bool()].tolist()
    got = torch.tensor([ds["ref_chosen_logps"], ds["ref_rejected_logps"]])
    want = torch.stack([ref.ref_chosen_logps, ref.ref_rejected_logps])
    assert (got - want).abs().max().item() < 1e-4


def test_check_references_are_trl_code():
    from teachkit import check

    logp, old, ref, rewards, mask, G = _batch(6)
    adv = grpo_advantages(rewards, G)
    k3r = check.bias_corrected_k3.reference(logp.detach(), old, ref)
    ours = grpo_loss(logp, old, ref, adv, mask, beta=0.0, aggregation="token-mean") \
        + 0.04 * (k3r * mask).sum() / mask.sum()
    theirs = tl.trl_grpo_loss(logp, old, ref, adv, mask, "bnpo", beta=0.04, use_bias_correction_kl=True)
    assert abs(ours.item() - theirs.item()) < 1e-6
    seq = check.rloo_sequence_loss.reference(logp, old, adv, mask, 0.2)
    assert abs(seq.item() - tl.trl_rloo_loss(logp, old, adv, mask, 0.2).item()) < 1e-7
    policy = load_world().new_policy()
    want = to_hf(policy).state_dict()
    got = check.gpt2_state_dict.reference(policy.state_dict(), policy.config.n_layer)
    assert all(torch.equal(got[k], want[k]) for k in got) and set(want) - set(got) == {"lm_head.weight"}


def test_inside_a_live_grpo_trainer_teachkit_recomputes_trl_s_advantages_and_losses(world, tmp_path):
    from teachkit.bridge.trl_runs import TRLGRPORun, grpo_trainer

    gaps = tl.live_grpo_agreement(grpo_trainer(world, TRLGRPORun(steps=2), str(tmp_path)), world, steps=2)
    assert gaps["calls"] == 4  # 2 generation batches × μ = 2
    assert gaps["advantages"] <= 1e-6 and gaps["loss"] <= 1e-6 and gaps["old_logp"] <= 1e-5, gaps
