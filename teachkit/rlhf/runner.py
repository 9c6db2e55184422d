"""The showdown runner: train any RLHF method under one budget and record what it cost.

Public API (notebook 09, ``showdown_data`` and the widgets rely on it):

    Budget(labels=..., pairs_per_query=1.0)             the common budget and its exchange rate
    run_method(world, method, beta, budget, seed=0, **knobs) -> record (a plain dict)
    run_reference(world) -> dict                        the SFT start point (gold, proxy, KL = 0)
    make_config(method, beta, budget, ...)              the loop's config that the budget pays for
    METHODS, KNOBS, METHOD_KNOBS, knob_defaults(m)      the methods and their knobs

Tables, selection and storage of the records live in :mod:`teachkit.rlhf.showdown_data`.

The common budget and its exchange rate
---------------------------------------
An on-policy method pays for feedback with *reward queries*: every sampled completion it scores
with the reward model (or the gold reward) is one query. An off-policy method pays with
*preference pairs*: every pair it trains on was one comparison by a labeller. We give every method
the same number of **labels**, ``Budget.labels``, and convert with ``pairs_per_query``:

    on-policy:   reward queries  ≤ labels                 (GRPO: prompts × group size per step;
                                                           ReMax: 2 per prompt, sample + greedy)
    off-policy:  pairs drawn     ≤ labels × pairs_per_query   (repeats count: a pair drawn twice
                                                               is paid twice)

The default rate is **one pair per query**: one judgement of the labeller buys either one scalar
score or one comparison. That is the fair unit when the labeller is the expensive part (a human, a
large reward model); a pair shows the learner two completions for its one judgement, so if you
think in completions seen the off-policy side already gets twice as many. Counting pairs with
repeats makes epochs over a small dataset cost what they teach, and it maps onto the loops: the
number of steps is ``labels // labels_per_step``. Wall time is *not* equalised, it is measured:
off-policy steps need no generation, and the cost bars show by how much.

The two kinds of label come from different judges in the toy world: the preference pairs are
ranked by the task's gold reward (``teachkit/toy/pairs.py``), the on-policy loops are scored by the
learned proxy reward model. ``wall_seconds`` is training time only: every loop subtracts the time
spent in its evaluations.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass

import torch

from .history import HISTORY_KEYS

__all__ = [
    "Budget", "MethodSpec", "METHODS", "METHOD_KNOBS", "KNOBS", "knob_defaults", "method_order",
    "available_methods", "make_config", "run_method", "run_reference", "missing_record",
    "probe_offline_costs",
]


@dataclass(frozen=True)
class Budget:
    """The common budget: ``labels`` reward queries, or ``labels * pairs_per_query`` preference pairs."""

    labels: int = 4096
    pairs_per_query: float = 1.0

    def __post_init__(self):
        if not isinstance(self.labels, int) or self.labels <= 0:
            raise ValueError(f"Budget.labels must be a positive int, got {self.labels!r}")
        if not (isinstance(self.pairs_per_query, (int, float)) and self.pairs_per_query > 0):
            raise ValueError(f"Budget.pairs_per_query must be > 0, got {self.pairs_per_query!r}")

    def steps(self, family: str, labels_per_step: int) -> int:
        """How many optimiser steps fit the budget for a method that pays ``labels_per_step`` per step."""
        if labels_per_step <= 0:
            raise ValueError(f"labels_per_step must be positive, got {labels_per_step}")
        allowance = self.labels if family == "on-policy" else self.labels * self.pairs_per_query
        steps = int(allowance // labels_per_step)
        if steps < 1:
            raise ValueError(f"a budget of {self.labels} labels does not pay for one step "
                             f"of {labels_per_step} labels; raise Budget.labels")
        return steps


@dataclass(frozen=True)
class MethodSpec:
    """Where a method's loop lives and how its config maps onto the runner's vocabulary.

    ``labels_per_step(cfg)`` is what one optimiser step costs (queries or pairs), ``steps_field``
    the config field that sets the number of steps, ``fixed`` config values that select the
    method (e.g. ``loss="ipo"`` in a shared DPO loop), ``knobs`` runner knob -> config field.

    ``betas`` is the grid of β that ``make data`` stores (any length, ascending); ``default_beta``
    the one named point of it that single runs use when no β is given (the budget table of notebook
    09, the method explorer's first β, the tests). It is a point of the grid, so those runs have a
    stored twin, and it is named rather than taken by index, so that extending the grid does not
    move it. The learning rate is a knob (``lr``); ``showdown_data.LR_GRID`` sweeps it for the
    off-policy methods.
    """

    name: str
    family: str
    module: str
    config: str
    train: str
    labels_per_step: object
    steps_field: str = "steps"
    beta_field: str = "beta"
    fixed: tuple = ()
    knobs: tuple = ()
    models: tuple = ("policy", "reference")
    betas: tuple = (0.1, 0.3, 1.0)
    default_beta: float = 0.3

    def __post_init__(self):
        if list(self.betas) != sorted(set(self.betas)) or not all(b > 0 for b in self.betas):
            raise ValueError(f"{self.name}: betas must be positive and strictly ascending, got {self.betas}")
        if self.default_beta not in self.betas:
            raise ValueError(f"{self.name}: default_beta {self.default_beta} is not in its grid {self.betas}")


def _pairs_per_step(cfg) -> int:
    return cfg.batch_size


# From the loops' actual configs (see the docstrings of the *_train modules). Models held are the
# recipe's: a reference whose log-probs are cached still had to be held to cache them.
ON_POLICY_MODELS = ("policy", "reference", "reward_model")

_SPECS = [
    MethodSpec("ppo", "on-policy", "teachkit.rlhf.ppo_train", "PPOConfig", "train_ppo",
               lambda cfg: cfg.batch_size, knobs=(("clip_eps", "clip_eps"), ("gae_lambda", "gae_lambda")),
               models=("policy", "critic", "reference", "reward_model"), betas=(0.01, 0.05, 0.2, 0.8),
               default_beta=0.05),
    MethodSpec("remax", "on-policy", "teachkit.rlhf.remax_train", "ReMaxConfig", "train_remax",
               lambda cfg: 2 * cfg.batch_size, models=ON_POLICY_MODELS, betas=(0.1, 0.5, 2.0), default_beta=0.5),
    MethodSpec("grpo", "on-policy", "teachkit.rlhf.grpo_train", "GRPOConfig", "train_grpo",
               lambda cfg: cfg.prompts_per_step * cfg.group_size, fixed=(("advantage", "grpo"),),
               knobs=(("clip_eps", "clip_eps"), ("group_size", "group_size")), models=ON_POLICY_MODELS,
               betas=(0.01, 0.04, 0.16, 0.64), default_beta=0.04),
    MethodSpec("rloo", "on-policy", "teachkit.rlhf.grpo_train", "GRPOConfig", "train_grpo",
               lambda cfg: cfg.prompts_per_step * cfg.group_size, fixed=(("advantage", "rloo"),),
               knobs=(("clip_eps", "clip_eps"), ("group_size", "group_size")), models=ON_POLICY_MODELS,
               betas=(0.01, 0.04, 0.16, 0.64), default_beta=0.04),
    MethodSpec("dpo", "off-policy", "teachkit.rlhf.dpo_train", "DPOConfig", "train_dpo",
               _pairs_per_step, fixed=(("loss", "dpo"),), betas=(0.1, 0.3, 1.0, 3.0)),
    MethodSpec("dpop", "off-policy", "teachkit.rlhf.dpo_train", "DPOConfig", "train_dpo",
               _pairs_per_step, fixed=(("loss", "dpop"),), knobs=(("dpop_lambda", "lam"),),
               betas=(0.03, 0.1, 0.3, 1.0)),
    MethodSpec("ipo", "off-policy", "teachkit.rlhf.dpo_train", "DPOConfig", "train_dpo",
               _pairs_per_step, fixed=(("loss", "ipo"),)),
    MethodSpec("simpo", "off-policy", "teachkit.rlhf.dpo_train", "DPOConfig", "train_dpo",
               _pairs_per_step, beta_field="simpo_beta", fixed=(("loss", "simpo"),),
               models=("policy",), betas=(0.5, 2.0, 8.0, 32.0), default_beta=2.0),
    MethodSpec("tdpo", "off-policy", "teachkit.rlhf.tdpo_train", "TDPOConfig", "train_tdpo",
               _pairs_per_step, fixed=(("variant", 2),), betas=(0.1, 0.3, 1.0, 3.0)),
    MethodSpec("orpo", "off-policy", "teachkit.rlhf.orpo_train", "ORPOConfig", "train_orpo",
               _pairs_per_step, beta_field="lam", models=("policy",), betas=(0.01, 0.05, 0.1, 0.5),
               default_beta=0.1),
]
METHODS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}

KNOBS = {
    # runner knob -> (label, widget kind, min, max, step, default); the widget sweeps these ranges.
    # "log" sliders take min, max and step in log10 units. Every method has the "lr" knob.
    "lr": ("learning rate", "log", -5.0, -2.5, 0.5, 1e-4),
    "clip_eps": ("clip ε", "float", 0.05, 0.4, 0.05, 0.2),
    "group_size": ("group size", "int", 2, 16, 2, 8),
    "gae_lambda": ("GAE λ", "float", 0.5, 1.0, 0.05, 0.95),
    "dpop_lambda": ("DPOP λ", "float", 0.0, 100.0, 10.0, 50.0),
}


for _name, _s in list(METHODS.items()):
    METHODS[_name] = dataclasses.replace(_s, knobs=(("lr", "lr"),) + _s.knobs)


def _method_knobs() -> dict[str, dict[str, str]]:
    return {name: {k: KNOBS[k][0] for k, _ in spec.knobs} for name, spec in METHODS.items()}


METHOD_KNOBS = _method_knobs()


def knob_defaults(method: str) -> dict[str, float]:
    """The config-class defaults of a method's knobs (where its stored runs sit)."""
    spec = _spec(method)
    cls = getattr(importlib.import_module(spec.module), spec.config)
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    return {knob: fields[field] for knob, field in spec.knobs}


def method_order(name: str) -> int:
    """Sort key: on-policy methods first, in the order of the course, then off-policy."""
    order = list(METHODS) or []
    return order.index(name) if name in order else len(order)


def available_methods() -> dict[str, str | None]:
    """Method -> None if its loop imports, else the reason it is missing."""
    out = {}
    for name, spec in METHODS.items():
        try:
            module = importlib.import_module(spec.module)
            getattr(module, spec.config), getattr(module, spec.train)
            out[name] = None
        except (ImportError, AttributeError) as err:
            out[name] = f"{spec.module}: {type(err).__name__}: {err}"
    return out


def _spec(method: str) -> MethodSpec:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method]


def make_config(method: str, beta: float, budget: Budget, seed: int = 0, eval_points: int | None = None,
                **knobs):
    """The method's config with β, seed, knobs and the number of steps that the budget pays for.

    ``eval_points`` (optional) sets ``eval_every`` so that about that many evaluations are logged.
    """
    spec = _spec(method)
    module = importlib.import_module(spec.module)
    cls = getattr(module, spec.config)
    mapping = dict(spec.knobs)
    unknown = set(knobs) - set(mapping)
    if unknown:
        raise ValueError(f"{method} has no knob(s) {sorted(unknown)}; its knobs are {sorted(mapping)}")
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be positive, got {beta!r}")
    values = dict(spec.fixed)
    values[spec.beta_field] = float(beta)
    values["seed"] = int(seed)
    values.update({mapping[k]: v for k, v in knobs.items()})
    cfg = cls(**values)
    steps = budget.steps(spec.family, spec.labels_per_step(cfg))
    cfg = dataclasses.replace(cfg, **{spec.steps_field: steps})
    if eval_points is not None:
        if not isinstance(eval_points, int) or eval_points < 1:
            raise ValueError(f"eval_points must be a positive int, got {eval_points!r}")
        cfg = dataclasses.replace(cfg, eval_every=max(1, steps // eval_points))
    return cfg


def _scalar_config(cfg) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items()
            if v is None or isinstance(v, (bool, int, float, str))}


def run_reference(world, seed: int = 0) -> dict:
    """Evaluate the SFT policy itself: the start point of every frontier."""
    from ..toy.evaluate import evaluate_policy

    metrics = evaluate_policy(world, world.reference, seed=seed)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def missing_record(method: str, reason: str, task: str = "") -> dict:
    """A table row for a method whose loop is not built: shown as missing, never faked."""
    spec = METHODS.get(method)
    return {"method": method, "family": spec.family if spec else "?", "status": "missing",
            "reason": reason, "task": task, "beta": None}


def run_method(world, method: str, beta: float, budget: Budget, seed: int = 0,
               eval_points: int | None = None, extra_eval=None, **knobs) -> dict:
    """Train ``method`` from the SFT policy under ``budget``; return a record of results and costs.

    ``record["history"]`` is the loop's history (curves only); ``record["final"]`` the last logged
    evaluation (plus what ``extra_eval(world, policy) -> dict`` returns); ``record["costs"]`` wall time (training only, the loops exclude evaluation), labels
    used, samples generated, models held, trainable parameters, optimizer state and peak memory.
    """
    spec = _spec(method)
    cfg = make_config(method, beta, budget, seed, eval_points, **knobs)
    if "profile_step" in {f.name for f in dataclasses.fields(cfg)}:
        cfg = dataclasses.replace(cfg, profile_step=min(2, getattr(cfg, spec.steps_field)))
    train = getattr(importlib.import_module(spec.module), spec.train)
    start = time.perf_counter()
    policy, raw = train(world, cfg)
    total_seconds = time.perf_counter() - start
    history, measured = _split_history(raw)
    if not measured:                      # the loop does not profile itself: probe one step
        measured = probe_offline_costs(world, spec, cfg)
    used = history["reward_queries"][-1] if spec.family == "on-policy" else history["pairs_seen"][-1]
    final = {k: history[k][-1] for k in ("gold_reward", "proxy_reward", "kl_to_ref")}
    for k in ("greedy_gold_reward", "mean_length"):
        if k in history:
            final[k] = history[k][-1]
    if extra_eval is not None:
        final.update({k: float(v) for k, v in extra_eval(world, policy).items()})
    return {
        "method": method, "family": spec.family, "status": "ok", "task": world.task.name,
        "beta": float(beta), "seed": int(seed), "knobs": {k: float(v) for k, v in knobs.items()},
        "config": _scalar_config(cfg), "history": history, "final": final,
        "costs": {
            "wall_seconds": history["seconds"][-1], "total_seconds": total_seconds,
            "labels_used": float(used), "samples_generated": history["samples_generated"][-1],
            "reward_queries": history["reward_queries"][-1], "pairs_seen": history["pairs_seen"][-1],
            "models_held": float(len(spec.models)), "models": "+".join(spec.models),
            "trainable_params": measured["trainable_params"], "optimizer_mb": measured["optimizer_mb"],
            "resident_mb": measured["resident_mb"], "step_peak_mb": measured["step_peak_mb"],
            "peak_memory_mb": measured["peak_mb"],
        },
    }


COST_KEYS = ("models_held", "trainable_params", "frozen_params", "weight_bytes", "grad_bytes",
             "optimizer_bytes", "resident_mb", "optimizer_mb", "step_peak_mb", "peak_mb", "seconds_per_step")


def _split_history(raw: dict) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The loop's curves, and the one-off cost figures a profiled loop appends (``costs.cost_summary``)."""
    missing = [k for k in HISTORY_KEYS if k not in raw]
    if missing:
        raise ValueError(f"the loop's history lacks the keys {missing} required by the contract")
    n = len(raw["step"])
    curves = {k: [float(v) for v in vals] for k, vals in raw.items()
              if k not in COST_KEYS and isinstance(vals, (list, tuple)) and len(vals) == n}
    measured = {k: float(raw[k][0]) for k in COST_KEYS if k in raw and len(raw[k]) == 1}
    return curves, (measured if "peak_mb" in measured else {})


def probe_offline_costs(world, spec: MethodSpec, cfg) -> dict[str, float]:
    """Resident memory and the peak of one training step of an off-policy method, measured.

    The off-policy loops do not profile themselves, so we replay their step from outside: one
    forward pass over ``batch_size`` chosen ⊕ rejected completions (``offpolicy.pair_forward``, the
    pass every off-policy loss shares), backward, an AdamW step. A warm-up step first allocates
    Adam's state, so the profiled step sees what every later step sees. The losses differ only in
    a few (B,)-sized terms, negligible next to the activations, except TDPO's full-vocabulary KL,
    whose (B, T, V) logits the pair forward already holds.
    """
    from .costs import StepPeak, cost_summary, model_costs
    from .offpolicy import pair_data, pair_forward

    policy = world.new_base_model() if spec.name == "orpo" else world.new_policy()
    data = pair_data(world, "train", getattr(cfg, "pairs", "all"), reference=False)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=0.0)

    def step():
        b = data.sample(cfg.batch_size, g)
        c, r, _, _ = pair_forward(policy, b.prompts, b.chosen, b.chosen_mask, b.rejected, b.rejected_mask)
        loss = -torch.nn.functional.logsigmoid(c - r).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    with StepPeak() as peak:
        step()
    held = {"policy": policy}
    if "reference" in spec.models:
        held["reference"] = world.reference
    costs = model_costs(held, [opt])
    return {k: float(v) for k, v in cost_summary(costs, peak.bytes, float("nan")).items()}
