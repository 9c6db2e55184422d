"""The runner drives the real training loops, on a tiny untrained world built in memory.

No data files are needed: the world is made from seeded, untrained models with T's public
constructors, so these tests check the wiring (budget -> steps, history contract, costs, storage),
not the learning. Each run is one or two optimiser steps.
"""

import pytest
import torch

from teachkit.rlhf import runner
from teachkit.rlhf import showdown_data as sd
from teachkit.rlhf.history import HISTORY_KEYS
from teachkit.toy.pairs import PairSplit, PreferencePairs, low_edit_pairs, pairs_from_samples
from teachkit.toy.reward_model import reward_model_from
from teachkit.toy.sft import new_model
from teachkit.toy.tasks import get_task
from teachkit.toy.world import ToyWorld, frozen


def tiny_world(task_name: str = "arithmetic") -> ToyWorld:
    task = get_task(task_name)
    base, sft = new_model(task, seed=0), new_model(task, seed=1)
    rm = reward_model_from(sft, seed=0)
    g = torch.Generator().manual_seed(0)
    parts = [pairs_from_samples(task, sft, task.sample_prompts(256, g), g)]
    if task_name == "arithmetic":
        parts.append(low_edit_pairs(task, task.sample_prompts(128, g), g))
    pairs = PreferencePairs.cat(parts)
    cut = int(len(pairs) * 0.8)
    return ToyWorld(task=task, config=sft.config, reference=frozen(sft), reward_model=frozen(rm),
                    pairs=PairSplit(pairs[:cut], pairs[cut:]), eval_prompts=task.eval_prompts()[:32],
                    _sft_state={k: v.clone() for k, v in sft.state_dict().items()},
                    _base_state={k: v.clone() for k, v in base.state_dict().items()})


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    return tiny_world()


def small(method):
    spec = runner.METHODS[method]
    import importlib
    cfg = getattr(importlib.import_module(spec.module), spec.config)()
    return runner.Budget(labels=2 * spec.labels_per_step(cfg))


AVAILABLE = [m for m, why in runner.available_methods().items() if why is None]


@pytest.mark.parametrize("method", AVAILABLE)
def test_every_available_method_runs_under_the_budget_and_fills_its_record(world, method):
    spec = runner.METHODS[method]
    budget = small(method)
    rec = runner.run_method(world, method, spec.default_beta, budget, seed=0)
    assert rec["status"] == "ok" and rec["family"] == spec.family and rec["task"] == "arithmetic"
    cfg = rec["config"]
    assert cfg[spec.steps_field] == 2                       # the budget pays for exactly two steps
    assert cfg[spec.beta_field] == spec.default_beta
    c = rec["costs"]
    assert c["labels_used"] <= budget.labels * (1 if spec.family == "on-policy" else budget.pairs_per_query)
    assert c["labels_used"] == 2 * spec.labels_per_step(_cfg(method, cfg))
    if spec.family == "off-policy":
        assert c["samples_generated"] == 0 and c["reward_queries"] == 0
    else:
        assert c["samples_generated"] >= c["reward_queries"] / 2 > 0
    assert c["models_held"] == len(spec.models)
    n_params = world.reference.num_parameters()
    trainable = sum(1 for m in spec.models if m in ("policy", "critic"))
    assert c["trainable_params"] >= trainable * n_params * 0.99
    assert c["optimizer_mb"] > 0 and c["peak_memory_mb"] >= c["resident_mb"] > 0
    h = rec["history"]
    assert set(HISTORY_KEYS) <= set(h) and len({len(v) for v in h.values()}) == 1
    assert rec["final"]["gold_reward"] == h["gold_reward"][-1]


def _cfg(method, scalars):
    import importlib
    spec = runner.METHODS[method]
    cls = getattr(importlib.import_module(spec.module), spec.config)
    fields = {f for f in cls.__dataclass_fields__}
    return cls(**{k: v for k, v in scalars.items() if k in fields})


def test_same_seed_same_record(world):
    method = AVAILABLE[0]
    a = runner.run_method(world, method, runner.METHODS[method].betas[0], small(method), seed=3)
    b = runner.run_method(world, method, runner.METHODS[method].betas[0], small(method), seed=3)
    diff = sd.compare_records(a, b)
    assert max(diff.values()) == 0.0


def test_knobs_reach_the_config_and_unknown_knobs_are_refused(world):
    cfg = runner.make_config("dpop", 0.1, runner.Budget(labels=640), dpop_lambda=5.0)
    assert cfg.lam == 5.0 and cfg.loss == "dpop" and cfg.steps == 10
    with pytest.raises(ValueError, match="no knob"):
        runner.make_config("dpo", 0.1, runner.Budget(labels=640), clip_eps=0.1)
    with pytest.raises(ValueError, match="unknown method"):
        runner.make_config("sac", 0.1, runner.Budget(labels=640))
    with pytest.raises(ValueError, match="beta"):
        runner.make_config("dpo", 0.0, runner.Budget(labels=640))


def test_reference_record_has_zero_kl(world):
    ref = runner.run_reference(world)
    assert ref["kl_to_ref"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= ref["gold_reward"] <= 1.0


def test_build_stores_runs_and_marks_missing_methods(world, tmp_path, monkeypatch):


    real = runner.available_methods()
    monkeypatch.setattr(runner, "available_methods",
                        lambda: {**real, "orpo": "teachkit.rlhf.orpo_train: ImportError: test"})
    budget = runner.Budget(labels=128)
    records, meta = sd.build("arithmetic", methods=["dpo", "orpo"], betas={"dpo": (0.1, 0.3)},
                             lrs={"dpo": (1e-5, 1e-4)}, select_seeds=(0,), test_seeds=(1, 2),
                             budget=budget, verbose=False, world=world)
    assert [(r["method"], r["status"], r.get("phase")) for r in records] == (
        [("dpo", "ok", "select")] * 4 + [("orpo", "missing", None)] + [("dpo", "ok", "test")] * 2)
    assert [(r["beta"], r["config"]["lr"]) for r in records[:4]] == [(0.1, 1e-5), (0.3, 1e-5), (0.1, 1e-4), (0.3, 1e-4)]
    chosen = meta["chosen"]
    assert list(chosen) == ["dpo"] and chosen == sd.choose(records)
    assert all(r["beta"] == chosen["dpo"]["beta"] and r["config"]["lr"] == chosen["dpo"]["lr"] for r in records[5:])
    assert [r["seed"] for r in records[5:]] == [1, 2]
    assert meta["live"] == {"task": "arithmetic", "method": "dpo", "beta": chosen["dpo"]["beta"],
                            "lr": chosen["dpo"]["lr"], "seed": 1}
    assert meta["budget_labels"] == 128 and meta["start"]["kl_to_ref"] == pytest.approx(0.0, abs=1e-6)
    assert meta["select_seeds"] == [0] and meta["test_seeds"] == [1, 2] and meta["lrs"]["dpo"] == [1e-5, 1e-4]
    path = sd.save_runs(records, tmp_path / "showdown_arithmetic.pt", meta)
    back, meta_back = sd.load_runs(path)
    assert back == records and meta_back == meta
    with pytest.raises(ValueError, match="not 'length'"):
        sd.build("length", world=world, verbose=False)


def test_length_task_helpers_count_exact_lengths():


    w = tiny_world("length")
    cov = sd.pair_coverage(w)
    assert sum(cov[f"pairs_k{k}"] for k in range(1, 7)) == len(w.pairs.train)
    assert all(0.0 <= cov[f"chosen_exact_k{k}"] <= 1.0 for k in range(1, 7))
    hits = sd.length_by_target(w, w.reference, n=16)
    assert sorted(hits) == [f"exact_k{k}" for k in range(1, 7)]
    # a hand-made "policy" check: the task's own lengths() agrees with counting letters
    comps, mask = w.task.encode_completions(["aaaaa<eos>", "ab<eos>"])
    assert w.task.lengths(comps, mask).tolist() == [5, 2]
    with pytest.raises(ValueError, match="length task"):
        sd.pair_coverage(tiny_world("arithmetic"))
