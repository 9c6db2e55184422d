"""Neuron clusters: hot/cold classification, cluster sizing, and the bundle order on disk.

A neuron is row i of gate/up plus row i of the transposed down matrix; its bundle
``[gate_i | up_i | down_i]`` is ``n_mats · d · bytes_per_weight`` bytes (48 KiB at d = 4096 in
fp32). PowerInfer-2 runs FFN work in *clusters* of neurons:

* **hot** neurons (those that fire most often, by recorded frequency) are merged into a few
  large clusters computed densely: they fire so often that predicting them saves little;
* **cold** neurons form small clusters, and only the neurons the predictor marks active are
  computed.

The cluster is the unit of work a thread (or the I/O pipeline) takes. Too small and the
per-task overhead dominates; too large and the threads cannot share the work evenly.
:func:`cluster_size_for_overhead` derives the size from two measured times: a task costs
``t0 + n·t1`` (fixed overhead t0, t1 per neuron), so the overhead is at most a share ``ε`` of
the task when ``n ≥ t0 / (ε·t1)``. :func:`cluster_size` converts a target unit in bytes into
neurons instead (PowerInfer-2 cuts the CPU part into 512×4096 fp32 chunks).

Reordering neurons by frequency (:func:`hot_first_order`) puts the hot set in one contiguous
range, so a hot cluster is a plain slice ``bundles[a:b]`` read sequentially.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["classify_hot", "cluster_size", "cluster_size_for_overhead", "hot_first_order", "NeuronClusters", "make_clusters"]


def classify_hot(freq, coverage: float = 0.5, max_hot: float = 0.3) -> np.ndarray:
    """Boolean mask of *hot* neurons: the most frequent ones whose firings make up
    ``coverage`` of all firings, but at most ``max_hot`` of all neurons."""
    f = np.asarray(freq, dtype=np.float64)
    if f.ndim != 1 or len(f) == 0:
        raise ValueError(f"freq must be a non-empty 1-D array, got shape {f.shape}")
    if not 0 <= coverage <= 1 or not 0 <= max_hot <= 1:
        raise ValueError("coverage and max_hot must lie in [0, 1]")
    order = np.argsort(-f, kind="stable")
    total = f.sum()
    k = 0 if total == 0 else int(np.searchsorted(np.cumsum(f[order]) / total, coverage) + 1)
    k = min(k, int(max_hot * len(f)))
    hot = np.zeros(len(f), bool)
    hot[order[:k]] = True
    return hot


def cluster_size(d: int, n_mats: int = 3, bytes_per_weight: int = 4,
                 unit_bytes: int = 512 * 4096 * 4 * 3) -> int:
    """Neurons per cluster so that one cluster holds about ``unit_bytes`` of weights."""
    per_neuron = d * n_mats * bytes_per_weight
    if per_neuron <= 0 or unit_bytes <= 0:
        raise ValueError("d, n_mats, bytes_per_weight and unit_bytes must be positive")
    return max(1, int(round(unit_bytes / per_neuron)))


def cluster_size_for_overhead(task_overhead_s: float, per_neuron_s: float,
                              max_overhead: float = 0.05) -> int:
    """Fewest neurons per cluster so a task's fixed overhead is at most ``max_overhead`` of its
    neuron work: ``n = ceil(t0 / (max_overhead · t1))``."""
    if task_overhead_s < 0 or per_neuron_s <= 0 or not 0 < max_overhead <= 1:
        raise ValueError("need task_overhead_s >= 0, per_neuron_s > 0 and 0 < max_overhead <= 1, "
                         f"got {task_overhead_s}, {per_neuron_s}, {max_overhead}")
    n = task_overhead_s / (max_overhead * per_neuron_s)
    return max(1, int(np.ceil(n * (1 - 1e-12))))          # 40.000000001 is 40, not 41


def hot_first_order(freq) -> np.ndarray:
    """Permutation of neurons by decreasing firing frequency (stable): hot ones first."""
    return np.argsort(-np.asarray(freq, dtype=np.float64), kind="stable").astype(np.int64)


@dataclass
class NeuronClusters:
    """Clusters over *reordered* neurons: ``order[j]`` is the original neuron at position j."""

    order: np.ndarray           # (n,) int64 permutation, hot neurons first
    n_hot: int                  # positions [0, n_hot) are hot
    hot: list                   # list of (start, stop) slices of hot positions
    cold: list                  # list of (start, stop) slices of cold positions

    def cold_active(self, active_positions: np.ndarray) -> list[np.ndarray]:
        """Split sorted active *positions* into per-cold-cluster index arrays (empty dropped)."""
        out = []
        for a, b in self.cold:
            lo, hi = np.searchsorted(active_positions, [a, b])
            if hi > lo:
                out.append(active_positions[lo:hi])
        return out


def make_clusters(freq, hot_size: int, cold_size: int, coverage: float = 0.5,
                  max_hot: float = 0.3) -> NeuronClusters:
    """Reorder neurons hot-first and cut hot and cold ranges into clusters of the given sizes."""
    if hot_size < 1 or cold_size < 1:
        raise ValueError(f"cluster sizes must be >= 1, got {hot_size}, {cold_size}")
    hot = classify_hot(freq, coverage, max_hot)
    order = hot_first_order(freq)
    n_hot, n = int(hot.sum()), len(order)
    cut = lambda a, b, s: [(i, min(i + s, b)) for i in range(a, b, s)]  # noqa: E731
    return NeuronClusters(order, n_hot, cut(0, n_hot, hot_size), cut(n_hot, n, cold_size))
