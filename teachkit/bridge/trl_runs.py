"""Short TRL runs on a toy task: GRPOTrainer and DPOTrainer, scored by the task's gold reward.

    history = run_trl_grpo(world, TRLGRPORun(steps=20))     # {"step": [...], "gold_reward": [...]}
    history = run_trl_dpo(world, TRLDPORun(steps=60))

The model is the SFT policy converted with ``to_hf``; the prompts are text for the local tokenizer
(``hf_tokenizer``); the reward function hands TRL's ``completion_ids`` to ``task.gold_reward``.
Every ``eval_every`` teachkit-equivalent steps a callback converts the model back (``from_hf``) and
runs ``teachkit.toy.evaluate_policy``: the *same* evaluation as teachkit's own loops, so the two
histories can be drawn on one axis.

Step counting. teachkit's GRPO step samples a batch and takes μ gradient steps on it; TRL counts
each gradient step (``global_step``), and reuses one generation batch for μ of them. So teachkit's
step s is TRL's ``global_step`` μ·s; histories here are in teachkit's steps.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import torch

from ..toy.evaluate import evaluate_policy
from .hf_model import from_hf, hf_tokenizer, to_hf

__all__ = ["TRLGRPORun", "TRLDPORun", "run_trl_grpo", "run_trl_dpo", "gold_reward_func",
           "grpo_trainer", "dpo_trainer", "saved_policy", "quiet", "prompt_dataset", "pair_dataset"]


@dataclass
class TRLGRPORun:
    steps: int = 20                  # teachkit steps (each μ TRL optimizer steps)
    prompts_per_step: int = 16       # as teachkit's GRPOConfig
    group_size: int = 8              # G = TRL's num_generations
    num_iterations: int = 2          # μ, both sides
    lr: float = 3e-4                 # teachkit's GRPO learning rate
    beta: float = 0.04               # k3 coefficient in the loss
    clip_eps: float = 0.2            # TRL's epsilon
    loss_type: str = "grpo"          # teachkit's default aggregation, "seq-mean-token-mean"
    eval_every: int = 5              # teachkit steps between gold-reward evaluations
    seed: int = 0                    # TRL's seed (model init is ours; sampling differs from teachkit's)


@dataclass
class TRLDPORun:
    steps: int = 60                  # optimizer steps
    batch_size: int = 64             # pairs per step, as teachkit's DPOConfig
    beta: float = 0.1                # DPO temperature
    lr: float = 1e-5                 # teachkit's DPO learning rate
    eval_every: int = 20             # steps between gold-reward evaluations
    seed: int = 0                    # TRL's data-order seed


def gold_reward_func(world):
    """A TRL reward function: the toy task's gold reward of each ``completion_ids`` (EOS included)."""
    task = world.task

    def gold_reward(prompts, completions, completion_ids, **kwargs) -> list[float]:
        P = torch.tensor([task.tokenizer.encode(p) for p in prompts], dtype=torch.long)
        T = task.max_new_tokens
        C = torch.full((len(prompts), T), task.tokenizer.pad_id, dtype=torch.long)
        M = torch.zeros(len(prompts), T)
        for i, ids in enumerate(completion_ids):
            ids = list(ids)[:T]
            C[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            M[i, :len(ids)] = 1.0
        return task.gold_reward(P, C, M).tolist()

    return gold_reward


def prompt_dataset(world, n: int, seed: int):
    """``n`` prompts sampled from the task, as text in a ``datasets.Dataset`` column "prompt"."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    prompts = world.task.sample_prompts(n, g)
    return Dataset.from_dict({"prompt": [world.task.tokenizer.decode(p) for p in prompts]})


def pair_dataset(world, split: str = "train"):
    """The world's preference pairs as text: "prompt", "chosen", "rejected" (completions end in ``<eos>``)."""
    from datasets import Dataset

    pairs = getattr(world.pairs, split)
    dec = world.task.tokenizer.decode

    def text(c, m):
        return dec(c[m.bool()])

    return Dataset.from_dict({
        "prompt": [dec(p) for p in pairs.prompts],
        "chosen": [text(c, m) for c, m in zip(pairs.chosen, pairs.chosen_mask)],
        "rejected": [text(r, m) for r, m in zip(pairs.rejected, pairs.rejected_mask)],
    })


def _eval_callback(world, history: dict, every: int, per_step: int, seed: int):
    from transformers import TrainerCallback

    class GoldReward(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % (every * per_step) == 0:
                toy = from_hf(model, world.config).eval()
                history["step"].append(state.global_step // per_step)
                history["gold_reward"].append(float(evaluate_policy(world, toy, seed=seed)["gold_reward"]))

    return GoldReward()


def _common_args(out: str, steps: int, lr: float, seed: int) -> dict:
    return dict(output_dir=out, max_steps=steps, learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0,
                weight_decay=0.0, max_grad_norm=1.0, seed=seed, data_seed=seed, report_to="none",
                save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True, use_cpu=True, bf16=False,
                dataloader_num_workers=0)


def saved_policy(world, out: str):
    """The SFT policy as an HF model, saved under ``out`` first: GRPOTrainer loads its reference from that path."""
    import os

    from safetensors.torch import save_model

    hf = to_hf(world.new_policy())
    path = os.path.join(out, "sft_policy")
    # written by hand: under torch.distributed, save_pretrained writes on rank 0 only, and every
    # rank reads its own copy
    hf.config.architectures = [type(hf).__name__]
    hf.config.save_pretrained(path)
    save_model(hf, os.path.join(path, "model.safetensors"))
    hf.config._name_or_path = path
    return hf


def grpo_trainer(world, cfg: TRLGRPORun, out: str, model=None, callbacks=(), per_device: int | None = None,
                 reward=None):
    """A GRPOTrainer on the toy task with teachkit's GRPO settings (Adam ε = 1e-5, constant lr, no bias-corrected KL).

    ``per_device``: completions per process and step (default: the whole batch, one process);
    ``reward``: a TRL reward function (default: the gold reward).
    """
    from trl import GRPOConfig, GRPOTrainer

    n = cfg.prompts_per_step * cfg.group_size if per_device is None else per_device
    args = GRPOConfig(**_common_args(out, cfg.steps * cfg.num_iterations, cfg.lr, cfg.seed),
                      per_device_train_batch_size=n, num_generations=cfg.group_size,
                      max_completion_length=world.task.max_new_tokens, num_iterations=cfg.num_iterations,
                      beta=cfg.beta, epsilon=cfg.clip_eps, loss_type=cfg.loss_type, scale_rewards="group",
                      use_bias_correction_kl=False, temperature=1.0, top_k=0, top_p=1.0, adam_epsilon=1e-5)
    quiet()
    trainer = GRPOTrainer(model=model if model is not None else saved_policy(world, out),
                          reward_funcs=reward or gold_reward_func(world), args=args,
                          train_dataset=prompt_dataset(world, cfg.steps * cfg.prompts_per_step, cfg.seed),
                          processing_class=hf_tokenizer(world.task), callbacks=list(callbacks))
    return _without_printer(trainer)


def dpo_trainer(world, cfg: TRLDPORun, out: str, model=None, callbacks=()):
    """A DPOTrainer on the world's training pairs (reference log-probs precomputed, as teachkit's loop does).

    The trainer's console printer is removed (both factories): a notebook keeps only our prints.
    """
    from trl import DPOConfig, DPOTrainer

    quiet()
    args = DPOConfig(**_common_args(out, cfg.steps, cfg.lr, cfg.seed), per_device_train_batch_size=cfg.batch_size,
                     beta=cfg.beta, loss_type="sigmoid", precompute_ref_log_probs=True,
                     max_length=world.task.block_size, dataloader_drop_last=True)  # always full batches, as teachkit
    policy = model if model is not None else to_hf(world.new_policy())
    return _without_printer(DPOTrainer(model=policy, ref_model=to_hf(world.reference), args=args,
                                       train_dataset=pair_dataset(world), processing_class=hf_tokenizer(world.task),
                                       callbacks=list(callbacks)))


def quiet() -> None:
    """Silence progress bars, info logs and FutureWarnings of datasets/transformers/TRL (a notebook keeps our prints)."""
    import os
    import warnings

    import datasets
    import transformers

    os.environ["TQDM_DISABLE"] = "1"   # TRL's own bars (reference log-probs) use plain tqdm
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _without_printer(trainer):
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _run(make, world, cfg, per_step: int) -> dict:
    history = {"step": [0], "gold_reward": []}
    history["gold_reward"].append(float(evaluate_policy(world, world.new_policy().eval(), seed=cfg.seed)["gold_reward"]))
    with tempfile.TemporaryDirectory() as out:
        trainer = make(world, cfg, out, callbacks=[_eval_callback(world, history, cfg.eval_every, per_step, cfg.seed)])
        trainer.train()
    return history


def run_trl_grpo(world, cfg: TRLGRPORun = TRLGRPORun()) -> dict:
    """Train the SFT policy with TRL's GRPOTrainer on the gold reward; returns {"step", "gold_reward"}."""
    return _run(grpo_trainer, world, cfg, cfg.num_iterations)


def run_trl_dpo(world, cfg: TRLDPORun = TRLDPORun()) -> dict:
    """Train the SFT policy with TRL's DPOTrainer on the world's pairs; returns {"step", "gold_reward"}."""
    return _run(dpo_trainer, world, cfg, 1)
