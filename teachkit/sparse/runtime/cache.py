"""The segmented neuron cache: fixed, hot (cluster LRU) and cold (neuron LRU) regions.

PowerInfer-2 (§4.2) splits the memory it may use for weights into three regions:

* **fixed**: attention, norms, embeddings, predictors. Loaded once, never evicted.
* **hot**: hot neurons (the ones that fire most often) grouped into clusters of
  ``cluster_size`` neurons; one LRU entry per cluster, a whole cluster is loaded or dropped.
* **cold**: single neurons (one bundle each) with a neuron-level LRU.

Everything is preallocated when the cache is built, so the memory budget is checked once
and can never be exceeded later: the data live in fixed numpy slot arrays, and the
bookkeeping in integer tables that numba functions update: each region's LRU
(:mod:`teachkit.sparse.runtime.lru`) and the hot-cluster maps a layer's lookup routes
through (:mod:`teachkit.sparse.runtime.lookup`).

**Look-ahead.** :meth:`SegmentedCache.prefetch_cold` gives cold slots to neurons the engine
*guesses* the next layer will need (never a slot the current layer is using); a per-slot flag
remembers them, so the next lookup can count how many of its hits came from the guess
(``prefetch_hits``) and how many guesses were read for nothing.
"""

from __future__ import annotations

import mmap
import threading
from dataclasses import dataclass

import numpy as np

from .lookup import LayerPlan, LayerRouting, look_up_layer
from .lru import INDEX, LRUTable, lru_lookup

__all__ = ["SegmentedCache", "CacheConfig", "simulate_hit_rate", "neuron_hit_rate"]

FLAG = np.dtype(np.bool_)      # per cold slot: filled by a look-ahead, not used yet


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

    @classmethod
    def for_spec(cls, spec, cluster_size: int, hot_slots: int = 0, cold_slots: int = 0) -> "CacheConfig":
        """The cache of a flash file's model (a :class:`~teachkit.sparse.flash.format.FlashSpec`)."""
        return cls(spec.n_layers, spec.n_neurons, spec.n_mats, spec.d, spec.dtype, cluster_size, hot_slots, cold_slots)


def _row_layout(cfg: CacheConfig) -> list:
    """What one cached neuron (a row of a region) holds: ``(shape, dtype)`` of each region array.

    float32 rows are whole bundles; int8 rows keep the weights and their per-matrix scales apart.
    """
    if cfg.dtype == "float32":
        return [((cfg.n_mats, cfg.d), np.dtype(np.float32))]
    return [((cfg.n_mats, cfg.d), np.dtype(np.int8)), ((cfg.n_mats,), np.dtype(np.float32))]


def row_bytes(cfg: CacheConfig) -> int:
    """Bytes of one row of a region (one neuron's weights), as :func:`_alloc` lays it out."""
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in _row_layout(cfg))


def _alloc(n: int, cfg: CacheConfig):
    """Zeroed, page-aligned region arrays, every page touched now.

    Page-aligned (``mmap``-backed), so O_DIRECT reads can land straight in a row. Touched now
    because the OS maps pages lazily: otherwise the first write to each page during decode
    would pay a page fault, inside a layer's time.
    """
    def touched(shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes == 0:
            return np.zeros(shape, dtype)
        a = np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8).view(dtype).reshape(shape)
        a.fill(0)
        return a

    arrays = tuple(touched((n, *shape), dtype) for shape, dtype in _row_layout(cfg))
    return arrays[0] if len(arrays) == 1 else arrays


def _nbytes(w) -> int:
    return sum(a.nbytes for a in w) if isinstance(w, tuple) else w.nbytes


class SegmentedCache:
    """Fixed + hot + cold regions inside a byte ``budget`` (checked at construction).

    ``hot_clusters``: per layer, a list of sorted int64 neuron arrays of ``cluster_size``
    (the planner's hot set, grouped). ``extra_bytes``: other buffers the engine holds
    (staging, KV cache) that count toward the same budget. ``history`` keeps one record per
    token for the last ``HISTORY_LEN`` tokens (about 0.7 KiB each), so it stops growing.
    """

    HISTORY_LEN = 1024

    def __init__(self, cfg: CacheConfig, budget: int, fixed: dict | None = None,
                 hot_clusters: list | None = None, extra_bytes: int = 0):
        self.cfg = cfg
        self.fixed = dict(fixed or {})
        L, N, cs = cfg.n_layers, cfg.n_neurons, cfg.cluster_size
        hot_clusters = hot_clusters or [[] for _ in range(L)]
        if len(hot_clusters) != L:
            raise ValueError(f"hot_clusters needs one list per layer ({L}), got {len(hot_clusters)}")
        self.max_clusters = max(1, max(len(c) for c in hot_clusters))
        self.hot_cluster_of = np.full((L, N), -1, dtype=INDEX)   # neuron -> cluster id in its layer
        self.hot_pos_of = np.full((L, N), -1, dtype=INDEX)       # neuron -> row inside its cluster
        self.hot_members = np.full((L, self.max_clusters, cs), -1, dtype=INDEX)
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
        self.prefetched = np.zeros(cfg.cold_slots, dtype=FLAG)   # filled by a look-ahead, not used yet
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
        self.history: list[dict] = []              # one record per token, the last HISTORY_LEN (see end_token)
        self._token = {"hot_hits": 0, "hot_misses": 0, "cold_hits": 0, "cold_misses": 0,
                       "prefetched": 0, "prefetch_hits": 0,
                       "hot_neuron_hits": 0, "hot_neuron_misses": 0, "hot_bytes_in": 0, "cold_bytes_in": 0}

    @staticmethod
    def table_bytes(cfg: CacheConfig, max_clusters: int) -> int:
        """Bytes of the bookkeeping tables a cache of ``cfg`` allocates, with ``max_clusters`` hot
        clusters in its largest layer: the hot-cluster maps (per neuron: its cluster and row; per
        cluster: its members), both LRU tables, and a look-ahead flag per cold slot.

        With ``cfg.hot_slots = cfg.cold_slots = 0`` this is the part that does not grow with the
        regions; each slot adds its share of :meth:`slot_bytes`.
        """
        L, N = cfg.n_layers, cfg.n_neurons
        cluster_maps = INDEX.itemsize * (2 * L * N + L * max_clusters * cfg.cluster_size)
        return (cluster_maps + LRUTable.nbytes_for(cfg.hot_slots, L * max_clusters)
                + LRUTable.nbytes_for(cfg.cold_slots, L * N) + FLAG.itemsize * cfg.cold_slots)

    @staticmethod
    def slot_bytes(cfg: CacheConfig) -> tuple[int, int]:
        """``(hot, cold)``: bytes one more slot of each region costs, its rows and its table entries.

        A hot slot holds ``cluster_size`` rows; a cold slot one row and a look-ahead flag.
        """
        row = row_bytes(cfg)
        return (cfg.cluster_size * row + LRUTable.BYTES_PER_SLOT,
                row + LRUTable.BYTES_PER_SLOT + FLAG.itemsize)

    @property
    def tables_bytes(self) -> int:
        """Bytes of the bookkeeping tables this cache holds (measured; :meth:`table_bytes` predicts it)."""
        return self.hot.nbytes + self.cold.nbytes + self.hot_cluster_of.nbytes + self.hot_pos_of.nbytes \
            + self.hot_members.nbytes + self.prefetched.nbytes

    @property
    def bytes_total(self) -> int:
        return self.fixed_bytes + _nbytes(self.hot_w) + _nbytes(self.cold_w) + self.tables_bytes + self.extra_bytes

    def region_bytes(self) -> dict:
        return {"fixed": self.fixed_bytes, "hot": _nbytes(self.hot_w), "cold": _nbytes(self.cold_w),
                "tables": self.tables_bytes, "other": self.extra_bytes, "budget": self.budget}

    def routing(self, layer: int) -> LayerRouting:
        """Where ``layer``'s neurons go (views of the cache's maps, for :func:`look_up_layer`)."""
        return LayerRouting(self.hot_cluster_of[layer], self.hot_pos_of[layer], layer * self.max_clusters,
                            layer * self.cfg.n_neurons, self.cfg.cluster_size)

    def split_active(self, layer: int, active: np.ndarray) -> LayerPlan:
        """Split a layer's active neurons into hot (by cluster) and cold, and look both up.

        Returns a :class:`LayerPlan`: the hot clusters touched, their slots and misses, the rows
        in ``hot_w`` of the active hot neurons (``hot_rows[k]`` per cluster, all of them in
        ``hot_rows_all``), and the cold neurons, their slots and misses. One numba call does
        the routing and both LRU lookups (:func:`look_up_layer`): this runs between the
        prediction and the reads, on every layer of every token.
        """
        active = np.ascontiguousarray(active, dtype=np.int64)
        if active.size and (active.min() < 0 or active.max() >= self.cfg.n_neurons):
            raise ValueError(f"layer {layer}: neuron ids must be in [0, {self.cfg.n_neurons}), "
                             f"got [{active.min()}, {active.max()}]")           # numba would not check
        plan = look_up_layer(active, self.routing(layer), self.hot, self.cold)
        t = self._token
        t["hot_neuron_hits"] += len(plan.hot_rows_all) - plan.n_hot_rows_miss   # hot hits/misses below count clusters
        t["hot_neuron_misses"] += plan.n_hot_rows_miss
        t["hot_hits"] += len(plan.hot_clusters) - plan.n_hot_miss
        t["hot_misses"] += plan.n_hot_miss
        t["cold_hits"] += len(plan.cold_neurons) - plan.n_cold_miss
        t["cold_misses"] += plan.n_cold_miss
        if plan.n_cold_miss:
            self.prefetched[plan.cold_slots[plan.cold_miss]] = False             # reused slots
        if len(plan.cold_neurons) > plan.n_cold_miss:
            hit = plan.cold_slots[~plan.cold_miss]
            t["prefetch_hits"] += int(self.prefetched[hit].sum())    # hits only because of a look-ahead
            self.prefetched[hit] = False
        return plan

    def prefetch_cold(self, layer: int, guess: np.ndarray, limit: int | None = None):
        """Give cold slots to guessed neurons of ``layer`` that are not in memory: ``(neurons, slots)``.

        For a look-ahead: the caller reads them now, so that ``layer``'s lookup finds them.
        It runs between two lookups and must not evict a slot that the current layer is
        computing from (stamped with the current step): it takes at most as many slots as are
        free of that stamp, least recently used first, and skips the rest of the guess. Hits
        are left where they are (a guess is not a use); hit and miss counts are not touched.
        """
        guess = np.asarray(guess, dtype=np.int64)
        if guess.size and (guess.min() < 0 or guess.max() >= self.cfg.n_neurons):
            raise ValueError(f"layer {layer}: guessed neuron ids must be in [0, {self.cfg.n_neurons})")
        cold = self.cold
        keys = layer * self.cfg.n_neurons + guess[self.hot_cluster_of[layer, guess] < 0]
        keys = keys[cold.slot_of[keys] < 0]
        room = cold.n_slots - int((cold.stamp == cold.step).sum())
        if limit is not None:
            room = min(room, limit)
        keys = np.ascontiguousarray(keys[:max(0, room)])
        slots = np.empty(len(keys), np.int64)
        miss = np.empty(len(keys), np.bool_)
        if len(keys) and lru_lookup(*cold.tables, keys, cold.step, slots, miss) != len(keys):
            raise RuntimeError("prefetch_cold: the LRU lookup did not place every guess")   # cannot happen (room)
        self.prefetched[slots] = True
        self._token["prefetched"] += len(keys)
        return keys - layer * self.cfg.n_neurons, slots

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
        self.prefetched[slots[ok]] = False

    def forget_all(self) -> None:
        """Empty the hot and cold regions (after an error left their contents in doubt)."""
        self.prefetched[:] = False
        for t in (self.hot, self.cold):
            t.slot_of[:] = -1
            t.key_of[:] = -1

    def invalidate_plan(self, layer: int, plan: LayerPlan) -> None:
        """Forget every slot ``plan`` (from :meth:`split_active`) assigned to a miss: its data never arrived."""
        self.invalidate_cold(layer, plan.cold_neurons[plan.cold_miss])
        keys = layer * self.max_clusters + np.asarray(plan.hot_clusters, dtype=np.int64)[plan.hot_miss]
        slots = self.hot.slot_of[keys]
        ok = slots >= 0
        self.hot.key_of[slots[ok]] = -1
        self.hot.slot_of[keys[ok]] = -1

    def cluster_members(self, layer: int, cluster: int) -> np.ndarray:
        m = self.hot_members[layer, cluster]
        return m[m >= 0]

    def end_token(self) -> dict:
        """Close the accounting of one token and append it to ``history`` (the last ``HISTORY_LEN`` kept)."""
        rec = dict(self._token, hot_occupied=self.hot.occupied, cold_occupied=self.cold.occupied)
        self.history.append(rec)
        if len(self.history) > self.HISTORY_LEN:          # bounded: a long run holds no more than a short one
            del self.history[0]
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
