"""The platform layer's fallbacks, run in-process on any OS (``platform_io.simulate``)."""

import os
import threading

import numpy as np
import pytest

from teachkit.sparse.flash import platform_io
from teachkit.sparse.flash.aio import ThreadedReads, open_async_reads, read_batch
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN
from teachkit.sparse.flash.format import FlashFile, FlashSpec, write_flash
from teachkit.sparse.flash.reader import FlashReader, aligned_buffer, drop_cache
from teachkit.sparse.flash.platform_io import cached_pages
from teachkit.sparse.compute.reference import dense_ffn_ref
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack


@pytest.fixture(params=["portable", "windows"])
def fallback(request):
    """Run a test as on a Mac (``portable``) and as on Windows (``windows``)."""
    with platform_io.simulate(request.param) as caps:
        yield caps


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pio") / "data.bin"
    data = np.random.default_rng(0).integers(0, 256, 1 << 18, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    return path, data


def test_an_unknown_platform_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="TEACHKIT_IO_PLATFORM must be one of native, portable, windows"):
        platform_io.detect("macos")


def test_the_fallbacks_say_what_they_did(fallback, data_file):
    path, _ = data_file
    assert not (fallback.o_direct or fallback.fadvise or fallback.kernel_aio or fallback.proc)
    fd, how = platform_io.open_uncached(path)
    os.close(fd)
    assert how == "buffered"                                   # no O_DIRECT, no way to drop pages here
    assert "page cache" in platform_io.page_cache_note(how)
    lines = platform_io.describe()
    assert any("reads may come from the page cache" in line for line in lines)
    assert any("no kernel AIO" in line for line in lines)
    assert (not fallback.pread) == any("no pread" in line for line in lines)
    assert platform_io.drop_cache(0) is False and platform_io.advise_random(0) is False
    assert drop_cache(path) is None                            # syncs; nothing to drop with
    assert platform_io.process_read_bytes() is None            # no /proc: unknown, not zero
    assert platform_io.read_ahead_bytes(path, 12345) == 12345
    assert isinstance(platform_io.cpu_name(), str) and platform_io.last_level_cache_bytes() >= 0
    assert (cached_pages(path) is None) == (not fallback.mincore)
    path_info = platform_io.io_path("threads", how)
    assert path_info["mode"] == fallback.mode and path_info["uncached"] is False
    assert path_info["reads"] == ("pread threads" if fallback.pread else "seek+readinto threads")


@pytest.mark.parametrize("with_path", [True, False], ids=["handle-per-thread", "shared-handle"])
def test_range_file_reads_the_right_bytes_from_many_threads(fallback, data_file, with_path):
    path, data = data_file
    fd = platform_io.open_read(path)
    f = platform_io.RangeFile(fd, path if with_path else None)
    assert f.positional == fallback.pread
    rng = np.random.default_rng(1)
    errors = []

    def work(seed):
        r = np.random.default_rng(seed)
        buf = bytearray(4096)
        for _ in range(50):
            off = int(r.integers(0, len(data) - 4096))
            n = f.read_into(memoryview(buf), off)
            if n != 4096 or bytes(buf) != data[off:off + 4096].tobytes():
                errors.append(off)

    threads = [threading.Thread(target=work, args=(int(s),)) for s in rng.integers(0, 1000, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, f"wrong bytes at offsets {errors[:5]}"
    buf = aligned_buffer(4096)
    assert f.read_address(buf.ctypes.data, 4096, len(data) - 100) == 100   # short at the end, not an error
    np.testing.assert_array_equal(buf[:100], data[-100:])
    f.close()
    os.close(fd)


def test_read_threads_work_without_pread(fallback, data_file):
    path, data = data_file
    fd, _ = platform_io.open_uncached(path)
    r = open_async_reads(fd, 8, "auto", path=path)
    assert isinstance(r, ThreadedReads)
    buf = aligned_buffer(8 * 4096)
    off = np.arange(8, dtype=np.int64)[::-1] * 8192
    read_batch(r, (buf.ctypes.data + np.arange(8) * 4096).astype(np.uint64), off, np.full(8, 4096), 5.0, "a test batch")
    for j in range(8):
        np.testing.assert_array_equal(buf[j * 4096:(j + 1) * 4096], data[off[j]:off[j] + 4096])
    r.close()
    assert r.stuck == []
    os.close(fd)


def test_the_oracle_engine_equals_dense_on_the_fallback_path(fallback, tmp_path):
    stack = SyntheticStack(SyntheticConfig(d=128, d_ff=512, n_layers=2, activity=0.1, rank=8, seed=2))
    c = stack.cfg
    path = write_flash(tmp_path / "ffn.bin", FlashSpec(c.n_layers, c.d_ff, 3, c.d, align=4096), stack.bundles)
    f = FlashFile(path)
    with FlashReader(f, 4) as r:                               # blocking reads: no numba-over-libc without pread
        assert not r.direct and r.how == "buffered"
        np.testing.assert_array_equal(f.decode(r.read(1, np.array([3, 4, 9]))), stack.bundles[1][[3, 4, 9]])
    cfg = EngineConfig(budget=1 << 20, hot_neurons=32, cluster_size=16, prefill_chunk=64, check_reads=True)
    with SparseFFN(path, cfg, OraclePredictor(stack.bundles, True), gated=True, freq=stack.firing_prob) as eng:
        assert isinstance(eng.pipe.aio, ThreadedReads)
        for x in stack.hidden_states(0, 4, seed=3):
            for layer in range(c.n_layers):
                np.testing.assert_allclose(eng(layer, x), dense_ffn_ref(stack.bundles[layer], x, True),
                                           rtol=1e-4, atol=1e-4)
            eng.end_token()
        out = eng.dense_layer(0, stack.hidden_states(0, 3, seed=4), lambda h: np.maximum(h, 0))
        assert out.shape == (3, c.d)
    assert eng.stuck == []
