"""A teachkit step against TRL's trainer on the same work: GRPO and DPO, 1 thread, interleaved, medians.

    python -m teachkit.bridge.bench --json data/trl_bench.json [--rounds 12]

Same work on both sides: the SFT policy's weights (TRL gets them through ``to_hf``), 16 prompts ×
8 completions, μ = 2, β = 0.04, ε = 0.2, 3 new tokens, the gold reward; DPO on 64 pairs with the
reference log-probs precomputed on both sides.

- **teachkit's GRPO step** is the body of ``train_grpo``'s loop (``grpo_step`` below, kept in
  step with it by a test): sample, score, advantages, the old and reference log-probs, μ Adam
  steps, and the loop's per-step statistics (which score the samples a second time).
- **TRL's GRPO step** is two ``GRPOTrainer`` optimizer steps (one generation batch reused μ = 2
  times), timed by a callback from ``on_step_begin`` to ``on_step_end``.
- **Interleaving.** Both run in one process; after each TRL step (pair) the callback runs one
  teachkit step, so both see the same machine load. The first ``warmup`` rounds are dropped.
- **The floor** of a GRPO step is μ forward-and-backward passes of the policy on the batch (the
  gradient work any implementation must do), timed for the toy model and for its GPT-2 form;
  for DPO one forward-and-backward over the 128 sequences of 64 pairs. teachkit's GRPO runs each
  prompt once per group (``group_size=G``, :mod:`teachkit.toy.generate`), so its passes cover
  fewer positions than TRL's; ``floor_toy_shared_s`` times those passes, the floor of that step.

The JSON holds the medians, the ratio TRL / teachkit, the floors, every round's times and the
versions, so a reader can redo the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import torch

__all__ = ["BenchConfig", "grpo_step", "dpo_step", "floor_passes", "bench_grpo", "bench_dpo", "main"]


@dataclass
class BenchConfig:
    rounds: int = 12          # timed rounds after warm-up (medians over these)
    warmup: int = 2           # rounds dropped: first calls allocate and fill caches
    prompts: int = 16         # GRPO prompts per step, as GRPOConfig
    group_size: int = 8       # G
    num_iterations: int = 2   # μ
    beta: float = 0.04        # k3 coefficient
    clip_eps: float = 0.2     # ε
    lr: float = 3e-4          # GRPO learning rate (DPO uses DPOConfig's, 1e-5)
    dpo_pairs: int = 64       # DPO pairs per step, as DPOConfig
    seed: int = 0             # prompts, samples and pair batches


def grpo_step(world, policy, reference, optimizer, cfg: BenchConfig, g: torch.Generator):
    """One step of ``train_grpo``'s loop (gold reward, seq-mean-token-mean), statistics included."""
    from ..rlhf.advantages import grpo_advantages
    from ..rlhf.grpo import grpo_loss
    from ..rlhf.kl import kl_k3
    from ..rlhf.masking import masked_mean
    from ..rlhf.ppo import clip_fraction
    from ..rlhf.onpolicy import logprobs_and_entropy, sample_rollout, score

    G = cfg.group_size
    prompts = world.task.sample_prompts(cfg.prompts, g).repeat_interleave(G, dim=0)
    roll = sample_rollout(policy, prompts, world.task.max_new_tokens, 1.0, g, group_size=G)
    rewards = score(world, roll, "gold")
    advantages = grpo_advantages(rewards, G)
    with torch.no_grad():
        ref_logp, _ = logprobs_and_entropy(reference, roll, 1.0, G)
    for iteration in range(cfg.num_iterations):
        logp, entropy = logprobs_and_entropy(policy, roll, 1.0, G)
        if iteration == 0:
            old_logp = logp.detach()
        loss = grpo_loss(logp, old_logp, ref_logp, advantages, roll.mask, cfg.clip_eps, cfg.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            stats = [loss.item(), clip_fraction(logp, old_logp, roll.mask, cfg.clip_eps)]
    with torch.no_grad():  # the loop's statistics, as train_grpo computes them
        right = rewards > 0.5
        stats += [masked_mean(kl_k3(old_logp, ref_logp), roll.mask), masked_mean(entropy, roll.mask), right.any()]
    return stats


def dpo_step(policy, optimizer, batch, beta: float = 0.1) -> float:
    """One step of ``train_dpo``'s loop on a batch of pairs (reference log-probs precomputed)."""
    from ..rlhf.dpo import dpo_loss
    from ..rlhf.offpolicy import pair_logps

    pol_c, pol_r = pair_logps(policy, batch)
    loss = dpo_loss(pol_c, pol_r, batch.ref_chosen_logps, batch.ref_rejected_logps, beta=beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def floor_passes(world, cfg: BenchConfig) -> dict:
    """Forward + backward alone, as callables: μ passes over a GRPO batch, one over a DPO batch; toy and GPT-2."""
    from ..toy.generate import completion_logits, generate
    from .hf_model import to_hf

    g = torch.Generator().manual_seed(cfg.seed)
    policy = world.new_policy()
    prompts = world.task.sample_prompts(cfg.prompts, g).repeat_interleave(cfg.group_size, dim=0)
    roll = generate(policy, prompts, world.task.max_new_tokens, generator=g)
    grpo_ids = torch.cat([roll.prompts, roll.completions], 1)
    pairs = world.pairs.train[:cfg.dpo_pairs]
    dpo_ids = torch.cat([torch.cat([pairs.prompts, pairs.chosen], 1), torch.cat([pairs.prompts, pairs.rejected], 1)])
    hf = to_hf(policy)
    models = {"toy": (policy, lambda x: policy(x)),
              "gpt2": (hf, lambda x: hf(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits),
              "toy_shared": (policy, lambda x: completion_logits(policy, roll.prompts, roll.completions,
                                                                 cfg.group_size))}

    def passes(name, x, n):
        model, logits = models[name]

        def run():
            for _ in range(n):
                model.zero_grad(set_to_none=True)
                logits(x).float().log_softmax(-1).mean().backward()
        return run

    floors = {f"{kind}_{name}": passes(name, x, n) for name in ("toy", "gpt2")
              for kind, x, n in (("grpo", grpo_ids, cfg.num_iterations), ("dpo", dpo_ids, 1))}
    floors["grpo_toy_shared"] = passes("toy_shared", grpo_ids, cfg.num_iterations)
    return floors


def _interleaved(trainer, per_round: int, ours: dict, total_rounds: int) -> dict[str, list[float]]:
    """Run ``trainer.train()``; after every ``per_round`` TRL steps run each of ``ours`` once; all times by name."""
    from transformers import TrainerCallback

    times = {"trl": [], **{k: [] for k in ours}}
    acc = [0.0, 0]

    class Interleave(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            acc.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            acc[0] += time.perf_counter() - acc.pop()
            acc[1] += 1
            if acc[1] == per_round:
                times["trl"].append(acc[0])
                acc[0], acc[1] = 0.0, 0
                for name, fn in ours.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)

    trainer.add_callback(Interleave())
    trainer.train()
    if len(times["trl"]) != total_rounds:
        raise RuntimeError(f"expected {total_rounds} rounds, timed {len(times['trl'])}")
    return times


def _summary(times: dict, warmup: int, kind: str) -> dict:
    med = {k: statistics.median(v[warmup:]) for k, v in times.items()}
    return {"teachkit_s": med["teachkit"], "trl_s": med["trl"], "ratio_trl_over_teachkit": med["trl"] / med["teachkit"],
            "floor_toy_s": med[f"{kind}_toy"], "floor_gpt2_s": med[f"{kind}_gpt2"],
            "teachkit_over_floor": med["teachkit"] / med[f"{kind}_toy"],
            "trl_over_floor": med["trl"] / med[f"{kind}_gpt2"],
            **({"floor_toy_shared_s": med[f"{kind}_toy_shared"],
                "teachkit_over_shared_floor": med["teachkit"] / med[f"{kind}_toy_shared"]}
               if f"{kind}_toy_shared" in med else {}),
            "rounds_s": {k: v[warmup:] for k, v in times.items()}}


def bench_grpo(world, cfg: BenchConfig, floors: dict) -> dict:
    """TRL's GRPOTrainer against ``grpo_step``, with the GRPO floors, interleaved round by round."""
    from .trl_runs import TRLGRPORun, grpo_trainer, quiet

    quiet()
    total = cfg.warmup + cfg.rounds
    policy, reference = world.new_policy(), world.reference
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    g = torch.Generator().manual_seed(cfg.seed)
    run = TRLGRPORun(steps=total, prompts_per_step=cfg.prompts, group_size=cfg.group_size,
                     num_iterations=cfg.num_iterations, lr=cfg.lr, beta=cfg.beta, clip_eps=cfg.clip_eps,
                     seed=cfg.seed)
    with tempfile.TemporaryDirectory() as out:
        trainer = grpo_trainer(world, run, out)
        ours = {"teachkit": lambda: grpo_step(world, policy, reference, optimizer, cfg, g),
                "grpo_toy": floors["grpo_toy"], "grpo_gpt2": floors["grpo_gpt2"],
                "grpo_toy_shared": floors["grpo_toy_shared"]}
        times = _interleaved(trainer, cfg.num_iterations, ours, total)
    return _summary(times, cfg.warmup, "grpo")


def bench_dpo(world, cfg: BenchConfig, floors: dict) -> dict:
    """TRL's DPOTrainer against ``dpo_step``, with the DPO floors, interleaved round by round."""
    from ..rlhf.offpolicy import pair_data
    from .trl_runs import TRLDPORun, dpo_trainer, quiet

    quiet()
    total = cfg.warmup + cfg.rounds
    policy = world.new_policy()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.0)
    train = pair_data(world, "train")
    g = torch.Generator().manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as out:
        trainer = dpo_trainer(world, TRLDPORun(steps=total, batch_size=cfg.dpo_pairs, seed=cfg.seed), out)
        ours = {"teachkit": lambda: dpo_step(policy, optimizer, train.sample(cfg.dpo_pairs, g)),
                "dpo_toy": floors["dpo_toy"], "dpo_gpt2": floors["dpo_gpt2"]}
        times = _interleaved(trainer, 1, ours, total)
    return _summary(times, cfg.warmup, "dpo")


def main(argv: list[str] | None = None) -> dict:
    import accelerate
    import transformers
    import trl

    from ..toy import load_world
    from .trl_runs import quiet

    quiet()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--rounds", type=int, default=BenchConfig.rounds, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="rounds dropped first")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = BenchConfig(rounds=args.rounds, warmup=args.warmup)
    load_before = os.getloadavg()
    world = load_world("arithmetic")
    floors = floor_passes(world, cfg)
    result = {"config": asdict(cfg), "threads": torch.get_num_threads(),
              "versions": {"torch": torch.__version__, "trl": trl.__version__,
                           "transformers": transformers.__version__, "accelerate": accelerate.__version__,
                           "python": platform.python_version()},
              "machine": platform.processor() or platform.machine(),
              "grpo": bench_grpo(world, cfg, floors), "dpo": bench_dpo(world, cfg, floors)}
    result["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0],
                                   "cores": os.cpu_count()}  # other work on the machine, for the reader
    for kind in ("grpo", "dpo"):
        r = result[kind]
        print(f"{kind.upper():4s} step: teachkit {r['teachkit_s'] * 1e3:7.1f} ms   TRL {r['trl_s'] * 1e3:7.1f} ms   "
              f"TRL/teachkit {r['ratio_trl_over_teachkit']:.2f}x   floor (fwd+bwd) toy {r['floor_toy_s'] * 1e3:.1f} ms, "
              f"GPT-2 {r['floor_gpt2_s'] * 1e3:.1f} ms"
              + (f", toy with shared prompts {r['floor_toy_shared_s'] * 1e3:.1f} ms" if "floor_toy_shared_s" in r else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
