"""The off-policy training loops (DPO/DPOP/IPO/SimPO, TDPO, ORPO) on a tiny in-memory toy world."""

import copy
import math

import pytest
import torch

from teachkit.rlhf.dpo_train import DPOConfig, train_dpo
from teachkit.rlhf.offpolicy import pair_data, pair_forward, pair_mean_logps
from teachkit.rlhf.orpo_train import ORPOConfig, train_orpo
from teachkit.rlhf.tdpo_train import TDPOConfig, train_tdpo
from teachkit.toy.generate import completion_logprobs
from teachkit.toy.model import GPT
from teachkit.toy.pairs import PairSplit, low_edit_pairs
from teachkit.toy.reward_model import reward_model_from
from teachkit.toy.sft import model_config
from teachkit.toy.tasks import get_task
from teachkit.toy.world import ToyWorld

CONTRACT = ["step", "gold_reward", "proxy_reward", "kl_to_ref", "seconds", "samples_generated",
            "reward_queries", "pairs_seen"]
FAST = dict(steps=4, batch_size=8, eval_every=2, eval_greedy=False)


def _model(cfg, seed):
    torch.manual_seed(seed)
    return GPT(cfg)


@pytest.fixture(scope="module")
def world():
    """A 1-layer world built in memory: random 'SFT' weights, low-edit pairs, half relabelled as sampled."""
    task = get_task("arithmetic")
    cfg = model_config(task, n_layer=1, n_head=2, d_model=16, d_ff=32)
    sft, base = _model(cfg, 0), _model(cfg, 1)
    g = torch.Generator().manual_seed(0)
    pairs = low_edit_pairs(task, task.sample_prompts(60, g), g)
    pairs.low_edit[::2] = False
    reference = copy.deepcopy(sft).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    rm = reward_model_from(sft).eval()
    return ToyWorld(task=task, config=cfg, reference=reference, reward_model=rm,
                    pairs=PairSplit(pairs[:48], pairs[48:]), eval_prompts=task.all_prompts()[::5],
                    _sft_state=copy.deepcopy(sft.state_dict()), _base_state=copy.deepcopy(base.state_dict()))


def _same_history(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k != "seconds":
            assert a[k] == b[k], f"history[{k!r}] differs between two runs with the same seed"


def test_dpo_history_contract_and_start_values(world):
    ref_before = copy.deepcopy(world.reference.state_dict())
    _, h = train_dpo(world, DPOConfig(**FAST))
    for k in CONTRACT + ["train_loss", "dpo_loss", "reward_accuracy", "chosen_logratio"]:
        assert k in h and len(h[k]) == 3, k
    assert h["step"] == [0.0, 2.0, 4.0] and h["pairs_seen"] == [0.0, 16.0, 32.0]
    assert h["samples_generated"] == [0.0] * 3 and h["reward_queries"] == [0.0] * 3
    assert h["dpo_loss"][0] == pytest.approx(math.log(2), abs=1e-6)   # π = π_ref at step 0
    assert h["chosen_logratio"][0] == pytest.approx(0.0, abs=1e-6)
    assert h["kl_to_ref"][0] == pytest.approx(0.0, abs=1e-6)
    assert h["train_loss"][0] == pytest.approx(math.log(2), abs=1e-6)   # on every training pair
    assert all(math.isfinite(v) for v in h["train_loss"])
    for k, v in world.reference.state_dict().items():        # the reference is never touched
        assert torch.equal(v, ref_before[k])


def test_dpo_is_deterministic(world):
    p1, h1 = train_dpo(world, DPOConfig(**FAST, seed=3))
    p2, h2 = train_dpo(world, DPOConfig(**FAST, seed=3))
    _same_history(h1, h2)
    for a, b in zip(p1.parameters(), p2.parameters()):
        assert torch.equal(a, b)


def test_dpo_fits_the_training_pairs(world):
    _, h = train_dpo(world, DPOConfig(steps=30, batch_size=16, eval_every=30, lr=3e-3, beta=0.5,
                                      monitor="train", eval_greedy=False))
    assert h["dpo_loss"][-1] < math.log(2) - 0.05
    assert h["reward_accuracy"][-1] > 0.6


def _params_close(a, b):
    return all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.parameters(), b.parameters()))


def test_dpop_with_lambda_zero_and_tdpo_reductions_train_exactly_like_dpo(world):
    dpo, _ = train_dpo(world, DPOConfig(**FAST, lr=1e-3))
    dpop0, _ = train_dpo(world, DPOConfig(**FAST, lr=1e-3, loss="dpop", lam=0.0))
    tdpo0, _ = train_tdpo(world, TDPOConfig(**FAST, lr=1e-3, variant=0))
    tdpo2_a0, _ = train_tdpo(world, TDPOConfig(**FAST, lr=1e-3, variant=2, alpha=0.0))
    tdpo1, _ = train_tdpo(world, TDPOConfig(**FAST, lr=1e-3, variant=1))
    assert _params_close(dpo, dpop0) and _params_close(dpo, tdpo0) and _params_close(dpo, tdpo2_a0)
    assert not _params_close(dpo, tdpo1)  # TDPO1 differs once the sequential KLs are non-zero


def test_dpop_with_penalty_differs_from_dpo(world):
    dpo, _ = train_dpo(world, DPOConfig(**FAST, lr=1e-2))
    dpop, _ = train_dpo(world, DPOConfig(**FAST, lr=1e-2, loss="dpop", lam=50.0))
    assert not _params_close(dpo, dpop)


@pytest.mark.parametrize("loss", ["ipo", "simpo"])
def test_ipo_and_simpo_train(world, loss):
    _, h = train_dpo(world, DPOConfig(**FAST, loss=loss))
    assert all(math.isfinite(v) for v in h["train_loss"][1:])


def test_tdpo_logs_sequential_kls_starting_at_zero(world):
    _, h = train_tdpo(world, TDPOConfig(**FAST, lr=1e-2))
    assert h["seq_kl_chosen"][0] == pytest.approx(0.0, abs=1e-6)
    assert h["seq_kl_rejected"][0] == pytest.approx(0.0, abs=1e-6)
    assert h["seq_kl_rejected"][-1] > 0 and h["seq_kl_chosen"][-1] > 0


def test_orpo_starts_from_the_base_model_and_needs_no_reference(world):
    sft = world.new_policy()
    base = world.new_base_model()
    policy, h = train_orpo(world, ORPOConfig(**FAST, lr=1e-2))
    for k in CONTRACT + ["nll", "log_odds_ratio", "odds_accuracy"]:
        assert k in h and len(h[k]) == 3, k
    want_nll = -pair_mean_logps(base, pair_data(world, "heldout", reference=False))[0].mean().item()
    assert h["nll"][0] == pytest.approx(want_nll, rel=1e-5)            # step 0 is the base model
    assert not _params_close(policy, base) and not _params_close(policy, sft)
    assert pair_data(world, "train", reference=False).ref_chosen_logps is None
    assert h["nll"][-1] < h["nll"][0]


def test_pair_forward_matches_completion_logprobs(world):
    d = pair_data(world, "train")
    c, r, lc, lr = pair_forward(world.reference, d.prompts, d.chosen, d.chosen_mask, d.rejected, d.rejected_mask)
    want_c = completion_logprobs(world.reference, d.prompts, d.chosen, d.chosen_mask).sum(1)
    want_r = completion_logprobs(world.reference, d.prompts, d.rejected, d.rejected_mask).sum(1)
    assert torch.allclose(c, want_c, atol=1e-5) and torch.allclose(r, want_r, atol=1e-5)
    assert lc.shape == (len(d), d.chosen.shape[1], world.task.tokenizer.vocab_size)


def test_pair_subsets(world):
    low, sampled, every = (pair_data(world, "train", s) for s in ("low_edit", "sampled", "all"))
    assert len(low) + len(sampled) == len(every) == 48
    with pytest.raises(ValueError, match="split"):
        pair_data(world, "test")
    with pytest.raises(ValueError, match="subset"):
        pair_data(world, "train", "best")


def test_config_errors():
    with pytest.raises(ValueError, match="loss"):
        DPOConfig(loss="kto")
    with pytest.raises(ValueError, match="variant"):
        TDPOConfig(variant=3)
    with pytest.raises(ValueError, match="lam"):
        ORPOConfig(lam=-1.0)
    with pytest.raises(ValueError, match="pairs"):
        DPOConfig(pairs="best")
    with pytest.raises(ValueError, match="dpop_form"):
        DPOConfig(loss="dpop", dpop_form="inside")
    with pytest.raises(ValueError, match="monitor"):
        TDPOConfig(monitor="test")
    with pytest.raises(ValueError, match="steps"):
        ORPOConfig(steps=0)
