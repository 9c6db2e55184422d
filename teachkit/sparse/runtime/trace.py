"""The trace: when each stage of each cluster ran, on which lane.

An event is one stage of one cluster in one layer (PowerInfer-2, arXiv:2406.06282v3, §4.3): a read on
an I/O lane or a compute on the compute lane, with its start and end in seconds from the trace's origin
(``time.perf_counter``). The engine records every event here; the notebooks, the Gantt charts
(:func:`teachkit.viz.plot_gantt`) and the planner read them back through the methods below, so no
reader indexes a tuple by position.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Iterable, NamedTuple

__all__ = ["TraceEvent", "Trace", "READ_STAGES", "CLUSTER_COMPUTE_STAGES"]

# The reads a token waits for (a look-ahead "prefetch_read" is for a later token).
READ_STAGES = frozenset({"bundle_read", "gate_read", "updown_read"})
# The stages that compute a cluster's neurons (the gate pass alone does not produce output).
CLUSTER_COMPUTE_STAGES = frozenset({"updown_compute", "fused_compute"})


class TraceEvent(NamedTuple):
    lane: str        # "io", "compute", ...: lanes starting with the same prefix share a resource
    stage: str       # one of Trace.STAGES
    layer: int
    cluster: int     # -1 for work that is not one cluster's (attention, a batch of in-memory rows)
    t0: float        # seconds since the trace's origin
    t1: float

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    @property
    def is_read(self) -> bool:
        """Any read, a look-ahead's prefetch included."""
        return self.stage.endswith("_read")


class Trace:
    """Timestamped stage events (:class:`TraceEvent`), kept in a ring.

    It keeps the last ``maxlen`` events (about 170 B each, so at most ~0.7 MiB by default), so an
    engine that decodes for hours holds no more than one that decoded a few tokens.
    ``maxlen=None`` keeps everything (a short, fully traced run).
    """

    STAGES = ("attention", "predict", "submit", "bundle_read", "gate_read", "gate_compute", "updown_read",
              "updown_compute", "fused_compute", "wait", "prefill", "lookahead", "prefetch_read")
    MAXLEN = 4096

    def __init__(self, enabled: bool = True, maxlen: int | None = MAXLEN):
        self.enabled = enabled
        self.events: deque[TraceEvent] = deque(maxlen=maxlen)
        self.t_origin = time.perf_counter()

    def add(self, lane: str, stage: str, layer: int, cluster: int, t0: float, t1: float) -> None:
        if self.enabled:
            self.events.append(TraceEvent(lane, stage, layer, cluster, t0 - self.t_origin, t1 - self.t_origin))

    def clear(self) -> None:
        self.events.clear()
        self.t_origin = time.perf_counter()

    def select(self, lane_prefix: str = "", stages: Iterable[str] | None = None,
               layer: int | None = None) -> list[TraceEvent]:
        """The events on lanes starting with ``lane_prefix``, in ``stages`` and ``layer`` (None: any)."""
        stages = None if stages is None else frozenset(stages)
        return [e for e in self.events if e.lane.startswith(lane_prefix)
                and (stages is None or e.stage in stages) and (layer is None or e.layer == layer)]

    def busy(self, lane_prefix: str, stages: Iterable[str] | None = None) -> float:
        """Total seconds spent in ``stages`` on lanes starting with ``lane_prefix``."""
        return sum(e.seconds for e in self.select(lane_prefix, stages))

    def covered(self, lane_prefix: str, stages: Iterable[str] | None = None) -> float:
        """Seconds during which at least one such event was running (overlapping reads count once)."""
        total, end = 0.0, float("-inf")
        for a, b in sorted((e.t0, e.t1) for e in self.select(lane_prefix, stages)):
            if b > end:
                total += b - max(a, end)
                end = b
        return total

    def reads_per_layer(self) -> dict[int, int]:
        """How many read events each layer has."""
        counts: dict[int, int] = {}
        for e in self.events:
            if e.is_read:
                counts[e.layer] = counts.get(e.layer, 0) + 1
        return counts

    def computes_during_reads(self) -> int:
        """Up/down or fused computes that started before their layer's last read ended: the
        overlap a cluster-level pipeline exists for. A matrix-level one computes only gates
        while its reads are in flight (its barrier holds every up/down until they have landed),
        so it counts none."""
        last_read: dict[int, float] = {}
        for e in self.events:
            if e.is_read:
                last_read[e.layer] = max(last_read.get(e.layer, 0.0), e.t1)
        return sum(1 for e in self.events if e.stage in CLUSTER_COMPUTE_STAGES
                   and e.layer in last_read and e.t0 < last_read[e.layer])
