"""The cluster pipeline: sparse output equals dense with an oracle, failures stop it in time."""

import threading

import numpy as np
import pytest

from deadline import error_within
from teachkit.sparse.flash.aio import BYTES_PER_SLOT, KernelAIO
from teachkit.sparse.compute.bundles import dequantize_int8, quantize_int8
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN
from teachkit.sparse.flash.format import FlashSpec, write_flash
from teachkit.sparse.flash.reader import FlashReadError
from teachkit.sparse.runtime.pipeline import PipelineTimeout
from teachkit.sparse.runtime.trace import Trace
from teachkit.sparse.compute.reference import dense_ffn_ref
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack


@pytest.fixture(scope="module")
def stack():
    return SyntheticStack(SyntheticConfig(d=128, d_ff=512, n_layers=3, activity=0.1, rank=8, seed=1))


def _engine(tmp_path, stack, dtype="float32", budget=None, **kw):
    c = stack.cfg
    spec = FlashSpec(c.n_layers, c.d_ff, 3, c.d, dtype=dtype, align=4096 if c.d % 1024 == 0 else 512)
    layers = stack.bundles if dtype == "float32" else [quantize_int8(b) for b in stack.bundles]
    path = tmp_path / f"ffn_{dtype}.bin"
    if not path.exists():
        write_flash(path, spec, layers)
    weights = stack.bundles if dtype == "float32" else [dequantize_int8(*q) for q in layers]
    cfg = EngineConfig(budget=budget or 4 << 20, hot_neurons=64, cluster_size=16, prefill_chunk=64, **kw)
    freq = stack.firing_prob
    return SparseFFN(path, cfg, OraclePredictor(weights, True), gated=True, freq=freq), weights


@pytest.mark.parametrize("schedule", ["cluster", "matrix", "serial"])
@pytest.mark.parametrize("read_unit", ["bundle", "split"])
def test_oracle_sparse_equals_dense(tmp_path, stack, schedule, read_unit):
    eng, W = _engine(tmp_path, stack, schedule=schedule, read_unit=read_unit)
    with eng:
        X = [stack.hidden_states(l, 12, seed=5) for l in range(3)]
        for t in range(12):
            for l in range(3):
                got = eng(l, X[l][t])
                want = dense_ffn_ref(W[l], X[l][t], gated=True)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
            eng.end_token()
        s = eng.stats()
        assert s["bytes_read"] > 0 and 0 < s["hit_rate_cold"] < 1
        assert sum(eng.cache.traffic.values()) == eng.pipe.bytes_read      # every byte read is accounted
        assert eng.cache.bytes_total <= eng.cfg.budget
        stages = {e[1] for e in eng.trace.events}
        serial_fused = schedule == "serial" and read_unit == "bundle"      # all in memory after the reads
        want = {"predict", "fused_compute"} if serial_fused else {"predict", "gate_compute", "updown_compute"}
        want |= {"gate_read", "updown_read"} if read_unit == "split" else {"bundle_read"}
        want |= {"submit"}                                                  # the compute thread hands reads over
        assert want <= stages


def test_int8_engine_matches_dequantized_dense(tmp_path, stack):
    eng, W = _engine(tmp_path, stack, dtype="int8")
    with eng:
        x = stack.hidden_states(1, 1, seed=2)[0]
        np.testing.assert_allclose(eng(1, x), dense_ffn_ref(W[1], x, True), rtol=1e-3, atol=1e-3)


def test_cache_hits_grow_and_traffic_falls(tmp_path, stack):
    eng, _ = _engine(tmp_path, stack)
    with eng:
        X = stack.hidden_states(0, 30, seed=7)
        reads = []
        for t in range(30):
            before = eng.pipe.bytes_read
            eng(0, X[t])
            eng.end_token()
            reads.append(eng.pipe.bytes_read - before)
        assert np.mean(reads[-10:]) < 0.5 * reads[0]     # the cold start reads most
        h = eng.cache.history
        assert h[0]["cold_hits"] == 0 and sum(r["cold_hits"] for r in h[-10:]) > 0


def test_prefill_streams_the_dense_layer(tmp_path, stack):
    eng, W = _engine(tmp_path, stack)
    with eng:
        X = stack.hidden_states(2, 5, seed=1)
        got = eng.dense_layer(2, X, lambda a: np.maximum(a, 0))
        want = np.stack([dense_ffn_ref(W[2], x, True) for x in X])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        st = eng.stats()                       # the layer streamed once, counted apart from decode reads
        assert st["prefill_bytes_read"] == eng.spec.layer_bytes and st["bytes_read"] == 0


def test_budget_too_small_is_refused(tmp_path, stack):
    with pytest.raises(ValueError, match="budget"):
        _engine(tmp_path, stack, budget=100_000)


def test_injected_read_failure_stops_with_an_error(tmp_path, stack):
    eng, _ = _engine(tmp_path, stack)

    def fault(n):
        if n >= 3:
            raise OSError(5, "injected I/O error")

    eng.pipe.reader.fault = fault
    X = stack.hidden_states(0, 3, seed=3)
    err = error_within(lambda: [eng(0, x) for x in X], 10, "the pipeline after a read failure")
    assert isinstance(err, FlashReadError) and "injected" in str(err)
    with pytest.raises(RuntimeError, match="stopped after an error"):
        eng(0, X[0])
    eng.close()


def test_hung_read_times_out(tmp_path, stack):
    eng, _ = _engine(tmp_path, stack, timeout=0.5)
    release = threading.Event()
    eng.pipe.reader.fault = lambda n: release.wait(30)
    with pytest.raises(PipelineTimeout, match="stuck"):
        eng(0, stack.hidden_states(0, 1, seed=3)[0])
    release.set()
    eng.close()


# --------------------------------------------------------------------------- review fixes
def test_an_interrupt_mid_layer_stops_the_pipeline_and_forgets_its_slots(tmp_path, stack, monkeypatch):
    """Ctrl-C (or a kernel bug) during a layer must not leave slots that claim data never read."""
    import teachkit.sparse.runtime.pipeline as P

    eng, _ = _engine(tmp_path, stack)
    real = P.gate_compute
    calls = []

    def interrupted(*a):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(P, "gate_compute", interrupted)
    x = stack.hidden_states(0, 1, seed=3)[0]
    with pytest.raises(KeyboardInterrupt):
        eng(0, x)
    assert eng.cache.cold.occupied == 0 and eng.cache.hot.occupied == 0    # the misses' slots are forgotten
    with pytest.raises(RuntimeError, match="stopped after an error"):
        eng(0, x)
    eng.close()


class _Listed:
    """A predictor that returns given ids (and holds one array, counted in the budget)."""

    def __init__(self, ids, d=128):
        self.ids, self.W = ids, np.zeros((4, d), np.float32)
        self.nbytes = self.W.nbytes + np.asarray(ids).nbytes

    def __call__(self, layer, x):
        return self.ids


def test_predictor_output_is_checked_and_deduplicated(tmp_path, stack):
    x = stack.hidden_states(0, 1, seed=3)[0]
    W = stack.bundles[0]
    ids = np.flatnonzero(W[:, 0] @ x > 0)
    want = dense_ffn_ref(W, x, gated=True)
    c = stack.cfg
    path = tmp_path / "f.bin"
    write_flash(path, FlashSpec(c.n_layers, c.d_ff, 3, c.d, align=512), stack.bundles)
    cfg = EngineConfig(budget=4 << 20, cluster_size=16, prefill_chunk=64)
    with SparseFFN(path, cfg, _Listed(np.concatenate([ids, ids[:7]])), gated=True) as eng:
        np.testing.assert_allclose(eng(0, x), want, rtol=1e-4, atol=1e-4)     # duplicates computed once
    for bad, msg in [(np.array([0, c.d_ff]), "outside 0..511"), (np.array([-1]), "outside"),
                     (np.array([0.5]), "integer"), (np.zeros((2, 2), np.int64), "1-D")]:
        with SparseFFN(path, cfg, _Listed(bad), gated=True) as eng:
            with pytest.raises(ValueError, match=msg):
                eng(0, x)
    with pytest.raises(TypeError, match="nbytes"):
        SparseFFN(path, cfg, lambda l, x: ids, gated=True)


def test_budget_covers_every_array_the_engine_holds(tmp_path, stack):
    from test_cache import held_array_bytes

    c = stack.cfg
    path = tmp_path / "f.bin"
    write_flash(path, FlashSpec(c.n_layers, c.d_ff, 3, c.d, align=512), stack.bundles)
    fixed = {"attn": np.ones((c.d, c.d), np.float32)}
    pred = _Listed(np.arange(40, dtype=np.int64))
    budget = 2 << 20
    cfg = EngineConfig(budget=budget, hot_neurons=64, cluster_size=16, prefill_chunk=64, max_prompt=8)
    with SparseFFN(path, cfg, pred, gated=True, fixed=fixed, freq=stack.firing_prob, kv_bytes=50_000) as eng:
        for x in stack.hidden_states(0, 3, seed=1):
            eng(0, x)
        held = sum(held_array_bytes(eng).values())
        kv, prefill = 50_000, 8 * 4 * (64 * 3 + 2 * c.d)      # held by the model / made during prefill
        assert held + kv + prefill <= eng.cache.bytes_total <= budget
        slots = 0 if isinstance(eng.pipe.aio, KernelAIO) else BYTES_PER_SLOT * eng.pipe.io.n_rows
        assert eng.cache.bytes_total - (held + kv + prefill) < 1024 + slots   # nothing large is left uncounted
        # (the budget counts kernel AIO's tables; pread threads hold none, so they leave that much spare)
        assert pred.W.nbytes + fixed["attn"].nbytes <= held
    assert eng.stats()["outside_budget"] == 0


def test_oracle_bytes_are_declared_outside_the_budget(tmp_path, stack):
    eng, W = _engine(tmp_path, stack)
    with eng:
        assert eng.stats()["outside_budget"] == sum(b[:, 0].nbytes for b in W)


@pytest.mark.parametrize("schedule", ["cluster", "matrix"])
def test_cluster_schedule_overlaps_updown_with_reads(tmp_path, stack, schedule):
    """Cluster: some up/down compute runs before the layer's last read lands. Matrix: none does."""
    import time as _time

    eng, _ = _engine(tmp_path, stack, schedule=schedule)
    eng.pipe.reader.fault = lambda n: _time.sleep(0.003)          # a slow disk: reads take >= 3 ms
    with eng:
        X = stack.hidden_states(1, 4, seed=9)
        for t in range(4):
            eng.trace.clear()
            eng(1, X[t])
            ev = eng.trace.events
            reads = [e for e in ev if e[1] == "bundle_read"]
            ups = [e for e in ev if e[1] in ("updown_compute", "fused_compute")]   # fused: in-memory work
            assert reads and ups
            last_read_end = max(e[5] for e in reads)
            early = [e for e in ups if e[4] < last_read_end]
            if schedule == "cluster":
                assert early, f"token {t}: no up/down work overlapped the reads"
            else:
                assert not early
            eng.end_token()


def test_prefill_read_failure_and_hang_stop_with_an_error(tmp_path, stack):
    X = stack.hidden_states(2, 5, seed=1)
    eng, _ = _engine(tmp_path, stack, timeout=0.5)

    def broken(n):
        raise OSError(5, "injected I/O error")

    eng.prefill_reader.fault = broken
    with pytest.raises(FlashReadError, match="injected"):
        eng.dense_layer(2, X, lambda a: np.maximum(a, 0))
    with pytest.raises(RuntimeError, match="stopped"):
        eng(0, X[0])
    eng.close()
    eng, _ = _engine(tmp_path, stack, timeout=0.5)
    release = threading.Event()
    eng.prefill_reader.fault = lambda n: release.wait(30)
    err = error_within(lambda: eng.dense_layer(2, X, lambda a: np.maximum(a, 0)), 10, "prefill on a stuck read")
    assert isinstance(err, PipelineTimeout)
    release.set()
    eng.close()


def test_trace_covered_counts_overlapping_events_once():
    tr = Trace()
    tr.t_origin = 0.0
    for t0, t1 in [(1.0, 3.0), (2.0, 4.0), (6.0, 7.0)]:
        tr.add("io", "bundle_read", 0, 0, t0, t1)
    tr.add("compute", "gate_compute", 0, 0, 0.0, 10.0)
    assert tr.busy("io") == pytest.approx(5.0)
    assert tr.covered("io") == pytest.approx(4.0)                 # [1, 4] and [6, 7]
