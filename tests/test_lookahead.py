"""The look-ahead: layer l+1's reads started during layer l, from a guess on layer l's input."""

import numpy as np
import pytest

from deadline import error_within
from teachkit.sparse.flash.aio import kernel_aio_available
from teachkit.sparse.compute.bundles import dequantize_int8, quantize_int8
from teachkit.sparse.runtime.cache import CacheConfig, SegmentedCache
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN
from teachkit.sparse.flash.format import FlashSpec, write_flash
from teachkit.sparse.flash.reader import FlashReadError
from teachkit.sparse.compute.reference import dense_ffn_ref
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack
from teachkit.sparse.flash.unit_reads import JobTable


def _stack(coupling):
    return SyntheticStack(SyntheticConfig(d=128, d_ff=512, n_layers=3, activity=0.1, rank=8, seed=1,
                                          layer_coupling=coupling))


@pytest.fixture(scope="module")
def coupled():
    return _stack(0.9)


def _lookahead_recall(stack, n=200):
    X = [stack.hidden_states(l, n, seed=4) for l in range(2)]
    truth = stack.preactivations(1, X[1]) > 0
    guess = stack.preactivations(1, X[0]) > 0
    return (truth & guess).sum() / truth.sum(), truth.mean()


def test_a_residual_stream_makes_the_next_layer_guessable():
    recall_indep, act_indep = _lookahead_recall(_stack(0.0))
    recall_coupled, act_coupled = _lookahead_recall(_stack(0.9))
    assert recall_coupled > 0.6 and recall_coupled > recall_indep + 0.2      # independent: only the hot head repeats
    assert abs(act_indep - 0.1) < 0.03 and abs(act_coupled - 0.1) < 0.03     # each layer keeps its statistics
    with pytest.raises(ValueError, match="layer_coupling"):
        _stack(1.0)


def test_coupling_leaves_the_first_layer_alone_and_changes_the_others():
    """Layer 0 is the same stream with or without coupling (and whatever the depth); deeper layers are not."""
    a, b = _stack(0.0), SyntheticStack(SyntheticConfig(d=128, d_ff=512, n_layers=1, activity=0.1, rank=8, seed=1))
    c = _stack(0.9)
    np.testing.assert_array_equal(a.hidden_states(0, 5, seed=2), b.hidden_states(0, 5, seed=2))
    np.testing.assert_array_equal(a.hidden_states(0, 5, seed=2), c.hidden_states(0, 5, seed=2))
    np.testing.assert_array_equal(a.bundles[0], b.bundles[0])
    assert not np.allclose(a.hidden_states(1, 5, seed=2), c.hidden_states(1, 5, seed=2))
    assert c.basis[1] is c.basis[0] and not np.allclose(a.basis[1], a.basis[0])   # one residual stream, one subspace


def _engine(tmp_path, stack, lookahead, fault=None, dtype="float32", **kw):
    c = stack.cfg
    path = tmp_path / f"ffn_{dtype}.bin"
    layers = stack.bundles if dtype == "float32" else [quantize_int8(b) for b in stack.bundles]
    if not path.exists():
        write_flash(path, FlashSpec(c.n_layers, c.d_ff, 3, c.d, dtype=dtype, align=512), layers)
    weights = stack.bundles if dtype == "float32" else [dequantize_int8(*q) for q in layers]
    cfg = EngineConfig(budget=kw.pop("budget", 4 << 20), hot_neurons=64, cluster_size=16, prefill_chunk=64,
                       lookahead=lookahead, **kw)
    return SparseFFN(path, cfg, OraclePredictor(weights, True), gated=True, freq=stack.firing_prob, fault=fault)


@pytest.mark.parametrize("aio", ["kernel", "threads"])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_lookahead_is_exact_on_every_read_path(tmp_path, coupled, aio, dtype):
    """Kernel AIO or pread threads; reads straight into the cache rows (float32) or via staging (int8)."""
    if aio == "kernel" and not kernel_aio_available():
        pytest.skip("needs kernel AIO (missing on this platform, or hidden by TEACHKIT_IO_PLATFORM)")
    X = [coupled.hidden_states(l, 6, seed=7) for l in range(3)]
    with _engine(tmp_path, coupled, True, dtype=dtype, aio=aio) as eng:
        assert eng.pipe.io.into_cache == (dtype == "float32")
        W = [dequantize_int8(*quantize_int8(b)) for b in coupled.bundles] if dtype == "int8" else coupled.bundles
        for t in range(6):
            for l in range(3):
                np.testing.assert_allclose(eng(l, X[l][t]), dense_ffn_ref(W[l], X[l][t], gated=True),
                                           rtol=1e-4, atol=1e-4)
            eng.end_token()
        assert sum(h["prefetch_hits"] for h in eng.cache.history) > 0


def test_lookahead_engine_equals_dense_and_reads_ahead(tmp_path, coupled):
    X = [coupled.hidden_states(l, 10, seed=5) for l in range(3)]
    with _engine(tmp_path, coupled, True) as eng, _engine(tmp_path, coupled, False) as plain:
        for t in range(10):
            for l in range(3):
                got, base = eng(l, X[l][t]), plain(l, X[l][t])
                want = dense_ffn_ref(coupled.bundles[l], X[l][t], gated=True)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
                np.testing.assert_allclose(got, base, rtol=1e-5, atol=1e-5)
            eng.end_token()
            plain.end_token()
        hist = eng.cache.history
        assert sum(h["prefetched"] for h in hist) > 0 and sum(h["prefetch_hits"] for h in hist) > 0
        assert sum(h["prefetch_hits"] for h in hist) <= sum(h["prefetched"] for h in hist)
        assert sum(h["cold_misses"] for h in hist) < sum(h["cold_misses"] for h in plain.cache.history)
        assert sum(eng.cache.traffic.values()) == eng.pipe.bytes_read        # prefetched bytes are counted
        assert eng.cache.bytes_total <= eng.cfg.budget
        assert "prefetch_read" in {e[1] for e in eng.trace.events}
        guesses = [e for e in eng.trace.events if e[1] == "lookahead"]
        assert len(guesses) == 10 * 2 and {e[2] for e in guesses} == {1, 2}   # every layer but the first, each token
        assert not eng.pipe.ahead                                            # nothing left in flight


def test_more_lookahead_reads_than_rows_in_flight_are_refused(tmp_path, coupled):
    with _engine(tmp_path, coupled, True) as eng:
        n = eng.pipe.io.n_rows + 1
        with pytest.raises(ValueError, match="at most"):
            eng.pipe.prefetch(1, np.arange(n), np.arange(n))


def test_prefetch_never_takes_a_slot_the_current_layer_uses():
    cfg = CacheConfig(n_layers=2, n_neurons=64, n_mats=3, d=8, cluster_size=4, hot_slots=0, cold_slots=10)
    c = SegmentedCache(cfg, budget=1 << 20)
    plan = c.split_active(0, np.arange(6))                     # 6 of 10 slots used by layer 0 now
    used = set(plan.cold_slots.tolist())
    neurons, slots = c.prefetch_cold(1, np.arange(20, 40))       # 20 guesses, room for 4
    assert len(slots) == 4 and not used & set(slots.tolist())
    assert neurons.tolist() == [20, 21, 22, 23]
    again, _ = c.prefetch_cold(1, np.array([20, 21]))            # already in memory: nothing to read
    assert len(again) == 0
    plan = c.split_active(1, np.array([20, 22, 50]))
    assert plan.cold_miss.tolist() == [False, False, True]
    rec = c.end_token()
    assert rec["prefetched"] == 4 and rec["prefetch_hits"] == 2
    assert rec["cold_hits"] == 2                                  # a look-ahead's hit is a hit
    c.invalidate_cold(1, np.array([21]))
    assert not c.prefetched[slots[1]] and c.cold.slot_of[64 + 21] == -1


def test_a_failed_lookahead_read_stops_the_pipeline(tmp_path, coupled):
    x = [coupled.hidden_states(l, 1, seed=6)[0] for l in range(3)]
    with _engine(tmp_path, coupled, False) as probe:          # how many reads layer 0 makes on its own
        probe(0, x[0])
        first = probe.n_reads

    def fault(n):
        if n >= first:
            raise OSError(5, "injected I/O error")

    eng = _engine(tmp_path, coupled, True, fault=fault)
    eng(0, x[0])                                                 # its own reads succeed; the look-ahead's fail
    assert eng.cache.history == [] and eng.pipe.ahead
    err = error_within(lambda: eng(1, x[1]), 10, "the pipeline after a failed look-ahead read")
    assert isinstance(err, FlashReadError) and "injected" in str(err)
    assert not eng.cache.prefetched.any() and not eng.pipe.ahead   # slots that never got their bytes are forgotten
    with pytest.raises(RuntimeError, match="stopped after an error"):
        eng(1, x[1])
    eng.close()


def test_tally_counts_reads_per_job_and_keeps_the_first_bad_result():
    jobs = JobTable(3)
    for slot, (n_reads, length) in enumerate([(2, 4096), (3, 4096), (1, 512)]):
        jobs.start(slot, n_reads, length)
    finished = jobs.tally(np.array([0, 1, 0, 2]), np.array([4096, 100, 4096, -5]))
    assert finished == [0, 2] and jobs.left.tolist() == [0, 2, 0]
    assert jobs.failed.tolist() == [False, True, True] and jobs.bad.tolist() == [0, 100, -5]


def test_float32_reads_land_straight_in_the_cache_rows(tmp_path, coupled):
    with _engine(tmp_path, coupled, False) as eng:
        assert eng.pipe.io.into_cache
        for W in (eng.cache.hot_w, eng.cache.cold_w):
            assert W.ctypes.data % 4096 == 0                      # page-aligned: fit for O_DIRECT


def test_ids_out_of_range_are_refused_before_any_table_is_touched():
    cfg = CacheConfig(n_layers=2, n_neurons=64, n_mats=3, d=8, cluster_size=4, hot_slots=0, cold_slots=10)
    c = SegmentedCache(cfg, budget=1 << 20)
    for bad in (np.array([3, 64]), np.array([-1, 2])):
        with pytest.raises(ValueError, match="in \\[0, 64\\)"):
            c.split_active(0, bad)
        with pytest.raises(ValueError, match="in \\[0, 64\\)"):
            c.prefetch_cold(1, bad)
    assert c.cold.occupied == 0
