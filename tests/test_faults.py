"""Injected faults on both read paths (kernel AIO and pread threads): each ends in a clear error
within a few seconds, ``close()`` returns within its deadline, and no thread is left behind."""

import ctypes
import errno
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import teachkit.sparse.flash.aio as aio
from deadline import error_within
from teachkit.sparse.flash.aio import kernel_aio_available
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN
from teachkit.sparse.flash.format import FlashSpec, write_flash
from teachkit.sparse.runtime.pipeline import PipelineTimeout
from teachkit.sparse.flash.reader import FlashReadError
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack

KINDS = ["kernel", "threads"]


@pytest.fixture(scope="module")
def stack():
    return SyntheticStack(SyntheticConfig(d=256, d_ff=512, n_layers=2, activity=0.1, rank=8, seed=3))


@pytest.fixture(scope="module")
def flash_path(tmp_path_factory, stack):
    c = stack.cfg
    path = tmp_path_factory.mktemp("faults") / "ffn.bin"
    return write_flash(path, FlashSpec(c.n_layers, c.d_ff, 3, c.d, align=4096), stack.bundles)


def _engine(path, stack, kind, timeout=10.0, **kw):
    if kind == "kernel" and not kernel_aio_available():
        pytest.skip("needs kernel AIO (missing on this platform, or hidden by TEACHKIT_IO_PLATFORM)")
    cfg = EngineConfig(budget=2 << 20, cluster_size=16, prefill_chunk=64, aio=kind, timeout=timeout, **kw)
    eng = SparseFFN(path, cfg, OraclePredictor(stack.bundles, True), gated=True, verify=False)
    assert (kind == "kernel") == isinstance(eng.pipe.aio, aio.KernelAIO)
    return eng


def _left_behind(before, seconds=3.0) -> list[str]:
    """Names of threads started since ``before`` still alive after ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        alive = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.02)


def _decode(eng, stack, n=3):
    X = stack.hidden_states(0, n, seed=5)
    for x in X:
        for layer in range(stack.cfg.n_layers):
            eng(layer, x)
        eng.end_token()


def _close_cleanly(eng, before):
    assert error_within(eng.close, 5, "close()") is None
    assert eng.stuck == []
    assert _left_behind(before) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_clean_run_leaves_no_thread_behind(flash_path, stack, kind):
    before = set(threading.enumerate())
    eng = _engine(flash_path, stack, kind)
    _decode(eng, stack)
    _close_cleanly(eng, before)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stuck_read_times_out_and_close_names_the_stuck_thread(flash_path, stack, kind):
    """A read that never returns: PipelineTimeout after ``timeout``; close() returns within its
    deadline, names the thread stuck in the read, and that thread exits once the read returns."""
    before = set(threading.enumerate())
    eng = _engine(flash_path, stack, kind, timeout=1.0)
    release = threading.Event()
    stuck = lambda n: release.wait(20)                   # noqa: E731
    if kind == "threads":
        eng.pipe.aio.fault = stuck                       # inside a pread thread
    else:
        eng.pipe.reader.fault = stuck                    # the I/O thread, as it reaps completions
    t0 = time.monotonic()
    err = error_within(lambda: _decode(eng, stack), 5, "the engine with a stuck read")
    assert isinstance(err, PipelineTimeout) and "stuck" in str(err)
    assert time.monotonic() - t0 < 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.monotonic()
        assert error_within(eng.close, 6, "close() after a stuck read") is None
        assert time.monotonic() - t0 < 5
    assert eng.stuck and all(n.startswith("pread-" if kind == "threads" else "flash-io") for n in eng.stuck)
    assert any("stuck" in str(w.message) for w in caught), "close() must report the thread it left behind"
    release.set()                                        # the read returns: the thread ends
    assert _left_behind(before) == []


@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_in_the_read_path_reaches_the_caller_with_its_cause(flash_path, stack, kind, monkeypatch):
    before = set(threading.enumerate())
    eng = _engine(flash_path, stack, kind, timeout=10.0)

    class Injected(RuntimeError):
        pass

    def boom(*_):
        raise Injected("injected failure")

    if kind == "threads":
        eng.pipe.aio.fault = boom                        # every pread thread that runs a read raises
    else:
        monkeypatch.setattr(eng.pipe.aio, "reap", boom)  # the I/O thread's io_getevents raises
    t0 = time.monotonic()
    err = error_within(lambda: _decode(eng, stack), 5, "the engine after a worker exception")
    assert time.monotonic() - t0 < 3, "the real error must arrive at once, not after the timeout"
    assert isinstance(err, FlashReadError), f"got {err!r}"
    assert isinstance(err.__cause__, Injected)
    monkeypatch.undo()
    _close_cleanly(eng, before)


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_submit_is_a_flash_read_error(flash_path, stack, kind, monkeypatch):
    before = set(threading.enumerate())
    eng = _engine(flash_path, stack, kind)
    if kind == "threads":
        def refuse(*_):
            raise BlockingIOError(errno.EAGAIN, "injected: resource temporarily unavailable")
        monkeypatch.setattr(eng.pipe.aio, "submit", refuse)
    else:
        real, submit_nr = aio.syscall, eng.pipe.aio.calls.submit

        def refuse(nr, *args):
            if nr == submit_nr:
                ctypes.set_errno(errno.EAGAIN)
                return -1
            return real(nr, *args)
        monkeypatch.setattr(aio, "syscall", refuse)
    err = error_within(lambda: _decode(eng, stack), 5, "the engine after a refused submit")
    assert isinstance(err, FlashReadError) and err.errno == errno.EAGAIN, f"got {err!r}"
    assert isinstance(err.__cause__, OSError)
    monkeypatch.undo()
    _close_cleanly(eng, before)


def test_the_mmap_baseline_refuses_a_truncated_file_instead_of_dying(flash_path, tmp_path):
    """Run in a child process: before the size check, this killed the process with SIGBUS."""
    import shutil

    path = tmp_path / "copy.bin"
    shutil.copy(flash_path, path)
    code = f"""
import numpy as np, os
from teachkit.sparse.baselines import DenseMmap
from teachkit.sparse.flash.reader import FlashReadError
be = DenseMmap({str(path)!r}, 1 << 20, True)
x = np.ones(be.flash.spec.d, np.float32)
be(0, x)
os.truncate({str(path)!r}, be.flash.offset(1, 0))
try:
    be(1, x)
    print("no error")
except FlashReadError as err:
    print("FlashReadError:", err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"the child died (returncode {out.returncode}): {out.stderr[-2000:]}"
    assert "FlashReadError" in out.stdout and "shrank" in out.stdout, out.stdout


# --------------------------------------------------------------------------- corrupt bytes
def _flip_exponent(path, offset):
    """Flip the top exponent bit of the float32 at ``offset`` (1.0 becomes ~1e38), in place."""
    with open(path, "r+b") as f:
        f.seek(offset + 3)
        b = f.read(1)[0]
        f.seek(offset + 3)
        f.write(bytes([b ^ 0x40]))
        f.flush()


@pytest.mark.parametrize("kind", KINDS)
def test_check_reads_catches_a_byte_changed_on_disk_while_the_engine_runs(flash_path, stack, kind, tmp_path):
    """Without the check a flipped exponent byte in an active neuron is silent garbage; with
    ``check_reads`` the read that brings it raises, naming the unit."""
    import shutil

    path = shutil.copy(flash_path, tmp_path / "ffn.bin")
    before = set(threading.enumerate())
    eng = _engine(path, stack, kind, check_reads=True)
    x = stack.hidden_states(1, 1, seed=9)[0]
    neuron = int(eng.active_ids(1, x)[0])
    _flip_exponent(path, eng.flash.offset(1, neuron) + 8)     # the file changes after it was opened
    err = error_within(lambda: eng(1, x), 5, "the engine reading a corrupt unit")
    assert isinstance(err, FlashReadError) and f"unit {neuron}" in str(err) and "crc32" in str(err), f"{err!r}"
    _close_cleanly(eng, before)
    with _engine(path, stack, kind) as unchecked:             # the same read, unchecked: no error, wrong output
        from teachkit.sparse.compute.reference import dense_ffn_ref
        assert np.abs(unchecked(1, x) - dense_ffn_ref(stack.bundles[1], x, True)).max() > 1e3


def test_check_reads_in_the_blocking_reader(flash_path, tmp_path):
    import shutil

    from teachkit.sparse.flash.format import FlashFile
    from teachkit.sparse.flash.reader import FlashReader

    path = shutil.copy(flash_path, tmp_path / "ffn.bin")
    f = FlashFile(path)
    with FlashReader(f, 8, check=True) as r:
        r.read(0, np.arange(8))                                # a clean file reads without complaint
        _flip_exponent(path, f.offset(0, 5))
        with pytest.raises(FlashReadError, match="unit 5 .*crc32"):
            r.read(0, np.arange(8))


def test_closing_a_kernel_aio_context_whose_reads_never_finish_returns_within_its_deadline(flash_path, monkeypatch):
    if not kernel_aio_available():
        pytest.skip("needs kernel AIO (missing on this platform, or hidden by TEACHKIT_IO_PLATFORM)")
    import os

    fd = os.open(flash_path, os.O_RDONLY)
    ctx = aio.KernelAIO(fd, 4)
    release, real = threading.Event(), aio.syscall

    def destroy_waits(nr, *args):                      # io_destroy waits for reads a dead disk never returns
        if nr == ctx.calls.destroy:
            release.wait(20)
        return real(nr, *args)

    monkeypatch.setattr(aio, "syscall", destroy_waits)
    before = set(threading.enumerate())
    with pytest.warns(RuntimeWarning, match="stuck"):
        assert error_within(lambda: ctx.close(timeout=0.5), 3, "KernelAIO.close()") is None
    assert ctx.stuck == ["aio-destroy"]
    release.set()
    assert _left_behind(before) == []
    os.close(fd)
