"""Build the toy world's data files, deterministically: ``make data`` runs :func:`main`.

For each task (``arithmetic``, then ``length``):

1. draw a demonstration corpus from the task's imperfect demonstrator;
2. initialise the base model (seeded) and train SFT on the corpus → the reference policy;
3. sample two completions per prompt from SFT, label them with the gold reward (ties dropped),
   add low-edit pairs (arithmetic), shuffle, split 80% train / 20% held-out;
4. train the Bradley–Terry reward model (initialised from SFT) on the training pairs;
5. save ``data/toy_<task>_{policy,reward,pairs}.pt`` with metrics (no timings: the bytes depend
   only on the seeds, the code and the torch build).

    python -m teachkit.toy.build_data               # both tasks
    python -m teachkit.toy.build_data length        # one task
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from .. import artifacts
from .generate import generate
from .pairs import PairSplit, PreferencePairs, low_edit_pairs, pairs_from_samples
from .reward_model import (RewardModelConfig, pair_accuracy, pearson, reward_model_from,
                           sequence_rewards, train_reward_model)
from .sft import SFTConfig, new_model, train_sft
from .tasks import TASKS, Task, get_task
from .world import DATA_VERSION, KINDS, data_path

__all__ = ["BuildConfig", "build_task", "main"]


@dataclass
class BuildConfig:
    seed: int = 0
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(n_demos=4096, steps=600, batch_size=128, lr=3e-3))
    n_pair_prompts: int = 1000        # prompts for sampled pairs (about half survive the tie filter)
    low_edit_fraction: float = 0.25   # arithmetic: low-edit pairs per pair prompt
    heldout_fraction: float = 0.2
    reward: RewardModelConfig = field(default_factory=lambda: RewardModelConfig(steps=300, lr=3e-4))


def _plain(state: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _no_timings(history: dict) -> dict:
    return {k: [float(x) for x in v] for k, v in history.items() if k != "seconds"}


@torch.no_grad()
def _gold(task: Task, policy, greedy: bool, seed: int) -> float:
    r = generate(policy, task.eval_prompts(), task.max_new_tokens, greedy=greedy,
                 generator=torch.Generator().manual_seed(seed))
    return task.gold_reward(r.prompts, r.completions, r.mask).mean().item()


def _unseen(train: PreferencePairs, heldout: PreferencePairs) -> torch.Tensor:
    """Held-out pairs whose (prompt, chosen, rejected) never occurs among the training pairs."""
    key = lambda p, i: (tuple(p.prompts[i].tolist()), tuple(p.chosen[i].tolist()),  # noqa: E731
                        tuple(p.rejected[i].tolist()))
    seen = {key(train, i) for i in range(len(train))}
    return torch.tensor([key(heldout, i) not in seen for i in range(len(heldout))], dtype=torch.bool)


def build_task(name: str, cfg: BuildConfig = BuildConfig(), verbose: bool = True) -> dict:
    """Build and save the three files of one task; returns the metrics (timings included)."""
    say = print if verbose else (lambda *a, **k: None)
    task = get_task(name)
    g = torch.Generator().manual_seed(cfg.seed)

    demos = task.demonstrations(cfg.sft.n_demos, g)
    base = new_model(task, seed=cfg.seed)
    base_state = _plain(base.state_dict())
    policy = new_model(task, seed=cfg.seed)
    start = time.perf_counter()
    sft_history = train_sft(policy, demos, cfg.sft)
    sft_seconds = time.perf_counter() - start
    sft_metrics = {
        "demo_gold_reward": task.gold_reward(demos.prompts, demos.completions, demos.mask).mean().item(),
        "gold_reward": _gold(task, policy, greedy=False, seed=cfg.seed),
        "greedy_gold_reward": _gold(task, policy, greedy=True, seed=cfg.seed),
        "final_loss": sum(sft_history["loss"][-20:]) / len(sft_history["loss"][-20:]),
        "steps": float(cfg.sft.steps),
    }
    say(f"  {name}: SFT {cfg.sft.steps} steps in {sft_seconds:.1f} s; gold reward "
        f"{sft_metrics['gold_reward']:.3f} sampled, {sft_metrics['greedy_gold_reward']:.3f} greedy "
        f"(demonstrations {sft_metrics['demo_gold_reward']:.3f})")

    pair_prompts = task.sample_prompts(cfg.n_pair_prompts, g)
    parts = [pairs_from_samples(task, policy, pair_prompts, g)]
    if name == "arithmetic":
        n_low = int(cfg.n_pair_prompts * cfg.low_edit_fraction)
        parts.append(low_edit_pairs(task, task.sample_prompts(n_low, g), g))
    pairs = PreferencePairs.cat(parts)
    pairs = pairs[torch.randperm(len(pairs), generator=g)]
    cut = int(round(len(pairs) * (1 - cfg.heldout_fraction)))
    split = PairSplit(pairs[:cut], pairs[cut:])

    rm = reward_model_from(policy, seed=cfg.seed)
    start = time.perf_counter()
    rm_history = train_reward_model(rm, split.train, cfg.reward, heldout=split.heldout)
    rm_seconds = time.perf_counter() - start
    unseen = _unseen(split.train, split.heldout)
    r = generate(policy, task.eval_prompts(), task.max_new_tokens,
                 generator=torch.Generator().manual_seed(cfg.seed + 1))
    with torch.no_grad():
        proxy = sequence_rewards(rm, r.prompts, r.completions, r.mask)
    gold = task.gold_reward(r.prompts, r.completions, r.mask)
    rm_metrics = {
        "train_accuracy": pair_accuracy(rm, split.train),
        "heldout_accuracy": pair_accuracy(rm, split.heldout),
        "heldout_unseen_accuracy": pair_accuracy(rm, split.heldout[unseen]) if unseen.any() else float("nan"),
        "heldout_unseen_pairs": float(unseen.sum()),
        "gold_correlation": pearson(proxy, gold),
        "steps": float(cfg.reward.steps),
    }
    low = split.heldout.low_edit
    if low.any():
        rm_metrics["heldout_low_edit_accuracy"] = pair_accuracy(rm, split.heldout[low])
    say(f"  {name}: reward model {cfg.reward.steps} steps in {rm_seconds:.1f} s on {len(split.train)} pairs; "
        f"held-out accuracy {rm_metrics['heldout_accuracy']:.3f} ({len(split.heldout)} pairs, "
        f"{rm_metrics['heldout_unseen_accuracy']:.3f} on {int(unseen.sum())} unseen), "
        f"correlation with gold {rm_metrics['gold_correlation']:.3f}")

    meta = {"task": name, "build": _config_dict(cfg)}
    artifacts.save({**meta, "config": policy.config.to_dict(), "sft_state": _plain(policy.state_dict()),
                    "base_state": base_state, "history": _no_timings(sft_history), "metrics": sft_metrics},
                   data_path(name, "policy"), KINDS["policy"], DATA_VERSION)
    artifacts.save({**meta, "config": rm.config.to_dict(), "state": _plain(rm.state_dict()),
                    "history": _no_timings(rm_history), "metrics": rm_metrics},
                   data_path(name, "reward"), KINDS["reward"], DATA_VERSION)
    artifacts.save({**meta, "train": split.train.to_dict(), "heldout": split.heldout.to_dict()},
                   data_path(name, "pairs"), KINDS["pairs"], DATA_VERSION)
    return {"sft": sft_metrics, "reward": rm_metrics, "sft_seconds": sft_seconds, "reward_seconds": rm_seconds}


def _config_dict(cfg: BuildConfig) -> dict:
    d = asdict(cfg)
    return {k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items()}) for k, v in d.items()}


def main(argv: list[str] | None = None) -> int:
    names = list(argv) if argv else list(TASKS)
    torch.set_num_threads(1)  # deterministic bytes, and fair to a 2-core laptop
    for name in names:
        get_task(name)
        build_task(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
