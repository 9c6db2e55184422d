"""The segmented neuron cache: LRU order, hit accounting, never over budget."""

import numpy as np
import pytest

from teachkit.sparse.runtime.cache import CacheConfig, SegmentedCache, neuron_hit_rate, simulate_hit_rate
from teachkit.sparse.runtime.lru import LRUTable


def _keys(*k):
    return np.array(k, dtype=np.int64)


def test_lru_evicts_least_recently_used():
    t = LRUTable(3, 100)
    t.lookup(_keys(1, 2, 3))                      # fills the 3 slots
    slots, miss = t.lookup(_keys(1))             # 1 becomes most recent
    assert not miss[0]
    assert t.order().tolist() == [2, 3, 1]
    slots, miss = t.lookup(_keys(4))             # evicts 2, the least recent
    assert miss.tolist() == [True]
    assert t.order().tolist() == [3, 1, 4]
    assert t.slot_of[2] == -1 and t.slot_of[4] == slots[0]
    assert (t.hits, t.misses) == (1, 4)


def test_lru_never_evicts_a_key_needed_in_the_same_step():
    t = LRUTable(3, 100)
    t.lookup(_keys(1, 2, 3))
    slots, miss = t.lookup(_keys(9, 3))          # 3 is a hit; the miss 9 must not take its slot
    assert miss.tolist() == [True, False]
    assert t.slot_of[3] == slots[1] and t.slot_of[9] == slots[0] and slots[0] != slots[1]
    with pytest.raises(ValueError, match="3 slots but one step needs 4"):
        t.lookup(_keys(10, 11, 12, 13))


def test_lru_tables_stay_consistent_under_random_traffic():
    rng = np.random.default_rng(0)
    t = LRUTable(20, 200)
    for _ in range(300):
        keys = rng.choice(200, size=rng.integers(1, 20), replace=False).astype(np.int64)
        slots, _ = t.lookup(keys)
        assert (t.slot_of[keys] == slots).all()
        used = t.key_of >= 0
        assert (t.slot_of[t.key_of[used]] == np.flatnonzero(used)).all()
        assert (t.slot_of >= 0).sum() == used.sum() <= 20
        assert sorted(t.order()[-len(keys):].tolist()) == sorted(keys.tolist())


def _cfg(**kw):
    base = dict(n_layers=2, n_neurons=64, n_mats=3, d=8, cluster_size=4, hot_slots=2, cold_slots=10)
    base.update(kw)
    return CacheConfig(**base)


def test_cache_is_never_over_budget():
    cfg = _cfg()
    fixed = {"emb": np.zeros((16, 8), np.float32)}
    tables = 8 * (3 * 2 * 64 + 2 * 1 * (4 + 1) + 4 * (2 + 10) + 4) + 10   # int64: per neuron, cluster, slot; LRU ends; cold flags
    need = 512 + (2 * 4 + 10) * 3 * 8 * 4 + tables
    c = SegmentedCache(cfg, budget=need, fixed=fixed)
    assert c.bytes_total == need
    assert sum(held_array_bytes(c).values()) == need                      # every array it holds is counted
    with pytest.raises(ValueError, match="budget"):
        SegmentedCache(cfg, budget=need - 1, fixed=fixed)
    q = SegmentedCache(_cfg(dtype="int8"), budget=need)
    assert q.bytes_total == (2 * 4 + 10) * (3 * 8 + 3 * 4) + tables


def test_the_byte_costs_the_cache_states_are_what_it_allocates():
    """``table_bytes`` and ``slot_bytes`` (what the engine's budget sums) against the arrays held."""
    hot = [[np.arange(4), np.arange(4, 8)], [np.arange(10, 14)]]

    def held(**kw):
        return sum(held_array_bytes(SegmentedCache(_cfg(**kw), 1 << 20, hot_clusters=hot)).values())

    for dtype in ("float32", "int8"):
        cfg = _cfg(dtype=dtype)
        c = SegmentedCache(cfg, 1 << 20, hot_clusters=hot)
        assert c.tables_bytes == SegmentedCache.table_bytes(cfg, c.max_clusters)
        hot_slot, cold_slot = SegmentedCache.slot_bytes(cfg)
        assert held(dtype=dtype, hot_slots=3) - held(dtype=dtype) == hot_slot
        assert held(dtype=dtype, cold_slots=11) - held(dtype=dtype) == cold_slot
        empty = _cfg(dtype=dtype, hot_slots=0, cold_slots=0)
        assert held(dtype=dtype, hot_slots=0, cold_slots=0) == SegmentedCache.table_bytes(empty, c.max_clusters)
    t = LRUTable(7, 50)
    assert t.nbytes == LRUTable.nbytes_for(7, 50) == sum(held_array_bytes(t).values())


def held_array_bytes(obj, seen=None) -> dict:
    """Every numpy buffer reachable from ``obj``'s attributes, by root buffer id -> bytes."""
    seen = {} if seen is None else seen
    stack, visited = [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in visited:
            continue
        visited.add(id(o))
        if isinstance(o, np.ndarray):
            root = o
            while isinstance(root.base, np.ndarray):
                root = root.base
            seen[id(root)] = root.nbytes
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif hasattr(o, "__dict__") and type(o).__module__.startswith(("teachkit", "test_")):
            stack.extend(vars(o).values())
    return seen


def test_split_active_routes_hot_and_cold_and_counts_hits():
    hot = [[np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7])], [np.array([10, 11, 12, 13])]]
    c = SegmentedCache(_cfg(), budget=1 << 20, hot_clusters=hot)
    r = c.split_active(0, np.array([1, 3, 6, 20, 21]))
    assert r.hot_clusters.tolist() == [0, 1] and r.hot_miss.tolist() == [True, True]
    assert r.cold_neurons.tolist() == [20, 21] and r.cold_miss.all()
    rows0 = r.hot_rows[0]
    assert (rows0 // 4 == r.hot_slots[0]).all() and (rows0 % 4).tolist() == [1, 3]
    r = c.split_active(0, np.array([2, 20, 22]))
    assert r.hot_miss.tolist() == [False] and r.cold_miss.tolist() == [False, True]
    rec = c.end_token()
    assert rec == {"hot_hits": 1, "hot_misses": 2, "cold_hits": 1, "cold_misses": 3,
                   "hot_neuron_hits": 1, "hot_neuron_misses": 3,          # clusters above, neurons here
                   "hot_bytes_in": 0, "cold_bytes_in": 0, "hot_occupied": 2, "cold_occupied": 3,
                   "prefetched": 0, "prefetch_hits": 0}
    c.add_traffic("cold", 96)
    assert c.end_token()["cold_bytes_in"] == 96 and c.traffic == {"hot": 0, "cold": 96}
    r = c.split_active(1, np.array([11]))        # a third hot cluster evicts layer 0's cluster 1
    assert r.hot_miss.tolist() == [True]
    assert c.hot.slot_of[0 * c.max_clusters + 1] == -1 and c.hot.slot_of[0] >= 0
    assert c.hit_rates()["hot"] == pytest.approx(1 / 4)


def test_bad_hot_clusters_are_rejected():
    with pytest.raises(ValueError, match="two hot clusters"):
        SegmentedCache(_cfg(), 1 << 20, hot_clusters=[[np.array([1, 2]), np.array([2, 3])], []])
    with pytest.raises(ValueError, match="at most 4"):
        SegmentedCache(_cfg(), 1 << 20, hot_clusters=[[np.arange(5)], []])


def test_simulated_hit_rate_matches_hand_count():
    traces = [[np.array([1, 2])], [np.array([1, 3])], [np.array([2, 3])]]
    # 2 slots: t0 miss 1,2; t1 hit 1, miss 3 (evicts 2); t2 miss 2 (evicts 1), hit 3 -> 2 hits / 6
    assert simulate_hit_rate(traces, 8, cold_slots=2) == pytest.approx(2 / 6)
    # neuron 1 pinned hot: t0 hot 1, miss 2; t1 hot 1, miss 3; t2 hit 2, hit 3 -> 4 / 6
    assert simulate_hit_rate(traces, 8, cold_slots=2, hot_sets=[[1]]) == pytest.approx(4 / 6)


def test_the_cache_measures_the_hit_rate_the_planner_replays():
    """Same traces, same hot sets, same cold slots: the cache's measured neuron hit rate equals the replay's."""
    rng = np.random.default_rng(4)
    n, L, cs, cold_slots = 64, 2, 4, 20
    p = np.minimum(0.9, 2.0 / np.arange(1, n + 1))
    traces = [[np.flatnonzero(rng.random(n) < p) for _ in range(L)] for _ in range(40)]
    hot_sets = [np.arange(8) for _ in range(L)]                  # the 8 most frequent neurons
    hot = [[np.arange(a, a + cs) for a in range(0, 8, cs)] for _ in range(L)]
    cfg = CacheConfig(L, n, 3, 8, "float32", cs, hot_slots=L * 2, cold_slots=cold_slots)
    c = SegmentedCache(cfg, budget=1 << 20, hot_clusters=hot)
    for token in traces:
        for l, act in enumerate(token):
            c.split_active(l, act)
        c.end_token()
    warm = 10
    measured = neuron_hit_rate(c.history[warm:])
    assert 0.2 < measured < 0.95
    assert measured == pytest.approx(simulate_hit_rate(traces, n, cold_slots, hot_sets, warmup=warm))
