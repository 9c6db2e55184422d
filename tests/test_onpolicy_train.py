"""The on-policy training loops and cost accounting: contract keys, determinism, invariants."""

import math

import pytest
import torch

from teachkit.rlhf.costs import StepPeak, cost_summary, model_costs, optimizer_state_bytes
from teachkit.rlhf.grpo_train import GRPOConfig, train_grpo
from teachkit.rlhf.ppo_train import PPOConfig, train_ppo
from teachkit.rlhf.remax_train import ReMaxConfig, gradient_variance, train_remax

CONTRACT = ("step", "gold_reward", "proxy_reward", "kl_to_ref", "seconds", "samples_generated",
            "reward_queries", "pairs_seen")


@pytest.fixture(scope="module")
def world():
    from teachkit.toy.world import load_world
    return load_world()


def _tiny(cls, **kw):
    base = dict(steps=3, eval_every=2, seed=0)
    if cls is PPOConfig:
        base.update(batch_size=8, minibatch_size=4, ppo_epochs=2)
    elif cls is ReMaxConfig:
        base.update(batch_size=8)
    else:
        base.update(prompts_per_step=4, group_size=4)
    base.update(kw)
    return cls(**base)


LOOPS = [(train_ppo, PPOConfig), (train_remax, ReMaxConfig), (train_grpo, GRPOConfig)]


@pytest.mark.parametrize("train,cls", LOOPS, ids=["ppo", "remax", "grpo"])
def test_history_contract_and_counts(world, train, cls):
    cfg = _tiny(cls)
    policy, h = train(world, cfg)
    for k in CONTRACT:
        assert k in h, f"history lacks {k}"
        assert len(h[k]) == len(h["step"])
    assert h["step"] == [0, 2, 3]
    per_step = {PPOConfig: 8, ReMaxConfig: 16, GRPOConfig: 16}[cls]  # ReMax: sample + greedy decode
    assert h["samples_generated"] == [0, 2 * per_step, 3 * per_step]
    assert h["reward_queries"] == h["samples_generated"]
    assert h["pairs_seen"] == [0, 0, 0]
    assert h["kl_to_ref"][0] == 0.0
    assert all(math.isfinite(v) for v in h["gold_reward"] + h["proxy_reward"] + h["kl_to_ref"])
    assert not policy.training


@pytest.mark.parametrize("train,cls", LOOPS, ids=["ppo", "remax", "grpo"])
def test_loops_are_deterministic_and_move_the_policy(world, train, cls):
    p1, h1 = train(world, _tiny(cls))
    p2, h2 = train(world, _tiny(cls))
    for k in ("gold_reward", "proxy_reward", "kl_to_ref"):
        assert h1[k] == h2[k]
    for a, b in zip(p1.parameters(), p2.parameters()):
        assert torch.equal(a, b)
    moved = any(not torch.equal(a, b) for a, b in zip(p1.parameters(), world.reference.parameters()))
    assert moved, "training must change the policy"
    # the world is never edited in place
    assert all(not p.requires_grad for p in world.reference.parameters())


def test_ppo_ratio_is_one_in_the_first_minibatch(world):
    _, h = train_ppo(world, _tiny(PPOConfig, steps=4, eval_every=1))
    devs = [v for v in h["first_ratio_dev"] if not math.isnan(v)]
    assert len(devs) == 4 and max(devs) == 0.0


def test_grpo_loss_is_near_zero_at_first_update_with_beta_zero(world):
    _, h = train_grpo(world, _tiny(GRPOConfig, beta=0.0, num_iterations=1, steps=2, eval_every=1,
                                   aggregation="token-mean"))
    assert all(abs(v) < 0.5 for v in h["loss"][1:])


def test_cost_figures_ppo_holds_a_critic(world):
    _, hp = train_ppo(world, _tiny(PPOConfig, profile_step=2))
    _, hr = train_remax(world, _tiny(ReMaxConfig, profile_step=2))
    n = sum(p.numel() for p in world.new_policy().parameters())
    assert hp["models_held"] == [4.0] and hr["models_held"] == [3.0]
    assert hr["trainable_params"] == [float(n)]
    assert hp["trainable_params"][0] > 1.9 * n  # policy + critic (the critic has a value head)
    # Adam: two float32 moments per trainable parameter, plus a scalar step counter per tensor
    assert hr["optimizer_bytes"][0] >= 8 * n and hr["optimizer_bytes"][0] < 8 * n + 4096
    assert hr["resident_mb"][0] < hp["resident_mb"][0]
    _, hg = train_grpo(world, _tiny(GRPOConfig, profile_step=1))
    assert hg["models_held"] == [3.0] and hg["trainable_params"] == hr["trainable_params"]
    for h in (hp, hr, hg):
        assert h["step_peak_mb"][0] > 0 and h["seconds_per_step"][0] > 0
        assert h["peak_mb"][0] == pytest.approx(h["resident_mb"][0] + h["step_peak_mb"][0])


def test_model_costs_and_step_peak():
    net = torch.nn.Linear(100, 10)
    frozen = torch.nn.Linear(10, 10).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(3, 100)).sum().backward()
    opt.step()
    c = model_costs({"net": net, "frozen": frozen, "again": net}, [opt])
    assert c.models_held == 3 and c.trainable_params == 1010 and c.frozen_params == 110
    assert c.weight_bytes == 4 * 1120 and c.grad_bytes == 4 * 1010
    assert optimizer_state_bytes(opt) == c.optimizer_bytes >= 8 * 1010
    with StepPeak() as peak:
        x = torch.ones(256, 1024)  # 1 MiB
        del x
    assert peak.bytes >= 2 ** 20
    summary = cost_summary(c, peak.bytes, 0.5)
    assert summary["peak_mb"] == pytest.approx(summary["resident_mb"] + summary["step_peak_mb"])


def test_gradient_variance_shift_invariance_of_baselines(world):
    policy = world.new_policy()
    kw = dict(n_prompts=4, group_size=2, repeats=3, seed=0)
    plain = gradient_variance(world, policy, "group", **kw)
    shifted = gradient_variance(world, policy, "group", reward_shift=5.0, **kw)
    assert plain["total_variance"] == pytest.approx(shifted["total_variance"], rel=1e-4)
    none = gradient_variance(world, policy, "none", **kw)
    none_shifted = gradient_variance(world, policy, "none", reward_shift=5.0, **kw)
    assert none_shifted["total_variance"] != pytest.approx(none["total_variance"], rel=1e-2)
    with pytest.raises(ValueError, match="baseline"):
        gradient_variance(world, policy, "critic")


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="multiple"):
        PPOConfig(batch_size=10, minibatch_size=4)
    with pytest.raises(ValueError, match="reward"):
        ReMaxConfig(reward="human")
    with pytest.raises(ValueError, match="aggregation"):
        GRPOConfig(aggregation="sum")
    with pytest.raises(ValueError, match="advantage"):
        GRPOConfig(advantage="ppo")
    with pytest.raises(ValueError, match="beta"):
        GRPOConfig(beta=-1.0)


def test_plots_draw_and_reject_missing_curves():
    import matplotlib
    matplotlib.use("Agg")
    from teachkit import viz

    h = {"step": [0, 10, 20], "gold_reward": [0.5, 0.6, float("nan")], "proxy_reward": [1.0, 2.0, 3.0],
         "kl_to_ref": [0.0, 0.1, 0.2]}
    viz.plot_training_curves(h)
    viz.compare_training_curves({"a": h, "b": h}, keys=("gold_reward", "kl_to_ref"), baselines={"gold_reward": 0.5})
    viz.plot_variance_bars({"none": 3.0, "greedy": 2.0})
    viz.plot_cost_bars({"PPO": {"resident_mb": 1.0, "step_peak_mb": 2.0, "seconds_per_step": 0.1},
                        "ReMax": {"resident_mb": 0.5, "step_peak_mb": 2.5, "seconds_per_step": 0.05}})
    with pytest.raises(ValueError, match="entropy"):
        viz.plot_training_curves(h, keys=("entropy",))
    with pytest.raises(ValueError, match="step"):
        viz.plot_training_curves({"gold_reward": [1.0]})
