"""The TRL benchmark times teachkit's real steps, and writes what it promises."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import torch

from teachkit.bridge.bench import BenchConfig, dpo_step, grpo_step, main
from teachkit.rlhf.dpo_train import DPOConfig, train_dpo
from teachkit.rlhf.grpo_train import GRPOConfig, train_grpo
from teachkit.rlhf.offpolicy import pair_data
from teachkit.toy import load_world


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_grpo_step_is_train_grpo_s_step():
    world = load_world()
    cfg = BenchConfig(prompts=4, group_size=4, seed=3)
    want, _ = train_grpo(world, GRPOConfig(steps=1, prompts_per_step=4, group_size=4, reward="gold", seed=3))
    torch.manual_seed(3)
    policy = world.new_policy()
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    grpo_step(world, policy, world.reference, opt, cfg, torch.Generator().manual_seed(3))
    assert _same_weights(policy, want)
    assert not _same_weights(policy, world.new_policy())


def test_dpo_step_is_train_dpo_s_step():
    world = load_world()
    want, _ = train_dpo(world, DPOConfig(steps=1, eval_every=1, eval_greedy=False, seed=2))
    policy = world.new_policy()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.0)
    dpo_step(policy, opt, pair_data(world, "train").sample(64, torch.Generator().manual_seed(2)))
    assert _same_weights(policy, want)


def test_bench_writes_medians_ratio_and_floors(tmp_path):
    out = tmp_path / "bench.json"
    main(["--rounds", "1", "--warmup", "0", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["versions"]["trl"]
    for kind in ("grpo", "dpo"):
        r = result[kind]
        assert r["teachkit_s"] > 0 and r["trl_s"] > 0 and r["floor_toy_s"] > 0 and r["floor_gpt2_s"] > 0
        assert r["ratio_trl_over_teachkit"] == r["trl_s"] / r["teachkit_s"]
        shared = {"grpo_toy_shared"} if kind == "grpo" else set()
        assert set(r["rounds_s"]) == {"teachkit", "trl", f"{kind}_toy", f"{kind}_gpt2"} | shared
    assert result["grpo"]["floor_toy_shared_s"] > 0 and "floor_toy_shared_s" not in result["dpo"]
