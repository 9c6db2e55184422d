"""The polymorphic engine and its baselines: identical tokens with an oracle, same FFN everywhere."""

import numpy as np
import pytest
import torch

from teachkit.sparse.flash import platform_io
from teachkit.sparse.baselines.dense import DenseMmap, DenseRAM, DenseStream
from teachkit.sparse.baselines.sparse import LLMFlash, NoCacheSparse
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN, plan_regions
from teachkit.sparse.runtime.numpy_gpt import NumpyGPT
from teachkit.sparse.flash.format import FlashFormatError, FlashSpec, write_flash
from teachkit.sparse.model.lm import export_numpy
from teachkit.sparse.compute.reference import dense_ffn_ref
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack
from teachkit.toy.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=48, n_layer=2, n_head=4, d_model=32, d_ff=128)).eval()
    with torch.no_grad():                       # give the MLP biases some spread so sparsity varies
        for b in model.blocks:
            b.mlp.fc.bias.normal_(0, 0.5)
    return model


def _greedy_torch(model, prompt, n):
    idx = torch.tensor([prompt])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(idx)[0, -1].argmax())
            out.append(nxt)
            idx = torch.cat([idx, torch.tensor([[nxt]])], 1)
    return out


def test_numpy_gpt_matches_torch(tiny_lm):
    gpt = NumpyGPT(export_numpy(tiny_lm))
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    assert gpt.generate(prompt, 20) == _greedy_torch(tiny_lm, prompt, 20)


def test_oracle_engine_generates_the_dense_tokens(tmp_path, tiny_lm):
    gpt = NumpyGPT(export_numpy(tiny_lm))
    B = gpt.bundles[0]
    spec = FlashSpec(2, B.shape[0], 2, B.shape[2], align=64)
    path = write_flash(tmp_path / "lm.bin", spec, gpt.bundles)
    fixed = sum(a.nbytes for a in gpt.fixed.values())
    kv = gpt.kv_cache_bytes()
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    dense = gpt.generate(prompt, 30)
    for schedule in ("serial", "cluster"):
        cfg = EngineConfig(budget=fixed + kv + spec.ffn_bytes // 2 + (32 << 10), cluster_size=8, prefill_chunk=32,
                           schedule=schedule, max_prompt=16)
        with SparseFFN(path, cfg, OraclePredictor(gpt.bundles, gated=False), gated=False, fixed=gpt.fixed,
                       expect=spec, kv_bytes=kv) as eng:
            assert eng.cache.cfg.cold_slots < spec.n_layers * spec.n_neurons     # the FFN does not fit
            assert gpt.generate(prompt, 30, engine=eng) == dense
            assert eng.stats()["bytes_read"] > 0
            stages = {e[1] for e in eng.trace.events}
            assert {"prefill", "attention", "predict"} <= stages
    lp_dense = gpt.next_token_logprobs(prompt + dense)
    with SparseFFN(path, cfg, OraclePredictor(gpt.bundles, gated=False), gated=False, fixed=gpt.fixed,
                   kv_bytes=kv) as eng:
        np.testing.assert_allclose(gpt.next_token_logprobs(prompt + dense, engine=eng), lp_dense, atol=1e-4)


def test_engine_refuses_a_file_for_another_model(tmp_path, tiny_lm):
    gpt = NumpyGPT(export_numpy(tiny_lm))
    B = gpt.bundles[0]
    path = write_flash(tmp_path / "lm.bin", FlashSpec(2, B.shape[0], 2, B.shape[2], align=64), gpt.bundles)
    cfg = EngineConfig(budget=1 << 22)
    with pytest.raises(FlashFormatError, match="d = 33 in the file, but 65 expected"):
        SparseFFN(path, cfg, OraclePredictor(gpt.bundles, False), gated=False, expect={"d": 65})


def test_plan_regions_respects_the_budget():
    spec = FlashSpec(4, 1000, 3, 64)
    bundle = 3 * 64 * 4
    hot, cold = plan_regions(spec, budget=500_000, fixed_bytes=100_000, other_bytes=50_000, hot_neurons=96,
                             cluster_size=32)
    assert hot == 12
    used = 100_000 + 50_000 + hot * (32 * bundle + 32) + cold * (bundle + 32)    # 32 B of LRU table per slot
    assert cold == 68 and used <= 500_000 < used + bundle + 32
    with pytest.raises(ValueError, match="does not even hold"):
        plan_regions(spec, 100_000, 90_000, 20_000, 0, 32)


@pytest.fixture(scope="module")
def stack_files(tmp_path_factory):
    stack = SyntheticStack(SyntheticConfig(d=128, d_ff=512, n_layers=3, activity=0.1, rank=8, seed=2))
    d = tmp_path_factory.mktemp("stack")
    b = write_flash(d / "b.bin", FlashSpec(3, 512, 3, 128, align=512), stack.bundles)
    m = write_flash(d / "m.bin", FlashSpec(3, 512, 3, 128, layout="matrix", align=512), stack.bundles)
    return stack, b, m


def test_every_baseline_computes_the_dense_ffn(stack_files):
    stack, bpath, mpath = stack_files
    oracle = OraclePredictor(stack.bundles, gated=True)
    X = [stack.hidden_states(l, 6, seed=4) for l in range(3)]
    budget = stack.bundles[0].nbytes
    backends = {"ram": DenseRAM(stack.bundles, True), "mmap": DenseMmap(bpath, budget, True),
                "stream": DenseStream(bpath, budget, True, chunk_bytes=16 << 10),
                "flash": LLMFlash(bpath, oracle, True, budget, window=2, io_threads=2),
                "nocache_matrix": NoCacheSparse(mpath, oracle, True, 512),
                "nocache_bundle": NoCacheSparse(bpath, oracle, True, 512, io_threads=2)}
    for name, be in backends.items():
        for t in range(6):
            for l in range(3):
                y = be(l, X[l][t])
                np.testing.assert_allclose(y, dense_ffn_ref(stack.bundles[l], X[l][t], True), rtol=1e-4, atol=1e-4,
                                           err_msg=name)
            be.end_token()
        be.close()
    assert backends["nocache_matrix"].n_reads == 3 * backends["nocache_bundle"].n_reads
    assert backends["stream"].n_pin > 0 and backends["stream"].resident_bytes <= budget
    assert 0 < backends["flash"].stats()["hit_rate"] < 1


def test_dense_mmap_never_holds_more_than_its_budget(stack_files):
    from teachkit.sparse.baselines.dense import read_ahead_bytes
    from teachkit.sparse.flash.platform_io import cached_pages

    stack, bpath, _ = stack_files
    budget = stack.bundles[0].nbytes // 2                  # half a layer: chunks must be dropped inside a layer
    be = DenseMmap(bpath, budget, True)
    X = stack.hidden_states(0, 3, seed=4)
    for t in range(3):
        for l in range(3):
            np.testing.assert_allclose(be(l, X[t]), dense_ffn_ref(stack.bundles[l], X[t], True), rtol=1e-4, atol=1e-4)
            slack = 2 * read_ahead_bytes(bpath) + 2 * 4096                # readahead in flight, header page
            if platform_io.CAPS.fadvise:                                   # else the page cache keeps what was read
                assert cached_pages(bpath) * 4096 <= budget + slack        # the kernel agrees
    assert 0 < be.peak_resident <= budget
    be.close()


def test_dense_stream_keeps_two_reads_in_flight_in_order(stack_files):
    stack, bpath, _ = stack_files
    be = DenseStream(bpath, stack.bundles[0].nbytes, True, chunk_bytes=8 << 10, io_threads=2)
    assert be.ring % 2 == 0 and len(be.readers) == 2 and be.n_pin < 512
    X = stack.hidden_states(1, 4, seed=4)
    for t in range(4):
        for l in range(3):
            np.testing.assert_allclose(be(l, X[t]), dense_ffn_ref(stack.bundles[l], X[t], True), rtol=1e-4, atol=1e-4)
    assert all(r.n_reads > 0 for r in be.readers)               # both readers took part
    be.close()
