"""``make data``: stored runs of TRL's trainers against teachkit's loops on the toy arithmetic task.

    python -m teachkit.bridge.build_data        # writes data/trl_runs.pt (a few minutes on 2 cores)

For each seed: teachkit's GRPO (gold reward) and TRL's GRPOTrainer with the same sizes, μ, β, ε,
learning rate and Adam ε; teachkit's DPO and TRL's DPOTrainer on the same training pairs. Every
history is the same evaluation (``evaluate_policy`` on the held-out prompts, sampled) at the
same steps. Notebook 15 plots the stored runs next to a short live run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .. import artifacts

__all__ = ["StoredRuns", "build", "main", "load_runs", "DATA_FILE", "KIND", "VERSION"]

DATA_FILE = "trl_runs.pt"
KIND = "trl-runs"
VERSION = 1


@dataclass
class StoredRuns:
    seeds: tuple = (0, 1, 2)     # three seeds: one run of a sampled RL loop proves little
    grpo_steps: int = 40         # teachkit steps (TRL: μ·40 optimizer steps)
    grpo_eval_every: int = 5     # gold reward every 5 steps
    dpo_steps: int = 120         # teachkit's DPOConfig default
    dpo_eval_every: int = 20     # as teachkit's DPOConfig


def build(world, cfg: StoredRuns = StoredRuns()) -> dict:
    """Run all four loops for every seed; returns {"grpo": {"teachkit": [...], "trl": [...]}, "dpo": {...}}."""
    from ..rlhf.dpo_train import DPOConfig, train_dpo
    from ..rlhf.grpo_train import GRPOConfig, train_grpo
    from .trl_runs import TRLDPORun, TRLGRPORun, run_trl_dpo, run_trl_grpo

    out = {"grpo": {"teachkit": [], "trl": []}, "dpo": {"teachkit": [], "trl": []}}
    clock = {k: 0.0 for k in ("grpo_teachkit", "grpo_trl", "dpo_teachkit", "dpo_trl")}
    for seed in cfg.seeds:
        runs = (   # s=seed: each run binds this iteration's seed
            ("grpo", "teachkit", lambda s=seed: train_grpo(world, GRPOConfig(
                steps=cfg.grpo_steps, reward="gold", eval_every=cfg.grpo_eval_every, seed=s))[1]),
            ("grpo", "trl", lambda s=seed: run_trl_grpo(world, TRLGRPORun(
                steps=cfg.grpo_steps, seed=s, eval_every=cfg.grpo_eval_every))),
            ("dpo", "teachkit", lambda s=seed: train_dpo(world, DPOConfig(
                steps=cfg.dpo_steps, eval_every=cfg.dpo_eval_every, eval_greedy=False, seed=s))[1]),
            ("dpo", "trl", lambda s=seed: run_trl_dpo(world, TRLDPORun(
                steps=cfg.dpo_steps, seed=s, eval_every=cfg.dpo_eval_every))),
        )
        for method, who, run in runs:
            t0 = time.perf_counter()
            h = run()
            clock[f"{method}_{who}"] += time.perf_counter() - t0
            out[method][who].append({"step": [float(s) for s in h["step"]],
                                     "gold_reward": [float(r) for r in h["gold_reward"]], "seed": seed})
            print(f"  {method} {who:8s} seed {seed}: gold reward {h['gold_reward'][0]:.3f} -> "
                  f"{h['gold_reward'][-1]:.3f}", flush=True)
    print("  seconds (printed, not stored: the file's bytes stay deterministic):",
          {k: round(v, 1) for k, v in clock.items()}, flush=True)
    out["config"] = asdict(cfg)
    return out


def load_runs() -> dict:
    """The stored runs (``ArtifactError`` with the fix, ``make data``, when missing or stale)."""
    return artifacts.load(artifacts.path_for(DATA_FILE), KIND, VERSION)


def main() -> None:
    from ..toy import load_world
    from .trl_runs import quiet

    torch.set_num_threads(1)
    quiet()
    runs = build(load_world("arithmetic"))
    artifacts.save(runs, artifacts.path_for(DATA_FILE), KIND, VERSION)


if __name__ == "__main__":
    main()
