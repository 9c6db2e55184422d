"""What an RLHF method costs: models held, trainable parameters, optimizer state, peak memory, time.

Two kinds of memory, measured differently and reported separately:

- **Resident state** stays allocated for the whole run: the weights of every model the method
  holds (policy, reference, reward model, and PPO's critic), plus, for each *trainable* network,
  its gradients and Adam's two moment tensors. We count these exactly from the tensors
  themselves (``numel × element_size``; optimizer state read from ``optimizer.state``).
- **Step peak** is the high-water mark of the tensors a training iteration allocates on top of
  the resident state: activations kept for backward, sampled completions, logits, temporaries.
  We measure it with ``torch.profiler`` (``profile_memory=True``): every allocation and free
  by torch's CPU allocator is an event with a signed byte count; the running sum, in time
  order, is the live extra memory, and its maximum is the step peak.

``peak = resident + step peak`` is the memory the method needs; it counts torch tensors only,
not the Python interpreter or allocator slack (``resource``/RSS figures mix those in and, at toy
scale, drown the difference). Seconds per step are wall-clock medians of unprofiled iterations.

Why a critic costs so much at scale: in mixed precision a trainable network costs ≈16 bytes per
parameter (2 weight + 2 gradient + 12 for Adam's fp32 master weights and moments), a frozen one
2. PPO holds two trainable and two frozen networks of the same size, 2·16 + 2·2 = 36 bytes per
parameter; ReMax drops the critic, 16 + 2·2 = 20: 44% less, close to the ≈46% the ReMax paper
measured at 7B (arXiv:2310.10505v4, abstract). In fp32 at toy scale it is 16 vs 4 bytes, 2·16 + 2·4 = 40 against 24 (40% less),
and activations matter more, so the toy saving is smaller: notebook 03 measures it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

__all__ = ["ModelCosts", "model_costs", "optimizer_state_bytes", "StepPeak", "Timer", "cost_summary"]


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state`` (Adam: exp_avg, exp_avg_sq and a step counter)."""
    return _bytes(v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))


@dataclass
class ModelCosts:
    models_held: int
    trainable_params: int
    frozen_params: int
    weight_bytes: int
    grad_bytes: int
    optimizer_bytes: int

    @property
    def resident_bytes(self) -> int:
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes


def model_costs(models: dict[str, torch.nn.Module], optimizers: list[torch.optim.Optimizer] = ()) -> ModelCosts:
    """Count what ``models`` (name -> module, shared modules counted once) and their optimizers hold.

    Gradients are counted for every trainable parameter (they are live during the update).
    Call after at least one optimizer step: Adam allocates its state lazily.
    """
    seen: dict[int, torch.nn.Parameter] = {}
    for m in models.values():
        for p in m.parameters():
            seen.setdefault(id(p), p)
    params = list(seen.values())
    trainable = [p for p in params if p.requires_grad]
    return ModelCosts(
        models_held=len(models),
        trainable_params=sum(p.numel() for p in trainable),
        frozen_params=sum(p.numel() for p in params if not p.requires_grad),
        weight_bytes=_bytes(params),
        grad_bytes=_bytes(trainable),
        optimizer_bytes=sum(optimizer_state_bytes(o) for o in optimizers),
    )


class StepPeak:
    """Context manager: the peak of torch CPU allocations made inside the block, in bytes.

        with StepPeak() as peak:
            one_training_iteration()
        peak.bytes

    The profiler's C++ side prints start/stop banners and allocator notes straight to file
    descriptor 2; we point that descriptor at /dev/null inside the block (Python exceptions and
    warnings still reach you: they do not go through descriptor 2 in Jupyter).
    """

    bytes: int = 0

    def __enter__(self) -> "StepPeak":
        from torch.profiler import ProfilerActivity, profile

        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self._prof.__exit__(*exc)
        finally:
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
        events = [e for e in self._prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        live = peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()
            peak = max(peak, live)
        self.bytes = int(peak)
        return False


class Timer:
    """Wall-clock seconds of repeated blocks: ``with timer: ...``; ``timer.median``."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    @contextmanager
    def __call__(self, record: bool = True):
        start = time.perf_counter()
        yield
        if record:
            self.samples.append(time.perf_counter() - start)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


def cost_summary(costs: ModelCosts, step_peak_bytes: int, seconds_per_step: float) -> dict[str, float]:
    """One flat dict of floats (MB and counts), ready for a table or a history entry."""
    mb = 1 / 2 ** 20
    out = {k: float(v) for k, v in asdict(costs).items()}
    out.update(resident_mb=costs.resident_bytes * mb, optimizer_mb=costs.optimizer_bytes * mb,
               step_peak_mb=step_peak_bytes * mb, peak_mb=(costs.resident_bytes + step_peak_bytes) * mb,
               seconds_per_step=float(seconds_per_step))
    return out
