"""Asynchronous reads (kernel AIO and the pread-thread fallback), and the pipeline on top of them."""

import ctypes
import errno
import os
import time

import numpy as np
import pytest

import teachkit.sparse.flash.aio as aio
from teachkit.sparse.flash import platform_io
from teachkit.sparse.flash.aio import (BYTES_PER_SLOT, KernelAIO, ThreadedReads, kernel_aio_available,
    open_async_reads)
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN, engine_memory
from teachkit.sparse.flash.format import FlashFile, FlashSpec, write_flash
from teachkit.sparse.flash.reader import FlashReadError, aligned_buffer
from teachkit.sparse.flash.unit_reads import JobTable, staging_rows
from test_cache import held_array_bytes
from teachkit.sparse.compute.reference import dense_ffn_ref
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack

KINDS = ["kernel", "threads"]
PAGE = 4096
FILE_BYTES = 64 * PAGE


def _need(kind):
    if kind == "kernel" and not kernel_aio_available():
        pytest.skip("needs kernel AIO (missing on this platform, or hidden by TEACHKIT_IO_PLATFORM)")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """A 256 KiB file of random bytes on a real filesystem, written through to disk."""
    path = tmp_path_factory.mktemp("aio") / "data.bin"
    data = np.random.default_rng(0).integers(0, 256, FILE_BYTES, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(data.tobytes())
        f.flush()
        os.fsync(f.fileno())
    return path, data


def _open(path, direct):
    if direct:
        if not platform_io.CAPS.o_direct:
            pytest.skip("needs O_DIRECT (missing on this platform, or hidden by TEACHKIT_IO_PLATFORM)")
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECT)
        except (OSError, AttributeError):
            pytest.skip("this filesystem refuses O_DIRECT")
    return os.open(path, os.O_RDONLY)


@pytest.fixture(params=[(k, d) for k in KINDS for d in (True, False)],
                ids=[f"{k}-{'direct' if d else 'buffered'}" for k in KINDS for d in (True, False)])
def reads(request, data_file):
    """``(reader, data)``: an async reader of depth 8 on the data file, closed afterwards."""
    kind, direct = request.param
    _need(kind)
    fd = _open(data_file[0], direct)
    r = open_async_reads(fd, 8, kind)
    assert isinstance(r, KernelAIO if kind == "kernel" else ThreadedReads)
    yield r, data_file[1]
    r.close()
    os.close(fd)


def _reap_all(r, n, timeout=5.0):
    """Reap until ``n`` completions came back; fail (not hang) if they do not within ``timeout`` s."""
    tags, res = [], []
    end = time.monotonic() + timeout
    while len(tags) < n:
        assert time.monotonic() < end, f"only {len(tags)} of {n} reads completed within {timeout} s"
        t, x = r.reap(1, 0.5)
        assert t.dtype == np.int64 and x.dtype == np.int64 and len(t) == len(x)
        tags += t.tolist()
        res += x.tolist()
    return tags, res


# --------------------------------------------------------------------------- the readers alone
def test_random_aligned_reads_return_the_files_bytes_and_their_own_tags(reads):
    r, data = reads
    rng = np.random.default_rng(1)
    n = 40                                          # 5x the depth: slots are reused many times
    pages = rng.integers(1, 4, n)                   # 4, 8 or 12 KiB: results differ by read
    offset = rng.integers(0, FILE_BYTES // PAGE - 3, n) * PAGE
    length = pages * PAGE
    dst = np.concatenate(([0], np.cumsum(length)[:-1]))
    buf = aligned_buffer(int(length.sum()))
    buf[:] = 0xAA
    tags = rng.permutation(np.arange(1000, 1000 + 7 * n, 7))[:n]    # distinct, not in submission order
    by_tag = {int(t): j for j, t in enumerate(tags)}
    back, nxt = {}, 0
    while len(back) < n:
        k = min(len(r.free), n - nxt)
        if k:
            sl = slice(nxt, nxt + k)
            r.submit((buf.ctypes.data + dst[sl]).astype(np.uint64), offset[sl], length[sl], tags[sl])
            nxt += k
        t, res = r.reap(1, 5.0)
        assert len(t), "no read completed within 5 s"
        for tag, got in zip(t.tolist(), res.tolist()):
            assert tag in by_tag and tag not in back, f"unknown or repeated tag {tag}"
            back[tag] = got
    for tag, j in by_tag.items():
        assert back[tag] == length[j], f"tag {tag}: result {back[tag]}, asked for {length[j]} B"
        np.testing.assert_array_equal(buf[dst[j]:dst[j] + length[j]], data[offset[j]:offset[j] + length[j]],
                                      err_msg=f"tag {tag}: wrong bytes")
    assert r.in_flight == 0 and len(r.free) == 8


def test_reads_past_end_of_file_come_back_short_not_as_errors(reads):
    r, data = reads
    buf = aligned_buffer(3 * 2 * PAGE)
    addr = (buf.ctypes.data + np.arange(3) * 2 * PAGE).astype(np.uint64)
    offset = np.array([FILE_BYTES - PAGE, FILE_BYTES, FILE_BYTES + (1 << 20)])   # straddling, at, beyond EOF
    t0 = time.monotonic()
    r.submit(addr, offset, np.full(3, 2 * PAGE), np.array([5, 6, 7]))
    tags, res = _reap_all(r, 3)
    assert time.monotonic() - t0 < 5
    got = dict(zip(tags, res))
    assert got == {5: PAGE, 6: 0, 7: 0}
    np.testing.assert_array_equal(buf[:PAGE], data[-PAGE:])


def test_submitting_more_reads_than_free_slots_is_refused_until_reaped(reads):
    r, _ = reads
    buf = aligned_buffer(9 * PAGE)

    def submit(first, k):
        rows = np.arange(first, first + k)
        r.submit((buf.ctypes.data + rows * PAGE).astype(np.uint64), rows * PAGE, np.full(k, PAGE), rows)

    with pytest.raises(ValueError, match=r"9 reads asked for, but only 8 .*slots are free"):
        submit(0, 9)
    assert r.in_flight == 0 and len(r.free) == 8            # a refused batch takes no slot
    submit(0, 6)
    with pytest.raises(ValueError, match=r"3 reads asked for, but only 2 .*slots are free"):
        submit(6, 3)
    submit(6, 2)
    assert len(r.free) == 0
    with pytest.raises(ValueError, match=r"only 0 .*slots are free"):
        submit(8, 1)
    tags, res = _reap_all(r, 8)
    assert sorted(tags) == list(range(8)) and res == [PAGE] * 8
    assert r.in_flight == 0 and len(r.free) == 8
    submit(0, 8)                                            # every slot is usable again
    tags, res = _reap_all(r, 8)
    assert sorted(tags) == list(range(8)) and res == [PAGE] * 8


def test_reap_with_nothing_in_flight_returns_at_once(reads):
    r, _ = reads
    for timeout in (0.05, 3.0):                 # nothing can come back: do not sit out the timeout
        t0 = time.monotonic()
        tags, res = r.reap(min_nr=1, timeout=timeout)
        assert time.monotonic() - t0 < 1.0
        assert tags.shape == res.shape == (0,) and tags.dtype == res.dtype == np.int64


def test_open_async_reads_checks_its_arguments(data_file):
    fd = os.open(data_file[0], os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="kind must be"):
            open_async_reads(fd, 4, "io_uring")
        with pytest.raises(ValueError, match="depth must be positive"):
            open_async_reads(fd, 0, "threads")
        r = open_async_reads(fd, 2, "auto")
        assert isinstance(r, KernelAIO if kernel_aio_available() else ThreadedReads)
        r.close()
    finally:
        os.close(fd)


def test_iocb_and_event_layouts_match_the_kernel_abi():
    """``include/uapi/linux/aio_abi.h`` on a little-endian 64-bit machine: 64 B iocb, 32 B io_event."""
    assert aio.IOCB.itemsize == 64 and aio.IO_EVENT.itemsize == 32 and BYTES_PER_SLOT == 96
    want = {"data": 0, "key": 8, "rw_flags": 12, "opcode": 16, "reqprio": 18, "fildes": 20, "buf": 24,
            "nbytes": 32, "offset": 40, "reserved2": 48, "flags": 56, "resfd": 60}
    assert {k: aio.IOCB.fields[k][1] for k in want} == want
    assert {k: aio.IO_EVENT.fields[k][1] for k in ("data", "obj", "res", "res2")} == \
        {"data": 0, "obj": 8, "res": 16, "res2": 24}


def test_the_iocb_writer_fills_exactly_the_abi_fields(data_file):
    """What ``submit`` writes into the iocb table, read back through the named ABI fields."""
    _need("kernel")
    fd = os.open(data_file[0], os.O_RDONLY)
    r = KernelAIO(fd, 4)
    try:
        r.iocbs.view(np.uint8)[:] = 0xFF                             # garbage everywhere first
        r.free[:] = [3, 1, 0, 2]                                     # the two reads take slots 3 and 1
        buf = aligned_buffer(2 * PAGE)
        addr = np.array([buf.ctypes.data, buf.ctypes.data + PAGE], np.uint64)
        offset, length, tags = np.array([0, 1 << 33]), np.array([512, 1024]), np.array([5, 6])
        r.submit(addr, offset, length, tags)
        for j, s in enumerate([3, 1]):
            cb = r.iocbs[s]
            assert (cb["opcode"], cb["reqprio"], cb["fildes"], cb["key"], cb["rw_flags"]) == (aio.IOCB_CMD_PREAD, 0, fd, 0, 0)
            assert (cb["buf"], cb["nbytes"], cb["offset"]) == (addr[j], length[j], offset[j])
            assert (cb["reserved2"], cb["flags"], cb["resfd"]) == (0, 0, 0)
            assert cb["data"] == (int(tags[j]) << 16 | s)
        assert (r.iocbs[[0, 2]].view(np.uint8) == 0xFF).all()       # other slots untouched
        got = dict(zip(*_reap_all(r, 2)))                            # the kernel found both iocbs
        assert got == {5: 512, 6: 0}                                 # (the second is far past the end)
    finally:
        r.close()
        os.close(fd)


def test_a_partly_accepted_kernel_submit_still_counts_the_reads_in_flight(data_file, monkeypatch):
    """io_submit may take the first reads of a batch and then fail: those reads are in flight."""
    _need("kernel")
    fd = os.open(data_file[0], os.O_RDONLY)
    r = KernelAIO(fd, 4)
    real, calls = aio.syscall, []

    def flaky(nr, *args):
        if nr == r.calls.submit:
            calls.append(1)
            if len(calls) == 1:                     # the kernel takes one read of the batch ...
                return real(nr, args[0], ctypes.c_long(1), args[2])
            ctypes.set_errno(errno.EAGAIN)          # ... and refuses the rest
            return -1
        return real(nr, *args)

    try:
        monkeypatch.setattr(aio, "syscall", flaky)
        buf = aligned_buffer(3 * PAGE)
        rows = np.arange(3)
        with pytest.raises(OSError, match="io_submit failed after 1 of 3 reads"):
            r.submit((buf.ctypes.data + rows * PAGE).astype(np.uint64), rows * PAGE, np.full(3, PAGE), rows + 10)
        monkeypatch.setattr(aio, "syscall", real)
        assert r.in_flight == 1 and len(r.free) == 3
        tags, res = _reap_all(r, 1)
        assert tags == [10] and res == [PAGE]
        assert r.in_flight == 0 and len(r.free) == 4
        assert len(r.reap(1, 0.05)[0]) == 0         # still usable: no negative count reaches the kernel
    finally:
        r.close()
        os.close(fd)


def test_closing_the_threaded_reader_waits_for_reads_in_flight(data_file):
    """Like io_destroy: after close() no thread may still write into the caller's buffer."""
    fd = os.open(data_file[0], os.O_RDONLY)
    r = ThreadedReads(fd, 4)
    buf = aligned_buffer(4 * 2 * PAGE)
    rows = np.arange(4)
    r.submit((buf.ctypes.data + rows * 2 * PAGE).astype(np.uint64), rows * 2 * PAGE, np.full(4, 2 * PAGE), rows)
    r.close()
    try:
        assert not any(t.is_alive() for t in r.threads), "pread threads still running after close()"
        assert len(r.results) == 4
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the pipeline on top
@pytest.fixture(scope="module")
def stack():
    return SyntheticStack(SyntheticConfig(d=128, d_ff=512, n_layers=3, activity=0.1, rank=8, seed=1))


@pytest.fixture(scope="module")
def flash_files(tmp_path_factory, stack):
    """Two copies of the stack's file per alignment (one to truncate), on a real filesystem."""
    c, out = stack.cfg, {}
    for align in (512, 4096):                       # 4096: read with O_DIRECT; 512: buffered
        spec = FlashSpec(c.n_layers, c.d_ff, 3, c.d, align=align)
        out[align] = write_flash(tmp_path_factory.mktemp(f"flash{align}") / "ffn.bin", spec, stack.bundles)
    return out


def _engine(path, stack, kind, budget=1 << 20, **kw):
    _need(kind)
    cfg = EngineConfig(budget=budget, hot_neurons=64, cluster_size=16, prefill_chunk=64, aio=kind, **kw)
    eng = SparseFFN(path, cfg, OraclePredictor(stack.bundles, True), gated=True, freq=stack.firing_prob)
    assert isinstance(eng.pipe.aio, KernelAIO if kind == "kernel" else ThreadedReads)
    return eng


@pytest.mark.parametrize("align", [512, 4096])
@pytest.mark.parametrize("read_unit", ["bundle", "split"])
@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_on_async_reads_equals_dense(flash_files, stack, kind, read_unit, align):
    with _engine(flash_files[align], stack, kind, read_unit=read_unit, io_depth=24) as eng:
        assert eng.pipe.reader.direct == (align == 4096 and platform_io.CAPS.o_direct)
        X = [stack.hidden_states(l, 8, seed=5) for l in range(3)]
        for t in range(8):
            for l in range(3):
                got = eng(l, X[l][t])
                np.testing.assert_allclose(got, dense_ffn_ref(stack.bundles[l], X[l][t], gated=True),
                                           rtol=1e-4, atol=1e-4, err_msg=f"token {t} layer {l}")
            eng.end_token()
        assert eng.n_reads > 0 and eng.pipe.bytes_read > 0
        assert sum(eng.cache.traffic.values()) == eng.pipe.bytes_read
        h = eng.cache.history
        assert sum(r["cold_hits"] for r in h) > 0
        assert eng.pipe.aio.in_flight == 0                  # every read came back


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_short_read_from_a_truncated_file_stops_the_pipeline(tmp_path, stack, kind, direct):
    c = stack.cfg
    spec = FlashSpec(c.n_layers, c.d_ff, 3, c.d, align=4096 if direct else 512)
    path = write_flash(tmp_path / "ffn.bin", spec, stack.bundles)
    eng = _engine(path, stack, kind, timeout=5.0)
    try:
        assert eng.pipe.reader.direct == (direct and platform_io.CAPS.o_direct)
        head = FlashFile(path, verify=False)
        os.truncate(path, head.data_offset + spec.layer_bytes)      # the header and layer 0 only
        x0, x2 = stack.hidden_states(0, 1, seed=3)[0], stack.hidden_states(2, 1, seed=3)[0]
        np.testing.assert_allclose(eng(0, x0), dense_ffn_ref(stack.bundles[0], x0, True), rtol=1e-4, atol=1e-4)
        t0 = time.monotonic()
        with pytest.raises(FlashReadError, match=r"layer 2 .*short read: 0 of") as info:
            eng(2, x2)
        assert time.monotonic() - t0 < 3.0, "the short read was not reported promptly"
        assert path.name in str(info.value)
        with pytest.raises(RuntimeError, match="pipeline stopped after an error.*FlashReadError"):
            eng(0, x0)
    finally:
        eng.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("io_depth", [8, 40])
def test_the_aio_tables_are_counted_in_the_budget(flash_files, stack, kind, io_depth):
    spec = FlashFile(flash_files[512], verify=False).spec
    with _engine(flash_files[512], stack, kind, io_depth=io_depth) as eng:
        cfg = eng.cfg
        rows = staging_rows(cfg, cfg.cluster_size)
        assert rows == max(io_depth, cfg.cluster_size) and eng.pipe.io.n_rows == rows == eng.pipe.aio.depth
        mem = engine_memory(spec, cfg, 0, True)
        assert mem["staging"] == (rows + cfg.prefill_chunk) * spec.stride + rows * (BYTES_PER_SLOT + JobTable.BYTES_PER_ROW)
        # what the engine really allocated: staging buffers, and for kernel AIO its iocb/event tables
        assert eng.pipe.reader.staging.nbytes + eng.prefill_reader.staging.nbytes == \
            (rows + cfg.prefill_chunk) * spec.stride
        if kind == "kernel":
            assert eng.pipe.aio.iocbs.nbytes + eng.pipe.aio.events.nbytes == rows * BYTES_PER_SLOT
        assert sum(held_array_bytes(eng.pipe.io.job_table).values()) == rows * JobTable.BYTES_PER_ROW
        assert eng.cache.bytes_total <= cfg.budget
    more = engine_memory(spec, EngineConfig(**{**cfg.__dict__, "io_depth": rows + 10}), 0, True)
    assert more["staging"] - mem["staging"] == 10 * (spec.stride + BYTES_PER_SLOT + JobTable.BYTES_PER_ROW)


@pytest.mark.parametrize("kind", KINDS)
def test_an_error_inside_the_io_thread_reaches_the_caller_at_once(flash_files, stack, kind, monkeypatch):
    """The I/O thread's own failure (here: reaping) is raised in the caller, not hidden behind a timeout."""
    eng = _engine(flash_files[4096], stack, kind, timeout=20.0)
    try:
        def broken(*args, **kw):
            raise OSError(5, "Input/output error (injected)")

        monkeypatch.setattr(eng.pipe.aio, "reap", broken)
        x = stack.hidden_states(1, 1, seed=7)[0]
        t0 = time.monotonic()
        with pytest.raises(FlashReadError, match="injected"):
            eng(1, x)
        assert time.monotonic() - t0 < 5.0, "the I/O thread's error waited for the 20 s timeout"
    finally:
        monkeypatch.undo()
        eng.close()


def test_read_batch_returns_every_byte_or_names_what_failed(reads):
    r, data = reads
    buf = aligned_buffer(4 * PAGE)
    addr = (buf.ctypes.data + np.arange(4) * PAGE).astype(np.uint64)
    off = np.array([0, 5, 2, 9], dtype=np.int64) * PAGE
    aio.read_batch(r, addr, off, np.full(4, PAGE), 5.0, "test batch")
    for j, o in enumerate(off):
        assert np.array_equal(buf[j * PAGE:(j + 1) * PAGE], data[o:o + PAGE])
    past_end = np.array([0, len(data)], dtype=np.int64)            # the second read finds end of file
    with pytest.raises(FlashReadError, match=r"test batch: a read returned 0 of 4096 B"):
        aio.read_batch(r, addr[:2], past_end, np.full(2, PAGE), 5.0, "test batch")


class _OneByOne:
    """A fake reader whose reads come back one at a time, 10 ms apart; it records each wait's ``min_nr``."""

    def __init__(self):
        self.left, self.wants = [], []

    def submit(self, addr, offset, length, tags):
        self.left = list(zip(np.asarray(tags).tolist(), np.asarray(length).tolist()))

    def reap(self, min_nr, timeout):
        self.wants.append(min_nr)
        got, self.left = self.left[:min_nr], self.left[min_nr:]
        time.sleep(0.01 * len(got))
        return np.array([t for t, _ in got], np.int64), np.array([n for _, n in got], np.int64)


@pytest.mark.parametrize("min_first", [None, 1])
def test_read_batch_says_when_the_first_read_came_back(min_first):
    fake, k = _OneByOne(), 6
    t0 = time.perf_counter()
    t_first = aio.read_batch(fake, np.zeros(k, np.uint64), np.zeros(k, np.int64), np.full(k, PAGE), 5.0, "test",
                             min_first=min_first)
    total = time.perf_counter() - t0
    assert fake.wants == ([k] if min_first is None else [1, k - 1])
    if min_first is None:                              # one wait for everything: the first is the last
        assert t_first - t0 >= 0.9 * 0.01 * k
    else:
        assert t_first - t0 < 0.5 * total


def test_burst_profile_reports_when_the_first_read_of_a_burst_is_back(tmp_path):
    from teachkit.sparse.planner.io_profile import burst_profile

    ks = (2, 8)
    prof = burst_profile(PAGE, ks=ks, repeats=3, file_bytes=2 << 20, directory=tmp_path)
    assert prof["k"] == list(ks) and len(prof["first_seconds"]) == len(ks)
    for first, whole in zip(prof["first_seconds"], prof["seconds"]):
        assert 0 < first <= whole
    assert not list(tmp_path.iterdir()), "the scratch file was left behind"
