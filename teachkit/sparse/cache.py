"""The segmented neuron cache: fixed, hot (cluster LRU) and cold (neuron LRU) regions.

PowerInfer-2 (§4.2) splits the memory it may use for weights into three regions:

* **fixed**: attention, norms, embeddings, predictors. Loaded once, never evicted.
* **hot**: hot neurons (the ones that fire most often) grouped into clusters of
  ``cluster_size`` neurons; one LRU entry per cluster, a whole cluster is loaded or dropped.
* **cold**: single neurons (one bundle each) with a neuron-level LRU.

Everything is preallocated when the cache is built, so the memory budget is checked once
and can never be exceeded later: the data live in fixed numpy slot arrays, and the
bookkeeping in integer tables that numba functions update (no Python dicts on the hot path,
the lesson of LLM in a flash's 57 ms/token of memory management).

**LRU as arrays.** Slots form a doubly linked list (``prev``, ``next``) from least to most
recently used. A hit unlinks its slot and appends it at the tail; a miss takes the head. Both
are O(1). ``slot_of[key]`` maps a key (``layer * n + neuron``) to its slot, -1 if absent.
A lookup touches every hit first, then places the misses: so a miss never evicts a neuron the
same layer is about to use. If the region has fewer slots than one layer needs, the lookup
fails with a clear error instead of thrashing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["LRUTable", "SegmentedCache", "CacheConfig", "lru_lookup", "simulate_hit_rate", "neuron_hit_rate"]

_HEAD, _TAIL = 0, 1


@njit(nogil=True, cache=True)
def _unlink(prev, nxt, ends, s):
    p, n = prev[s], nxt[s]
    if p >= 0:
        nxt[p] = n
    else:
        ends[_HEAD] = n
    if n >= 0:
        prev[n] = p
    else:
        ends[_TAIL] = p


@njit(nogil=True, cache=True)
def _append(prev, nxt, ends, s):
    t = ends[_TAIL]
    prev[s] = t
    nxt[s] = -1
    if t >= 0:
        nxt[t] = s
    else:
        ends[_HEAD] = s
    ends[_TAIL] = s


@njit(nogil=True, cache=True)
def lru_lookup(slot_of, key_of, prev, nxt, ends, stamp, keys, step, out_slot, out_miss):
    """Look up ``keys``; fill ``out_slot`` and ``out_miss``; return the number of misses, or -1.

    Hits move to the most-recently-used end; each miss evicts the least recently used slot
    (``key_of`` / ``slot_of`` updated) unless that slot was already used in this ``step``,
    which means the region is too small: then return -1 with the tables unchanged for the
    remaining keys.
    """
    n_miss = 0
    for j in range(keys.shape[0]):
        s = slot_of[keys[j]]
        if s >= 0:
            out_slot[j] = s
            out_miss[j] = False
            stamp[s] = step
            _unlink(prev, nxt, ends, s)
            _append(prev, nxt, ends, s)
        else:
            out_miss[j] = True
            n_miss += 1
    for j in range(keys.shape[0]):
        if not out_miss[j]:
            continue
        s = ends[_HEAD]
        if s < 0 or stamp[s] == step:
            return -1
        old = key_of[s]
        if old >= 0:
            slot_of[old] = -1
        key_of[s] = keys[j]
        slot_of[keys[j]] = s
        stamp[s] = step
        out_slot[j] = s
        _unlink(prev, nxt, ends, s)
        _append(prev, nxt, ends, s)
    return n_miss


class LRUTable:
    """Bookkeeping of one LRU region: ``n_slots`` slots for keys in ``[0, n_keys)``."""

    def __init__(self, n_slots: int, n_keys: int, name: str = "region"):
        if n_slots < 0 or n_keys <= 0:
            raise ValueError(f"{name}: need n_slots >= 0 and n_keys > 0, got {n_slots}, {n_keys}")
        self.name, self.n_slots = name, int(n_slots)
        self.slot_of = np.full(n_keys, -1, dtype=np.int64)
        self.key_of = np.full(self.n_slots, -1, dtype=np.int64)
        self.prev = np.arange(-1, self.n_slots - 1, dtype=np.int64)
        self.next = np.arange(1, self.n_slots + 1, dtype=np.int64)
        if self.n_slots:
            self.next[-1] = -1
        self.ends = np.array([0 if self.n_slots else -1, self.n_slots - 1], dtype=np.int64)
        self.stamp = np.full(self.n_slots, -1, dtype=np.int64)
        self.step = 0
        self.hits = self.misses = 0

    def lookup(self, keys: np.ndarray, step: int | None = None):
        """Return ``(slots, miss_mask)`` for int64 ``keys`` (distinct); misses are given slots."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if step is None:
            self.step += 1
            step = self.step
        slots = np.empty(len(keys), dtype=np.int64)
        miss = np.empty(len(keys), dtype=np.bool_)
        n_miss = lru_lookup(self.slot_of, self.key_of, self.prev, self.next, self.ends, self.stamp,
                            keys, step, slots, miss)
        if n_miss < 0:
            raise ValueError(f"{self.name} region has {self.n_slots} slots but one step needs {len(keys)}: "
                             f"raise the memory budget or give this region a larger share")
        self.hits += len(keys) - n_miss
        self.misses += n_miss
        return slots, miss

    def order(self) -> np.ndarray:
        """Keys from least to most recently used (empty slots give -1), for tests and plots."""
        out, s = [], self.ends[_HEAD]
        while s >= 0:
            out.append(self.key_of[s])
            s = self.next[s]
        return np.array(out, dtype=np.int64)

    @property
    def occupied(self) -> int:
        return int((self.key_of >= 0).sum())


@dataclass
class CacheConfig:
    """Sizes of the regions. ``hot_clusters[l]`` lists layer l's hot clusters (neuron id arrays)."""

    n_layers: int
    n_neurons: int
    n_mats: int
    d: int
    dtype: str = "float32"
    cluster_size: int = 32
    hot_slots: int = 0       # clusters the hot region holds
    cold_slots: int = 0      # neurons the cold region holds


def _alloc(n: int, cfg: CacheConfig):
    """Zeroed region arrays, every page touched now: the OS maps ``np.zeros`` pages lazily, and a
    first write during decode would pay the page fault (measured: up to 6 ms per layer)."""
    def touched(shape, dtype):
        a = np.empty(shape, dtype=dtype)
        a.fill(0)
        return a

    if cfg.dtype == "float32":
        return touched((n, cfg.n_mats, cfg.d), np.float32)
    return touched((n, cfg.n_mats, cfg.d), np.int8), touched((n, cfg.n_mats), np.float32)


def _nbytes(w) -> int:
    return sum(a.nbytes for a in w) if isinstance(w, tuple) else w.nbytes


class SegmentedCache:
    """Fixed + hot + cold regions inside a byte ``budget`` (checked at construction).

    ``hot_clusters``: per layer, a list of sorted int64 neuron arrays of ``cluster_size``
    (the planner's hot set, grouped). ``extra_bytes``: other buffers the engine holds
    (staging, KV cache) that count toward the same budget.
    """

    def __init__(self, cfg: CacheConfig, budget: int, fixed: dict | None = None,
                 hot_clusters: list | None = None, extra_bytes: int = 0):
        self.cfg = cfg
        self.fixed = dict(fixed or {})
        L, N, cs = cfg.n_layers, cfg.n_neurons, cfg.cluster_size
        hot_clusters = hot_clusters or [[] for _ in range(L)]
        if len(hot_clusters) != L:
            raise ValueError(f"hot_clusters needs one list per layer ({L}), got {len(hot_clusters)}")
        self.max_clusters = max(1, max(len(c) for c in hot_clusters))
        self.hot_cluster_of = np.full((L, N), -1, dtype=np.int64)   # neuron -> cluster id in its layer
        self.hot_pos_of = np.full((L, N), -1, dtype=np.int64)       # neuron -> row inside its cluster
        self.hot_members = np.full((L, self.max_clusters, cs), -1, dtype=np.int64)
        for l, clusters in enumerate(hot_clusters):
            for c, members in enumerate(clusters):
                members = np.asarray(members, dtype=np.int64)
                if len(members) > cs or len(np.unique(members)) != len(members):
                    raise ValueError(f"layer {l} cluster {c}: at most {cs} distinct neurons, got {len(members)}")
                if (self.hot_cluster_of[l, members] >= 0).any():
                    raise ValueError(f"layer {l}: a neuron is in two hot clusters")
                self.hot_cluster_of[l, members] = c
                self.hot_pos_of[l, members] = np.arange(len(members))
                self.hot_members[l, c, :len(members)] = members
        self.hot = LRUTable(cfg.hot_slots, L * self.max_clusters, "hot")
        self.cold = LRUTable(cfg.cold_slots, L * N, "cold")
        self.hot_w = _alloc(cfg.hot_slots * cs, cfg)
        self.cold_w = _alloc(cfg.cold_slots, cfg)
        self.budget = int(budget)
        self.fixed_bytes = sum(a.nbytes for a in self.fixed.values())
        self.extra_bytes = int(extra_bytes)
        if self.bytes_total > self.budget:
            raise ValueError(f"cache needs {self.bytes_total} B (fixed {self.fixed_bytes}, hot {_nbytes(self.hot_w)}, "
                             f"cold {_nbytes(self.cold_w)}, tables {self.tables_bytes}, other {self.extra_bytes}) "
                             f"but the budget is {self.budget} B")
        self.traffic = {"hot": 0, "cold": 0}       # bytes brought in from flash, per region
        self._lock = threading.Lock()              # the I/O thread adds traffic while the compute thread reads it
        self.history: list[dict] = []              # one record per token (see end_token)
        self._token = {"hot_hits": 0, "hot_misses": 0, "cold_hits": 0, "cold_misses": 0,
                       "hot_neuron_hits": 0, "hot_neuron_misses": 0, "hot_bytes_in": 0, "cold_bytes_in": 0}

    @staticmethod
    def table_bytes(cfg: CacheConfig, max_clusters: int) -> int:
        """Bytes of the bookkeeping tables (int64): per-neuron maps, cluster members, 4 per LRU slot."""
        L, N = cfg.n_layers, cfg.n_neurons
        per_neuron = 3 * L * N                              # cold slot_of, hot_cluster_of, hot_pos_of
        per_cluster = L * max_clusters * (cfg.cluster_size + 1)   # hot_members, hot slot_of
        return 8 * (per_neuron + per_cluster + 4 * (cfg.hot_slots + cfg.cold_slots) + 2 * 2)   # + 2 ends each

    @property
    def tables_bytes(self) -> int:
        return sum(a.nbytes for t in (self.hot, self.cold) for a in (t.slot_of, t.key_of, t.prev, t.next, t.stamp, t.ends)) \
            + self.hot_cluster_of.nbytes + self.hot_pos_of.nbytes + self.hot_members.nbytes

    @property
    def bytes_total(self) -> int:
        return self.fixed_bytes + _nbytes(self.hot_w) + _nbytes(self.cold_w) + self.tables_bytes + self.extra_bytes

    def region_bytes(self) -> dict:
        return {"fixed": self.fixed_bytes, "hot": _nbytes(self.hot_w), "cold": _nbytes(self.cold_w),
                "tables": self.tables_bytes, "other": self.extra_bytes, "budget": self.budget}

    def split_active(self, layer: int, active: np.ndarray):
        """Split a layer's active neurons into hot (by cluster) and cold, and look both up.

        Returns a dict with
        ``hot_clusters`` (cluster ids touched), ``hot_slots``, ``hot_miss`` (per cluster),
        ``hot_rows`` (per touched cluster: rows in ``hot_w`` of its *active* neurons; all of them
        in one array as ``hot_rows_all``, with ``hot_rows_miss`` marking rows of missed clusters),
        ``cold_neurons``, ``cold_slots``, ``cold_miss``.
        """
        active = np.asarray(active, dtype=np.int64)
        cl = self.hot_cluster_of[layer, active]
        is_hot = cl >= 0
        cold_n = active[~is_hot]
        order = np.argsort(cl[is_hot], kind="stable")          # hot neurons grouped by cluster
        hot_n, hot_cl = active[is_hot][order], cl[is_hot][order]
        clusters, first, counts = np.unique(hot_cl, return_index=True, return_counts=True)
        cs = self.cfg.cluster_size
        if len(clusters):
            h_slots, h_miss = self.hot.lookup(layer * self.max_clusters + clusters)
        else:
            h_slots, h_miss = np.empty(0, np.int64), np.empty(0, bool)
        all_rows = np.repeat(h_slots, counts) * cs + self.hot_pos_of[layer, hot_n]
        ends = np.append(first[1:], len(all_rows)).tolist()
        rows = [all_rows[a:b] for a, b in zip(first.tolist(), ends)]
        c_slots, c_miss = self.cold.lookup(layer * self.cfg.n_neurons + cold_n)
        t = self._token
        hot_missed = int(counts[h_miss].sum())
        t["hot_neuron_hits"] += len(hot_n) - hot_missed       # hot hits/misses above count clusters
        t["hot_neuron_misses"] += hot_missed
        t["hot_hits"] += int(len(clusters) - h_miss.sum())
        t["hot_misses"] += int(h_miss.sum())
        t["cold_hits"] += int(len(cold_n) - c_miss.sum())
        t["cold_misses"] += int(c_miss.sum())
        return {"hot_clusters": clusters, "hot_slots": h_slots, "hot_miss": h_miss, "hot_rows": rows,
                "hot_rows_all": all_rows, "hot_rows_miss": np.repeat(h_miss, counts),
                "cold_neurons": cold_n, "cold_slots": c_slots, "cold_miss": c_miss}

    def add_traffic(self, region: str, nbytes: int) -> None:
        """Count ``nbytes`` read from flash into ``region`` ('hot' or 'cold'); thread-safe."""
        with self._lock:
            self.traffic[region] += int(nbytes)
            self._token[f"{region}_bytes_in"] += int(nbytes)

    def invalidate_cold(self, layer: int, neurons: np.ndarray) -> None:
        """Forget cold entries whose bundle was only partly read (split reads whose gate did not fire)."""
        keys = layer * self.cfg.n_neurons + np.asarray(neurons, dtype=np.int64)
        slots = self.cold.slot_of[keys]
        ok = slots >= 0
        self.cold.key_of[slots[ok]] = -1
        self.cold.slot_of[keys[ok]] = -1

    def forget_all(self) -> None:
        """Empty the hot and cold regions (after an error left their contents in doubt)."""
        for t in (self.hot, self.cold):
            t.slot_of[:] = -1
            t.key_of[:] = -1

    def invalidate_plan(self, layer: int, plan: dict) -> None:
        """Forget every slot ``plan`` (from :meth:`split_active`) assigned to a miss: its data never arrived."""
        self.invalidate_cold(layer, plan["cold_neurons"][plan["cold_miss"]])
        keys = layer * self.max_clusters + np.asarray(plan["hot_clusters"], dtype=np.int64)[plan["hot_miss"]]
        slots = self.hot.slot_of[keys]
        ok = slots >= 0
        self.hot.key_of[slots[ok]] = -1
        self.hot.slot_of[keys[ok]] = -1

    def cluster_members(self, layer: int, cluster: int) -> np.ndarray:
        m = self.hot_members[layer, cluster]
        return m[m >= 0]

    def end_token(self) -> dict:
        """Close the accounting of one token and append it to ``history``."""
        rec = dict(self._token, hot_occupied=self.hot.occupied, cold_occupied=self.cold.occupied)
        self.history.append(rec)
        self._token = {k: 0 for k in self._token}
        return rec

    def hit_rates(self) -> dict:
        out = {}
        for name, t in (("hot", self.hot), ("cold", self.cold)):
            n = t.hits + t.misses
            out[name] = t.hits / n if n else float("nan")
        return out


def neuron_hit_rate(history: list) -> float:
    """Share of active neurons found in memory (hot or cold) over ``history`` records (``end_token``).

    The same measure as :func:`simulate_hit_rate`'s replay, so the two can be compared.
    """
    hits = sum(r["hot_neuron_hits"] + r["cold_hits"] for r in history)
    n = hits + sum(r["hot_neuron_misses"] + r["cold_misses"] for r in history)
    return hits / n if n else float("nan")


def simulate_hit_rate(traces: list, n_neurons: int, cold_slots: int, hot_sets=None, warmup: int = 0) -> float:
    """Replay activation traces (per token, per layer: active neuron ids) through a cold LRU.

    ``hot_sets[l]``: neurons pinned in the hot region (always hits). Returns the overall
    neuron hit rate (hot hits count as hits) over the tokens after the first ``warmup``
    (during which the cold region fills, as the hot region is preloaded): the planner's
    ``h(cache size)`` in steady state.
    """
    n_layers = len(traces[0])
    lru = LRUTable(cold_slots, n_layers * n_neurons, "cold")
    pinned = np.zeros((n_layers, n_neurons), dtype=bool)
    if hot_sets is not None:
        for l, s in enumerate(hot_sets):
            pinned[l, np.asarray(s, dtype=np.int64)] = True
    hits = total = 0
    for t, token in enumerate(traces):
        count = t >= warmup
        for l, act in enumerate(token):
            act = np.asarray(act, dtype=np.int64)
            cold = act[~pinned[l, act]]
            total += count * len(act)
            hits += count * (len(act) - len(cold))
            if len(cold) > cold_slots:
                continue                      # cannot be cached at all: every cold neuron misses
            _, miss = lru.lookup(l * n_neurons + cold)
            hits += count * int((~miss).sum())
    return hits / total if total else float("nan")
