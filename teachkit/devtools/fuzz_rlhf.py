"""Fuzz the public API of ``teachkit.rlhf`` with bad input and count what comes back.

    python -m teachkit.devtools.fuzz_rlhf [--seeds N]

For each public function, from a clean float64 call (the reference) we derive perturbed calls:
other dtypes of each tensor and of the mask, lists instead of tensors, a shape mismatch, an
empty batch (B = 0, T = 0, an all-zero mask), a 0/1-violating mask, NaN/±inf *under* mask 0,
NaN *under* mask 1, an all-zero mask row, and each hyperparameter at and beyond its edges.
Each call is classified against the contract of ``teachkit.rlhf.validate``:

- ``correct``: a value equal to the reference (poison under mask 0: value *and* gradient equal to
  the clean call's; NaN under mask 1: a NaN result);
- ``clear error``: ValueError or TypeError whose message names the argument;
- ``silent wrong``: a value where an error was due, or a value that differs from the reference;
- ``unhelpful error``: another exception type, or a message that names no argument;
- ``good input rejected``: an error on input the contract accepts.

The target is 0 for every category but the first two.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import rlhf

OUTCOMES = ("correct", "clear error", "silent wrong", "unhelpful error", "good input rejected")


@dataclass
class Spec:
    """How to call one public function: ``make(g, B, T)`` builds clean float64 keyword arguments."""

    fn: Callable
    make: Callable[[torch.Generator, int, int], dict]
    masked: tuple[str, ...] = ()          # tensors the mask covers (poisonable under mask 0)
    hyper: dict[str, tuple] = field(default_factory=dict)  # name -> (low, high, low_open, high_open)
    choices: dict[str, tuple] = field(default_factory=dict)  # name -> (valid..., ) for discrete args
    per_token: bool = False               # has a time axis T (so T = 0 is an empty batch)


def _logp(g, *shape):
    return -(torch.rand(*shape, generator=g, dtype=torch.float64) * 3 + 0.05)


def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _prefix_mask(g, B, T, min_len=1):
    lengths = torch.randint(min(min_len, T), T + 1, (B,), generator=g) if B else torch.zeros(0, dtype=torch.long)
    return (torch.arange(T)[None] < lengths[:, None]).to(torch.float64)


def _pairs(*names, kind=_logp):
    return lambda g, B, T: {n: kind(g, B) for n in names}


FOUR = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
TDPO = ("chosen_logratios", "rejected_logratios", "chosen_seq_kl", "rejected_seq_kl")
POSITIVE = (0.0, None, True, False)       # > 0
NON_NEGATIVE = (0.0, None, False, False)  # >= 0
UNIT = (0.0, 1.0, False, False)           # [0, 1]


def _tokens(*names, kind=_randn):
    return lambda g, B, T: {**{n: kind(g, B, T) for n in names}, "mask": _prefix_mask(g, B, T)}


SPECS: dict[str, Spec] = {
    "masked_sum": Spec(rlhf.masked_sum, _tokens("x"), ("x",), per_token=True),
    "masked_mean": Spec(rlhf.masked_mean, _tokens("x"), ("x",), per_token=True),
    "masked_var": Spec(rlhf.masked_var, _tokens("x"), ("x",), per_token=True),
    "whiten": Spec(rlhf.whiten, _tokens("x"), ("x",), {"eps": POSITIVE}, per_token=True),
    "gae": Spec(rlhf.gae, _tokens("rewards", "values"), ("rewards", "values"),
                {"gamma": UNIT, "lam": UNIT}, per_token=True),
    "ppo_policy_loss": Spec(rlhf.ppo_policy_loss, lambda g, B, T: {
        "logp": _logp(g, B, T), "old_logp": _logp(g, B, T), "advantages": _randn(g, B, T),
        "mask": _prefix_mask(g, B, T)}, ("logp", "old_logp", "advantages"), {"clip_eps": POSITIVE}, per_token=True),
    "ppo_value_loss": Spec(rlhf.ppo_value_loss, _tokens("values", "old_values", "returns"),
                           ("values", "old_values", "returns"), {"clip_eps": POSITIVE}, per_token=True),
    "clip_fraction": Spec(rlhf.clip_fraction, _tokens("logp", "old_logp", kind=_logp), ("logp", "old_logp"),
                          {"clip_eps": POSITIVE}, per_token=True),
    "reinforce_loss": Spec(rlhf.reinforce_loss, lambda g, B, T: {
        "logp": _logp(g, B, T), "advantages": _randn(g, B), "mask": _prefix_mask(g, B, T)}, ("logp",), per_token=True),
    "aggregate_loss": Spec(rlhf.aggregate_loss, _tokens("per_token"), ("per_token",),
                           choices={"aggregation": rlhf.AGGREGATIONS}, per_token=True),
    "grpo_loss": Spec(rlhf.grpo_loss, lambda g, B, T: {
        "logp": _logp(g, B, T), "old_logp": _logp(g, B, T), "ref_logp": _logp(g, B, T),
        "advantages": _randn(g, B), "mask": _prefix_mask(g, B, T)}, ("logp", "old_logp", "ref_logp"),
        {"clip_eps": POSITIVE, "beta": NON_NEGATIVE}, {"aggregation": rlhf.AGGREGATIONS}, per_token=True),
    "sequence_logps": Spec(rlhf.sequence_logps, _tokens("token_logps", kind=_logp), ("token_logps",), per_token=True),
    "sequential_kl": Spec(rlhf.sequential_kl, lambda g, B, T: {
        "policy_logits": _randn(g, B, T, 5), "ref_logits": _randn(g, B, T, 5), "mask": _prefix_mask(g, B, T)},
        ("policy_logits", "ref_logits"), per_token=True),
    "kl_k1": Spec(rlhf.kl_k1, _pairs("logp", "ref_logp")),
    "kl_k2": Spec(rlhf.kl_k2, _pairs("logp", "ref_logp")),
    "kl_k3": Spec(rlhf.kl_k3, _pairs("logp", "ref_logp")),
    "bradley_terry_loss": Spec(rlhf.bradley_terry_loss, _pairs("chosen_rewards", "rejected_rewards", kind=_randn)),
    "remax_advantages": Spec(rlhf.remax_advantages, _pairs("sample_rewards", "greedy_rewards", kind=_randn)),
    "grpo_advantages": Spec(rlhf.grpo_advantages, lambda g, B, T: {"rewards": _randn(g, 3 * B), "group_size": 3},
                            hyper={"eps": POSITIVE}),
    "rloo_advantages": Spec(rlhf.rloo_advantages, lambda g, B, T: {"rewards": _randn(g, 3 * B), "group_size": 3}),
    "dpo_loss": Spec(rlhf.dpo_loss, _pairs(*FOUR), hyper={"beta": POSITIVE}),
    "ipo_loss": Spec(rlhf.ipo_loss, _pairs(*FOUR), hyper={"beta": POSITIVE}),
    "implicit_rewards": Spec(rlhf.implicit_rewards, _pairs(*FOUR), hyper={"beta": POSITIVE}),
    "dpop_loss": Spec(rlhf.dpop_loss, _pairs(*FOUR), hyper={"beta": POSITIVE, "lam": NON_NEGATIVE},
                      choices={"form": rlhf.dpo.DPOP_FORMS}),
    "simpo_loss": Spec(rlhf.simpo_loss, _pairs("chosen_mean_logps", "rejected_mean_logps"),
                       hyper={"beta": POSITIVE, "gamma": NON_NEGATIVE}),
    "orpo_loss": Spec(rlhf.orpo_loss, _pairs("chosen_mean_logps", "rejected_mean_logps"), hyper={"lam": NON_NEGATIVE}),
    "log_odds": Spec(rlhf.log_odds, _pairs("mean_logps")),
    "log1mexp": Spec(rlhf.log1mexp, _pairs("x")),
    "tdpo_loss": Spec(rlhf.tdpo_loss, _pairs(*TDPO), hyper={"beta": POSITIVE, "alpha": NON_NEGATIVE},
                      choices={"variant": (1, 2)}),
    "tdpo_rewards": Spec(rlhf.tdpo_rewards, _pairs(*TDPO), hyper={"beta": POSITIVE}),
}


@dataclass
class Call:
    """One perturbed call: its kwargs, what the contract expects, and how to judge a value."""

    what: str
    kwargs: dict
    expect: str                 # "value", "error" or "either" (a clear error or the reference value)
    names: tuple[str, ...]      # an error must name one of these
    judge: str = "reference"    # "reference", "nan" (result must be NaN) or "finite"
    grad_of: tuple[str, ...] = ()  # tensors whose gradient must equal the clean call's


def _outputs(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, tuple) else [result]


def _tensors(kwargs: dict) -> list[str]:
    return [k for k, v in kwargs.items() if isinstance(v, torch.Tensor) and k != "mask"]


def perturbations(spec: Spec, g: torch.Generator, B: int = 3, T: int = 4):
    """Yield ``(Call, clean_kwargs)`` for one function at one seed."""
    clean = spec.make(g, B, T)
    has_mask = "mask" in clean
    yield Call("clean float64", clean, "value", ()), clean
    tensors = _tensors(clean)
    for name in tensors:
        for dtype in (torch.float32, torch.int64, torch.int32, torch.bool):
            kw = {**clean, name: clean[name].to(dtype)}
            if dtype == torch.float32:
                yield Call(f"{name} float32", kw, "value", (name,)), clean
            else:  # integer or bool values: a clear error, or the value of the same numbers in float
                same = {**clean, name: kw[name].to(torch.float64)}
                yield Call(f"{name} {dtype}", kw, "either", (name,)), same
        yield Call(f"{name} as list", {**clean, name: clean[name].tolist()}, "either", (name,)), clean
        if len(tensors) == 1 and not has_mask and "group_size" not in clean:
            continue                          # elementwise on one tensor: every shape is valid
        cut = clean[name][..., :-1] if clean[name].dim() > 1 else clean[name][:-1]
        yield Call(f"{name} shape mismatch", {**clean, name: cut}, "error", (name,)), clean
    for hname, (low, high, low_open, high_open) in spec.hyper.items():
        edges = [(low, "error" if low_open else "value")] if low is not None else []
        edges += [(high, "error" if high_open else "value")] if high is not None else []
        bad = [low - 0.5] if low is not None else []
        bad += [high + 0.5] if high is not None else []
        bad += [math.nan, math.inf, -math.inf, True, "0.1", None]
        for v, expect in edges + [(b, "error") for b in bad]:
            yield Call(f"{hname}={v!r}", {**clean, hname: v}, expect, (hname,), judge="finite"), clean
    for cname, valid in spec.choices.items():
        for v in valid:
            yield Call(f"{cname}={v!r}", {**clean, cname: v}, "value", (cname,), judge="finite"), clean
        for v in ("bogus", 7, True, None):
            yield Call(f"{cname}={v!r}", {**clean, cname: v}, "error", (cname,)), clean
    if "group_size" in clean:
        for v in (1, 0, -3, 2.5, True, None, 3 * B + 1):   # 3·B + 1 does not divide 3·B rewards
            yield Call(f"group_size={v!r}", {**clean, "group_size": v}, "error", ("group_size",)), clean
    empty = spec.make(g, 0, T)
    yield Call("empty batch B=0", empty, "error", tuple(_tensors(empty)) + ("mask",)), clean
    if spec.per_token:
        empty_t = spec.make(g, B, 0)
        yield Call("empty batch T=0", empty_t, "error", tuple(_tensors(empty_t)) + ("mask",)), clean
    if not has_mask:
        for name in tensors:
            kw = {**clean, name: clean[name].clone()}
            kw[name].view(-1)[0] = math.nan
            yield Call(f"NaN in {name}", kw, "either", (name,), judge="nan"), clean
        return
    mask = clean["mask"]
    for dtype in (torch.bool, torch.int64, torch.int8, torch.float32):
        yield Call(f"mask {dtype}", {**clean, "mask": mask.to(dtype)}, "value", ("mask",)), clean
    yield Call("mask as list", {**clean, "mask": mask.tolist()}, "either", ("mask",)), clean
    for v in (0.5, 2.0, -1.0, math.nan):
        bad = mask.clone()
        bad[0, 0] = v
        yield Call(f"mask holds {v}", {**clean, "mask": bad}, "error", ("mask",)), clean
    yield Call("mask all 0", {**clean, "mask": torch.zeros_like(mask)}, "error", ("mask",)), clean
    yield Call("mask wrong shape", {**clean, "mask": mask[:, :-1]}, "error", ("mask",)), clean
    zero_row = mask.clone()
    zero_row[-1] = 0
    row_clean = {**clean, "mask": zero_row}
    for poison in (math.nan, math.inf, -math.inf):
        for masked_mask, label in ((mask, ""), (zero_row, ", last row all 0"))[:2 if B > 1 else 1]:
            kw = {**clean, "mask": masked_mask}
            keep = masked_mask.bool()
            for name in spec.masked:
                k = keep[..., None] if kw[name].dim() == 3 else keep
                kw[name] = torch.where(k, clean[name], poison)
            yield (Call(f"{poison} under mask 0{label}", kw, "value", spec.masked, grad_of=spec.masked),
                   clean if masked_mask is mask else row_clean)
    for name in spec.masked:
        kw = {**clean, name: clean[name].clone()}
        kw[name][(0, 0)] = math.nan           # position (0, 0) is always under mask 1
        yield Call(f"NaN under mask 1 in {name}", kw, "either", (name,), judge="nan"), clean


def _grads(fn, kwargs, names):
    kw = {k: (v.detach().clone().requires_grad_() if k in names else v) for k, v in kwargs.items()}
    out = _outputs(fn(**kw))
    total = sum(o.sum() for o in out if o.requires_grad)
    if not isinstance(total, torch.Tensor):
        return None
    total.backward()
    return [kw[n].grad for n in names]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.is_floating_point() != b.is_floating_point():
        return False
    return bool(torch.allclose(a.double(), b.double(), rtol=1e-3, atol=1e-5, equal_nan=True))


def classify(spec: Spec, call: Call, reference_kwargs: dict) -> str:
    """Run one call and return its outcome (one of ``OUTCOMES``)."""
    try:
        result = spec.fn(**call.kwargs)
    except (ValueError, TypeError) as err:
        if call.names and not any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", str(err)) for n in call.names):
            return "unhelpful error"
        return "good input rejected" if call.expect == "value" else "clear error"
    except Exception:  # noqa: BLE001 - any other crash is what we count
        return "unhelpful error"
    if call.expect == "error":
        return "silent wrong"
    got = _outputs(result)
    if call.judge == "nan":
        return "correct" if any(bool(torch.isnan(o).any()) for o in got) else "silent wrong"
    if call.judge == "finite":
        return "correct" if all(bool(torch.isfinite(o).all()) for o in got) else "silent wrong"
    want = _outputs(spec.fn(**reference_kwargs))
    if len(got) != len(want) or not all(_same(a, b) for a, b in zip(got, want)):
        return "silent wrong"
    if call.grad_of:
        g_got, g_want = _grads(spec.fn, call.kwargs, call.grad_of), _grads(spec.fn, reference_kwargs, call.grad_of)
        if g_want is not None:
            for a, b in zip(g_got, g_want):
                if (a is None) != (b is None):
                    return "silent wrong"
                if a is not None and not (bool(torch.isfinite(a).all()) and _same(a, b)):
                    return "silent wrong"
    return "correct"


def fuzz(seeds: int = 2, verbose: bool = False) -> tuple[Counter, list[str]]:
    """Every perturbation of every public function at ``seeds`` seeds (seed 0 at B = 3, T = 4, the
    others at shapes from 1×1 to 4×6): outcome counts and the bad cases."""
    counts: Counter = Counter()
    bad: list[str] = []
    for seed in range(seeds):
        for name, spec in SPECS.items():
            g = torch.Generator().manual_seed(1000 * seed + len(name))
            B, T = (3, 4) if seed == 0 else (1 + seed % 4, 1 + (3 * seed) % 6)
            for call, ref in perturbations(spec, g, B, T):
                outcome = classify(spec, call, ref)
                counts[outcome] += 1
                if outcome not in ("correct", "clear error"):
                    bad.append(f"{name}({call.what}): {outcome}")
                    if verbose:
                        print(bad[-1])
    return counts, bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    counts, bad = fuzz(args.seeds, args.verbose)
    print(f"{len(SPECS)} public functions, {sum(counts.values())} calls")
    for outcome in OUTCOMES:
        print(f"  {outcome:20s} {counts[outcome]}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
