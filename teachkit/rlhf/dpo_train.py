"""Offline preference training on the toy world's pairs: one loop for DPO, DPOP, IPO and SimPO.

    policy, history = train_dpo(world, DPOConfig(loss="dpo"))       # or "dpop", "ipo", "simpo"

The policy starts as a copy of the SFT model, which is also the frozen reference. Each step draws
``batch_size`` pairs from the training split, scores chosen and rejected completions under the
policy (one forward pass over both) and under the reference (pre-computed once: the reference
never changes), and takes an AdamW step on the chosen loss. Every ``eval_every`` steps we log the
toy world's evaluation (gold and proxy reward, KL to the reference on fresh samples) and the
preference metrics on the held-out pairs: loss, reward accuracy, margin, and the mean chosen and
rejected log-probs and log-ratios — the numbers notebook 06 watches fall below the reference.

``history`` keys: step, gold_reward, proxy_reward, kl_to_ref, greedy_gold_reward, seconds,
samples_generated (0: offline), reward_queries (0), pairs_seen, train_loss (the mean batch loss
since the previous row; at step 0 the loss on every training pair), plus
``pair_metrics``' keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..toy.generate import completion_logits
from .dpo import DPOP_FORMS, dpo_loss, dpop_loss, implicit_rewards, ipo_loss, simpo_loss

__all__ = ["DPOConfig", "LOSSES", "PairData", "pair_data", "pair_forward", "pair_logps", "train_dpo",
           "preference_loss", "pair_metrics", "evaluate", "new_history", "RunLog", "fit_pairs",
           "check_loop_config", "PAIR_SUBSETS"]

LOSSES = ("dpo", "dpop", "ipo", "simpo")


# ----------------------------------------------------------------------------- the pairs

@dataclass
class PairData:
    """Preference pairs with the frozen reference's summed log-probs (and logits, for TDPO) cached."""

    prompts: torch.Tensor            # (N, P)
    chosen: torch.Tensor             # (N, T)
    chosen_mask: torch.Tensor        # (N, T)
    rejected: torch.Tensor           # (N, T)
    rejected_mask: torch.Tensor      # (N, T)
    ref_chosen_logps: torch.Tensor | None     # (N,), None without a reference (ORPO)
    ref_rejected_logps: torch.Tensor | None   # (N,)
    ref_chosen_logits: torch.Tensor | None = None    # (N, T, V)
    ref_rejected_logits: torch.Tensor | None = None  # (N, T, V)

    def __len__(self) -> int:
        return self.prompts.shape[0]

    @property
    def chosen_lengths(self) -> torch.Tensor:
        return self.chosen_mask.sum(-1).float()

    @property
    def rejected_lengths(self) -> torch.Tensor:
        return self.rejected_mask.sum(-1).float()

    def select(self, idx: torch.Tensor) -> "PairData":
        return PairData(*(None if v is None else v[idx] for v in self.__dict__.values()))

    def sample(self, n: int, generator: torch.Generator) -> "PairData":
        return self.select(torch.randint(0, len(self), (n,), generator=generator))


def pair_forward(model, prompts, chosen, chosen_mask, rejected, rejected_mask):
    """One forward pass over chosen ⊕ rejected: summed log-probs (B,), (B,) and logits (B, T, V) ×2."""
    B = prompts.shape[0]
    comps = torch.cat([chosen, rejected])
    keep = torch.cat([chosen_mask, rejected_mask]).bool()
    safe = torch.where(keep, comps, torch.zeros_like(comps))       # padding ids may be anything
    logits = completion_logits(model, torch.cat([prompts, prompts]), safe)
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    seq = torch.where(keep, logp, torch.zeros((), dtype=logp.dtype, device=logp.device)).sum(-1)
    return seq[:B], seq[B:], logits[:B], logits[B:]


def pair_logps(model, data: PairData):
    """Summed completion log-probs of chosen and rejected under ``model``: two (B,) tensors."""
    c, r, _, _ = pair_forward(model, data.prompts, data.chosen, data.chosen_mask, data.rejected,
                              data.rejected_mask)
    return c, r


PAIR_SUBSETS = ("all", "low_edit", "sampled")


@torch.no_grad()
def pair_data(world, split: str = "train", subset: str = "all", keep_logits: bool = False,
              reference: bool = True) -> PairData:
    """The world's preference pairs with the reference's log-probs (and logits) computed once.

    ``split``: "train" or "heldout". ``subset``: "all", "low_edit" (the right answer against one off
    by one) or "sampled" (two SFT samples ranked by the gold reward). ``reference=False`` skips the
    reference entirely (ORPO): its fields are then None.
    """
    raw = _world_pairs(world, split, subset)
    if not reference:
        return PairData(*raw, None, None)
    ref = world.reference
    was_training = ref.training
    ref.eval()
    c, r, lc, lr = pair_forward(ref, *raw)
    ref.train(was_training)
    return PairData(*raw, c, r, lc if keep_logits else None, lr if keep_logits else None)


def _world_pairs(world, split: str, subset: str):
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if subset not in PAIR_SUBSETS:
        raise ValueError(f"subset must be one of {PAIR_SUBSETS}, got {subset!r}")
    pairs = getattr(world.pairs, split)
    if subset != "all":
        pairs = pairs[pairs.low_edit if subset == "low_edit" else ~pairs.low_edit]
    if len(pairs) == 0:
        raise ValueError(f"the world has no {subset!r} pairs in its {split!r} split")
    return (pairs.prompts, pairs.chosen, pairs.chosen_mask, pairs.rejected, pairs.rejected_mask)


@dataclass
class DPOConfig:
    loss: str = "dpo"            # "dpo" | "dpop" | "ipo" | "simpo"
    beta: float = 0.1            # DPO/DPOP/IPO temperature; SimPO uses simpo_beta
    lam: float = 50.0            # DPOP penalty weight (Smaug's λ)
    dpop_form: str = "a"         # where DPOP's penalty sits: "a" inside β, "b" outside β, "c" outside log σ
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5
    steps: int = 120
    batch_size: int = 64
    lr: float = 1e-5             # Adam moves every weight by ~lr per step: DPO needs a small one
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 20
    eval_greedy: bool = True     # also log greedy gold reward (task accuracy for arithmetic)
    pairs: str = "all"           # "all" | "low_edit" | "sampled" (see pair_data)
    monitor: str = "heldout"     # pair metrics on the "heldout" or the "train" pairs
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.dpop_form not in DPOP_FORMS:
            raise ValueError(f"dpop_form must be one of {DPOP_FORMS}, got {self.dpop_form!r}")
        check_loop_config(self)


def check_loop_config(cfg) -> None:
    """Checks shared by the DPO, TDPO and ORPO configs."""
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.eval_every < 1:
        raise ValueError("steps, batch_size and eval_every must be >= 1")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if cfg.pairs not in PAIR_SUBSETS:
        raise ValueError(f"pairs must be one of {PAIR_SUBSETS}, got {cfg.pairs!r}")
    if cfg.monitor not in ("heldout", "train"):
        raise ValueError(f"monitor must be 'heldout' or 'train', got {cfg.monitor!r}")


def preference_loss(cfg: DPOConfig, pol_c, pol_r, ref_c, ref_r, len_c, len_r) -> torch.Tensor:
    """The configured loss on (B,) summed log-probs; SimPO divides by the lengths ``len_c``, ``len_r``."""
    if cfg.loss == "dpo":
        return dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta)
    if cfg.loss == "dpop":
        return dpop_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta, lam=cfg.lam, form=cfg.dpop_form)
    if cfg.loss == "ipo":
        return ipo_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta)
    return simpo_loss(pol_c / len_c, pol_r / len_r, beta=cfg.simpo_beta, gamma=cfg.simpo_gamma)


@torch.no_grad()
def pair_metrics(policy, data: PairData, beta: float = 0.1) -> dict[str, float]:
    """DPO's diagnostics on a set of pairs (no gradient). Log-probs are per pair, summed over tokens.

    chosen_logps / rejected_logps          mean log π(y_w), log π(y_l)
    chosen_logratio / rejected_logratio    mean log π/π_ref of each (0 at the start)
    chosen_below_ref                       fraction of pairs with log π(y_w) < log π_ref(y_w)
    reward_accuracy, reward_margin         implicit-reward accuracy (strict: the ties of step 0
                                           count as wrong) and mean margin (β·…)
    dpo_loss                               DPO's loss on these pairs (ln 2 at the start)
    """
    pol_c, pol_r = pair_logps(policy, data)
    ref_c, ref_r = data.ref_chosen_logps, data.ref_rejected_logps
    rw_c, rw_r = implicit_rewards(pol_c, pol_r, ref_c, ref_r, beta=beta)
    return {
        "dpo_loss": dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=beta).item(),
        "reward_accuracy": (rw_c > rw_r).float().mean().item(),
        "reward_margin": (rw_c - rw_r).mean().item(),
        "chosen_logps": pol_c.mean().item(),
        "rejected_logps": pol_r.mean().item(),
        "chosen_logratio": (pol_c - ref_c).mean().item(),
        "rejected_logratio": (pol_r - ref_r).mean().item(),
        "chosen_below_ref": (pol_c < ref_c - 1e-6).float().mean().item(),
    }


def evaluate(world, policy, seed: int, greedy_too: bool) -> dict[str, float]:
    """The toy world's evaluation on its held-out prompts (sampled), plus greedy gold reward."""
    from ..toy.evaluate import evaluate_policy

    out = evaluate_policy(world, policy, seed=seed)
    row = {k: float(out[k]) for k in ("gold_reward", "proxy_reward", "kl_to_ref")}
    if greedy_too:
        row["greedy_gold_reward"] = float(evaluate_policy(world, policy, greedy=True, seed=seed)["gold_reward"])
    return row


def new_history(*extra: str) -> dict[str, list[float]]:
    keys = ["step", "gold_reward", "proxy_reward", "kl_to_ref", "seconds", "samples_generated",
            "reward_queries", "pairs_seen", "train_loss", *extra]
    return {k: [] for k in keys}


class RunLog:
    """One history row per evaluation; ``seconds`` counts training time only (evaluation excluded)."""

    def __init__(self, *extra: str):
        self.history = new_history(*extra)
        self.start, self.in_eval, self.losses = time.perf_counter(), 0.0, []

    def add(self, step: int, pairs_seen: int, measure) -> None:
        t0 = time.perf_counter()
        row = {"step": step, **measure()}
        self.in_eval += time.perf_counter() - t0
        row.update(seconds=time.perf_counter() - self.start - self.in_eval, samples_generated=0,
                   reward_queries=0, pairs_seen=pairs_seen,
                   train_loss=sum(self.losses) / len(self.losses) if self.losses else float("nan"))
        self.losses.clear()
        for k, v in row.items():
            self.history.setdefault(k, []).append(float(v))


def fit_pairs(policy, opt, loss_on, train, cfg, g, log: RunLog, measure):
    """The offline loop shared by DPO, TDPO and ORPO: minibatches of pairs, clipped AdamW steps.

    ``loss_on(batch)`` is the method's loss; the step-0 loss is taken on every training pair, and
    ``measure()`` is logged every ``cfg.eval_every`` steps and at the end.
    """
    with torch.no_grad():
        log.losses.append(loss_on(train).item())          # step 0: the loss on every training pair
    log.add(0, 0, measure)
    policy.train()
    for step in range(1, cfg.steps + 1):
        loss = loss_on(train.sample(cfg.batch_size, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        opt.step()
        log.losses.append(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            log.add(step, step * cfg.batch_size, measure)
    policy.eval()
    return policy, log.history


def train_dpo(world, cfg: DPOConfig = DPOConfig()):
    """Train a copy of the SFT policy on the world's training pairs; returns (policy, history)."""
    torch.manual_seed(cfg.seed)
    policy = world.new_policy()
    train = pair_data(world, "train", cfg.pairs)
    watched = train if cfg.monitor == "train" else pair_data(world, "heldout", cfg.pairs)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    log = RunLog("greedy_gold_reward")

    def measure() -> dict:
        policy.eval()
        row = {**evaluate(world, policy, cfg.seed, cfg.eval_greedy), **pair_metrics(policy, watched, cfg.beta)}
        policy.train()
        return row

    def loss_on(batch: PairData) -> torch.Tensor:
        pol_c, pol_r = pair_logps(policy, batch)
        return preference_loss(cfg, pol_c, pol_r, batch.ref_chosen_logps, batch.ref_rejected_logps,
                               batch.chosen_lengths, batch.rejected_lengths)

    return fit_pairs(policy, opt, loss_on, train, cfg, g, log, measure)
