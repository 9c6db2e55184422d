"""One layer's cache lookup: its active neurons routed to hot clusters and cold neurons, both
regions' LRUs looked up in one numba call.

This runs between the prediction and the reads, on every layer of every token, so the routing
(:class:`LayerRouting`, views of the segmented cache's hot-cluster maps) and both
:func:`~teachkit.sparse.runtime.lru.lru_lookup` calls happen in a single compiled function;
the result is a :class:`LayerPlan`: where each active neuron is, and which slots were given to
misses (their bytes must be read). :meth:`~teachkit.sparse.runtime.cache.SegmentedCache.split_active`
is the cache's entry point to it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .lru import LRUTable, lru_lookup

__all__ = ["LayerRouting", "LayerPlan", "look_up_layer"]


class LayerRouting(NamedTuple):
    """Where one layer's neurons go: its rows of the cache's hot-cluster maps, and its keys' offsets."""

    cluster_of: np.ndarray   # neuron -> its hot cluster in this layer, -1 for a cold neuron
    pos_of: np.ndarray       # neuron -> its row inside that cluster
    hot_base: int            # hot LRU key of this layer's cluster 0 (keys: layer * max_clusters + cluster)
    cold_base: int           # cold LRU key of this layer's neuron 0 (keys: layer * n_neurons + neuron)
    cluster_size: int        # rows per hot slot


class LayerPlan(NamedTuple):
    """One layer's cache lookup (:meth:`~teachkit.sparse.runtime.cache.SegmentedCache.split_active`):
    where each active neuron is, and which slots were given to misses (their bytes must be read)."""

    hot_clusters: np.ndarray    # hot clusters the layer touches, in cluster order
    hot_slots: np.ndarray       # their slots in the hot region
    hot_miss: np.ndarray        # per touched cluster: it was not in memory (the whole cluster is read)
    hot_starts: np.ndarray      # where each touched cluster's rows begin in hot_rows_all, plus the end
    hot_rows_all: np.ndarray    # rows in hot_w of the active hot neurons, cluster after cluster
    hot_rows_miss: np.ndarray   # per row of hot_rows_all: its cluster missed
    cold_neurons: np.ndarray    # the active cold neurons
    cold_slots: np.ndarray      # their slots in the cold region
    cold_miss: np.ndarray       # per cold neuron: it was not in memory
    n_hot_miss: int             # clusters missed
    n_cold_miss: int            # cold neurons missed
    n_hot_rows_miss: int        # active hot neurons in missed clusters

    @property
    def hot_rows(self) -> "_Slices":
        """``hot_rows[k]``: rows in ``hot_w`` of the k-th touched cluster's active neurons."""
        return _Slices(self.hot_rows_all, self.hot_starts)


@njit(nogil=True, cache=True)
def _group_hot(active, cluster_of):
    """Split sorted ``active`` into hot neurons grouped by cluster (in cluster order; within a
    cluster, in ``active`` order) and cold neurons: ``(hot neurons, clusters touched, starts,
    cold neurons)``, ``starts[k]`` where cluster k's neurons begin among the hot ones, plus the end."""
    n = active.shape[0]
    cl = np.empty(n, np.int64)
    n_hot = 0
    for j in range(n):
        cl[j] = cluster_of[active[j]]
        if cl[j] >= 0:
            n_hot += 1
    hot_n = np.empty(n_hot, np.int64)
    hot_cl = np.empty(n_hot, np.int64)
    cold_n = np.empty(n - n_hot, np.int64)
    a = b = 0
    for j in range(n):
        if cl[j] >= 0:
            hot_n[a] = active[j]
            hot_cl[a] = cl[j]
            a += 1
        else:
            cold_n[b] = active[j]
            b += 1
    order = np.argsort(hot_cl, kind="mergesort")            # stable: grouped by cluster
    hot_n, hot_cl = hot_n[order], hot_cl[order]
    n_cl = 0
    for j in range(n_hot):
        if j == 0 or hot_cl[j] != hot_cl[j - 1]:
            n_cl += 1
    clusters = np.empty(n_cl, np.int64)
    starts = np.empty(n_cl + 1, np.int64)
    k = 0
    for j in range(n_hot):
        if j == 0 or hot_cl[j] != hot_cl[j - 1]:
            clusters[k] = hot_cl[j]
            starts[k] = j
            k += 1
    starts[n_cl] = n_hot
    return hot_n, clusters, starts, cold_n


@njit(nogil=True, cache=True)
def _split_lookup(active, cluster_of, pos_of, hot_base, cold_base, cluster_size, hot, hot_step, cold, cold_step):
    """The numba core of :func:`look_up_layer`: the fields of a :class:`LayerRouting`, then each
    region's :attr:`LRUTable.tables` and step; returns the fields of a :class:`LayerPlan`, in order
    (a miss count of -1: that region has fewer slots than the layer needs; the cold region is not
    looked up if the hot one failed).

    Each touched cluster is one hot lookup, each cold neuron one cold lookup. (Plain arrays and
    tuples, not named tuples: numba types those per call, at a cost on every layer.)
    """
    hot_n, clusters, starts, cold_n = _group_hot(active, cluster_of)
    n_cl, n_hot = clusters.shape[0], hot_n.shape[0]
    h_slots = np.empty(n_cl, np.int64)
    h_miss = np.empty(n_cl, np.bool_)
    n_hmiss = 0
    if n_cl:
        n_hmiss = lru_lookup(*hot, clusters + hot_base, hot_step, h_slots, h_miss)
    all_rows = np.empty(n_hot, np.int64)
    rows_miss = np.empty(n_hot, np.bool_)
    hot_missed = 0
    if n_hmiss >= 0:
        for k in range(n_cl):
            for j in range(starts[k], starts[k + 1]):
                all_rows[j] = h_slots[k] * cluster_size + pos_of[hot_n[j]]
                rows_miss[j] = h_miss[k]
                hot_missed += h_miss[k]
    c_slots = np.empty(cold_n.shape[0], np.int64)
    c_miss = np.empty(cold_n.shape[0], np.bool_)
    n_cmiss = 0
    if n_hmiss >= 0:                                         # else: the hot region failed, stop here
        n_cmiss = lru_lookup(*cold, cold_n + cold_base, cold_step, c_slots, c_miss)
    return clusters, h_slots, h_miss, starts, all_rows, rows_miss, cold_n, c_slots, c_miss, n_hmiss, n_cmiss, hot_missed


def look_up_layer(active: np.ndarray, route: LayerRouting, hot: LRUTable, cold: LRUTable) -> LayerPlan:
    """Route a layer's sorted, distinct ``active`` neurons to hot clusters and cold neurons, and
    look both up in one numba call; a new step of both tables.

    Raises if a region has fewer slots than the layer needs; hit and miss counts of ``hot`` and
    ``cold`` are updated (clusters for the hot region, neurons for the cold).
    """
    hot.step += 1
    cold.step += 1
    plan = LayerPlan(*_split_lookup(active, *route, hot.tables, hot.step, cold.tables, cold.step))
    for table, n_miss, keys in ((hot, plan.n_hot_miss, plan.hot_clusters), (cold, plan.n_cold_miss, plan.cold_neurons)):
        if n_miss < 0:
            raise ValueError(f"{table.name} region has {table.n_slots} slots but one step needs {len(keys)}: "
                             f"raise the memory budget or give this region a larger share")
        table.hits += len(keys) - n_miss
        table.misses += n_miss
    return plan


class _Slices:
    """``rows[k]``: the k-th cluster's rows, a view of ``all_rows`` (no list built per layer)."""

    __slots__ = ("all_rows", "starts")

    def __init__(self, all_rows, starts):
        self.all_rows, self.starts = all_rows, starts

    def __len__(self):
        return len(self.starts) - 1

    def __getitem__(self, k):
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        return self.all_rows[self.starts[k]:self.starts[k + 1]]
