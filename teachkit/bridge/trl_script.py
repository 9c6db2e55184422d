"""The TRL training script that ``accelerate launch`` scales out: GRPO on the toy arithmetic task.

    python -m teachkit.bridge.trl_script --out DIR --steps 4                    # one process
    accelerate launch --config_file cpu_2proc.yaml -m teachkit.bridge.trl_script --out DIR

The script is the same on one process, two CPU processes, eight GPUs or DeepSpeed: accelerate
decides how the trainer's model, optimizer and data loader are wrapped. The global batch stays
teachkit's (16 prompts × 8 completions): each of N processes takes 128 / N completions a step.

Each process writes ``DIR/rank<r>.json``: what it ran as (distributed type, backend, world size),
the prompts it generated for, and a checksum of its weights before and after training, so a test
can check the run was data parallel (different prompts per rank) and synchronised (equal weights).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["main", "weights_checksum"]


def weights_checksum(model) -> float:
    """Σ |w|·(index+1) over all parameters in float64: equal on two ranks iff their weights agree (practically)."""
    total = 0.0
    for i, p in enumerate(model.parameters()):
        total += float(p.detach().double().abs().sum()) * (i + 1)
    return total


def main(argv: list[str] | None = None) -> dict:
    import torch.distributed as dist

    from ..toy import load_world
    from .trl_runs import TRLGRPORun, gold_reward_func, grpo_trainer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for rank<r>.json")
    ap.add_argument("--steps", type=int, default=4, help="teachkit steps (each μ = 2 optimizer steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    world = load_world("arithmetic")
    cfg = TRLGRPORun(steps=args.steps, eval_every=10 ** 6)
    seen: list[str] = []
    reward = gold_reward_func(world)

    def recording_reward(prompts, completions, completion_ids, **kw):
        seen.extend(prompts)
        return reward(prompts, completions, completion_ids, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = grpo_trainer(world, cfg, tmp, per_device=cfg.prompts_per_step * cfg.group_size // world_size,
                               reward=recording_reward)
        before = weights_checksum(trainer.model)
        trainer.train()
        after = weights_checksum(trainer.accelerator.unwrap_model(trainer.model))
    state = trainer.accelerator.state
    report = {"rank": state.process_index, "world_size": state.num_processes,
              "distributed_type": str(state.distributed_type).split(".")[-1],
              "backend": dist.get_backend() if dist.is_initialized() else None,
              "global_step": trainer.state.global_step, "prompts": sorted(set(seen)),
              "completions_scored": len(seen), "checksum_before": before, "checksum_after": after}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{report['rank']}.json").write_text(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
