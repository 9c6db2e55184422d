"""Many reads in flight from one thread: Linux kernel AIO (``io_submit`` / ``io_getevents``).

**Why.** Little's law: reads per second = reads in flight / time per read. With one read at a
time, the time of one small O_DIRECT read caps the reads per second however fast the CPU is;
an SSD serves many reads at once, so the cap rises with the reads in flight, up to what the
device can do. Blocking ``pread`` needs one thread per read in flight; each thread wakes for
its own result and takes the GIL, and with hundreds of small reads per token those wake-ups,
not the disk, set the pace. Kernel AIO hands the kernel a whole batch in one system call and
collects the completions with another, all from one thread. Notebook 12 measures one read's
time, the cap it sets, and kernel AIO against ``pread`` threads on the machine it runs on.

**The kernel interface** (``include/uapi/linux/aio_abi.h``, little-endian)::

    struct iocb     {u64 data; u32 key, rw_flags; u16 opcode; s16 reqprio; u32 fildes;
                     u64 buf, nbytes; s64 offset; u64 reserved2; u32 flags, resfd;}   # 64 B
    struct io_event {u64 data, obj; s64 res, res2;}                                 # 32 B

``data`` comes back untouched in the event (we put a tag there); ``res`` is the byte count or
``-errno``. Kernel AIO is truly asynchronous only for O_DIRECT files; on a buffered file
``io_submit`` does the read before it returns (still correct, just not overlapped).

:class:`ThreadedReads` offers the same ``submit`` / ``reap`` on a pool of ``pread`` threads
(reads in flight = threads): the fallback where kernel AIO is missing (macOS; on Windows the
threads seek and read, see :mod:`teachkit.sparse.flash.platform_io`), and what it is measured
against in notebook 12.

**Failures.** Every wait has a deadline. A read that fails comes back as ``-errno`` in its
result; an exception in a read thread, or a refused ``io_submit``, raises
:class:`~teachkit.sparse.flash.reader.FlashReadError` with the real error as its ``__cause__``.
``close()`` waits at most ``close_timeout`` seconds: a thread still stuck in a read after that
(a hung disk: a read in the kernel cannot be cancelled) is left behind as a daemon, named in
``stuck`` and in a ``RuntimeWarning``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import queue
import threading
import time
import warnings
from typing import NamedTuple

import numpy as np
from numba import njit

from . import platform_io
from .reader import FlashReadError

__all__ = ["BYTES_PER_SLOT", "AIO_CALLS", "AioCalls", "syscall", "KernelAIO", "ThreadedReads", "AioUnavailable",
           "kernel_aio_available", "open_async_reads", "read_batch", "join_within"]

IOCB = np.dtype([("data", "<u8"), ("key", "<u4"), ("rw_flags", "<u4"), ("opcode", "<u2"), ("reqprio", "<i2"),
                 ("fildes", "<u4"), ("buf", "<u8"), ("nbytes", "<u8"), ("offset", "<i8"), ("reserved2", "<u8"),
                 ("flags", "<u4"), ("resfd", "<u4")])
IO_EVENT = np.dtype([("data", "<u8"), ("obj", "<u8"), ("res", "<i8"), ("res2", "<i8")])
IOCB_CMD_PREAD = 0
BYTES_PER_SLOT = IOCB.itemsize + IO_EVENT.itemsize     # what one read in flight costs in our tables


class AioCalls(NamedTuple):
    """The kernel AIO system call numbers of one CPU architecture."""

    setup: int
    destroy: int
    submit: int
    getevents: int


AIO_CALLS = {"x86_64": AioCalls(206, 207, 209, 208), "aarch64": AioCalls(0, 1, 2, 4)}


class AioUnavailable(OSError):
    """This kernel or machine gives no kernel AIO (another OS, another CPU, or a seccomp filter)."""


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_SYSCALL: list = []


def syscall(nr: int, *args) -> int:
    """System call ``nr`` through libc's ``syscall()`` (a ctypes call: the GIL is released meanwhile).

    Every kernel AIO call of this module goes through this module-level name, looked up at each
    call: the one seam where a test replaces it to make the kernel refuse, fail or hang.
    """
    if not _SYSCALL:
        fn = platform_io.libc().syscall
        fn.restype = ctypes.c_long
        _SYSCALL.append(fn)
    return _SYSCALL[0](ctypes.c_long(nr), *args)


def join_within(threads, seconds: float, what: str) -> list[str]:
    """Join ``threads`` within ``seconds`` in all; name (and warn about) those still running.

    A thread blocked in a read inside the kernel cannot be stopped from Python; it is a daemon,
    so it will not keep the interpreter alive, and it exits when its read returns.
    """
    end = time.monotonic() + seconds
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        warnings.warn(f"{what}: {len(stuck)} thread(s) still stuck in a read after {seconds} s "
                      f"({', '.join(stuck)}); left behind as daemons", RuntimeWarning, stacklevel=3)
    return stuck


@njit(nogil=True, cache=True)
def _fill_iocbs(words, slots, fd, addr, length, offset, tags, base, ptrs):
    """Write one ``IOCB_CMD_PREAD`` iocb per read into ``words`` (the iocb table as 8 u64 each).

    Words: 0 data (tag << 16 | slot), 1 key/rw_flags, 2 opcode | reqprio << 16 | fildes << 32,
    3 buf, 4 nbytes, 5 offset, 6 reserved2, 7 flags/resfd. ``ptrs[j]``: the address of read j's iocb.
    """
    for j in range(slots.shape[0]):
        s = slots[j]
        w = words[s]
        w[0] = (np.uint64(tags[j]) << np.uint64(16)) | np.uint64(s)
        w[1] = 0
        w[2] = (np.uint64(fd) << np.uint64(32)) | np.uint64(IOCB_CMD_PREAD)
        w[3] = addr[j]
        w[4] = np.uint64(length[j])
        w[5] = np.uint64(offset[j])
        w[6] = 0
        w[7] = 0
        ptrs[j] = np.uint64(base) + np.uint64(64) * np.uint64(s)


class KernelAIO:
    """An AIO context with room for ``depth`` reads in flight on file descriptor ``fd``."""

    @staticmethod
    def table_nbytes(depth: int) -> int:
        """Bytes of the iocb and event tables a context of ``depth`` allocates (``BYTES_PER_SLOT`` per read)."""
        return int(depth) * BYTES_PER_SLOT

    def __init__(self, fd: int, depth: int):
        self.calls = AIO_CALLS.get(platform.machine())       # the system call numbers on this machine
        if self.calls is None or not platform_io.CAPS.kernel_aio:
            raise AioUnavailable(f"no kernel AIO on {platform.system()} {platform.machine()}")
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.fd, self.depth = int(fd), int(depth)
        self.ctx = ctypes.c_ulong(0)
        if syscall(self.calls.setup, ctypes.c_long(self.depth), ctypes.byref(self.ctx)) != 0:
            err = ctypes.get_errno()
            raise AioUnavailable(err, f"io_setup refused: {os.strerror(err)}")
        self.iocbs = np.zeros(self.depth, IOCB)
        self._words = self.iocbs.view(np.uint64).reshape(self.depth, IOCB.itemsize // 8)
        self.free = list(range(self.depth))          # iocb slots not in flight
        self._lock = threading.Lock()                # submit and reap may run on different threads
        self.events = np.zeros(self.depth, IO_EVENT)
        self.in_flight = 0
        self.stuck: list[str] = []                   # no threads of its own

    def submit(self, addr: np.ndarray, offset: np.ndarray, length: np.ndarray, tags: np.ndarray) -> None:
        """Queue reads ``length[i]`` bytes at ``offset[i]`` into address ``addr[i]``; ``tags[i]`` comes back."""
        with self._lock:
            self._submit_locked(addr, offset, length, tags)

    def _submit_locked(self, addr, offset, length, tags) -> None:
        k = len(offset)
        if k > len(self.free):
            raise ValueError(f"{k} reads asked for, but only {len(self.free)} of {self.depth} slots are free")
        if k == 0:
            return
        slots = np.array(self.free[:k], dtype=np.int64)
        del self.free[:k]
        ptrs = np.empty(k, np.uint64)
        _fill_iocbs(self._words, slots, self.fd, np.asarray(addr, np.uint64), np.asarray(length, np.int64),
                    np.asarray(offset, np.int64), np.asarray(tags, np.int64), self.iocbs.ctypes.data, ptrs)
        done = 0
        while done < k:
            n = syscall(self.calls.submit, self.ctx, ctypes.c_long(k - done), ctypes.c_void_p(ptrs.ctypes.data + 8 * done))
            if n <= 0:
                err = ctypes.get_errno()
                self.in_flight += done                   # the reads the kernel took are in flight
                self.free.extend(int(s) for s in slots[done:])
                cause = OSError(err, os.strerror(err))
                raise FlashReadError(err, f"io_submit failed after {done} of {k} reads: {os.strerror(err)}") from cause
            done += n
        self.in_flight += k

    def reap(self, min_nr: int = 0, timeout: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Completed reads: ``(tags, results)``; waits up to ``timeout`` s for at least ``min_nr``."""
        ts = _Timespec(int(timeout), int((timeout % 1) * 1e9))
        with self._lock:
            want = max(0, min(min_nr, self.in_flight))
        n = syscall(self.calls.getevents, self.ctx, ctypes.c_long(want), ctypes.c_long(self.depth),
                 ctypes.c_void_p(self.events.ctypes.data), ctypes.byref(ts))
        if n < 0:
            err = ctypes.get_errno()
            if err == 4:                             # EINTR: a signal; nothing reaped
                return np.empty(0, np.int64), np.empty(0, np.int64)
            raise OSError(err, f"io_getevents failed: {os.strerror(err)}")
        ev = self.events[:n]
        data, res = ev["data"].copy(), ev["res"].astype(np.int64)
        with self._lock:
            self.free.extend((data & np.uint64(0xFFFF)).astype(np.int64).tolist())
            self.in_flight -= n
        return (data >> np.uint64(16)).astype(np.int64), res

    def close(self, timeout: float = 2.0) -> None:
        """``io_destroy``, which waits for the reads still in flight, for at most ``timeout`` s.

        It runs in a daemon thread: if the disk never answers, that thread is left waiting in the
        kernel and named in ``stuck`` (with a warning) instead of hanging the caller.
        """
        if self.ctx.value:
            ctx, self.ctx = self.ctx, ctypes.c_ulong(0)
            t = threading.Thread(target=syscall, args=(self.calls.destroy, ctx), daemon=True, name="aio-destroy")
            t.start()
            self.stuck = join_within([t], timeout, "closing the kernel AIO context")


class ThreadedReads:
    """:class:`KernelAIO`'s interface on ``depth`` threads that each run blocking reads.

    Reads go through :class:`~teachkit.sparse.flash.platform_io.RangeFile` (``pread``, or seek +
    readinto on a handle per thread, opened from ``path``, where the OS has no ``pread``).
    ``fault(n)`` (a test hook) runs in the read thread before each read; it may raise or block.
    """

    def __init__(self, fd: int, depth: int, path=None, fault=None, close_timeout: float = 2.0):
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.fd, self.depth, self.fault, self.close_timeout = int(fd), int(depth), fault, float(close_timeout)
        self.file = platform_io.RangeFile(fd, path)
        self.jobs: queue.Queue = queue.Queue()
        self.results: list = []
        self.cv = threading.Condition()
        self.in_flight = 0
        self.n_started = 0
        self.error: BaseException | None = None      # the first exception raised in a read thread
        self.stuck: list[str] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True, name=f"pread-{i}") for i in range(depth)]
        for t in self.threads:
            t.start()

    def _loop(self):
        while (job := self.jobs.get()) is not None:
            addr, off, length, tag = job
            try:
                if self.fault is not None:
                    with self.cv:
                        n, self.n_started = self.n_started, self.n_started + 1
                    self.fault(n)
                res = self.file.read_address(addr, length, off)
            except BaseException as err:  # noqa: BLE001 - handed to whoever reaps
                res = -5                                  # EIO; the exception itself goes with the next reap
                with self.cv:
                    self.error = self.error or err
            with self.cv:
                self.results.append((tag, res))
                self.cv.notify()

    def submit(self, addr, offset, length, tags) -> None:
        with self.cv:
            if self.in_flight + len(offset) > self.depth:
                raise ValueError(f"{len(offset)} reads asked for, but only {self.depth - self.in_flight} slots are free")
            self.in_flight += len(offset)
        for job in zip(np.asarray(addr).tolist(), np.asarray(offset).tolist(), np.asarray(length).tolist(),
                       np.asarray(tags).tolist()):
            self.jobs.put(job)

    @property
    def free(self) -> range:
        return range(self.depth - self.in_flight)

    def reap(self, min_nr: int = 0, timeout: float = 0.0):
        """Completed reads ``(tags, results)``; raises :class:`FlashReadError` if a read thread raised."""
        end = time.monotonic() + timeout
        with self.cv:
            need = min(min_nr, self.in_flight)
            while len(self.results) < need and self.error is None and (left := end - time.monotonic()) > 0:
                self.cv.wait(left)
            got, self.results = self.results, []
            self.in_flight -= len(got)
            err = self.error
        if err is not None:
            raise FlashReadError(f"a read thread failed: {err!r}") from err
        tags = np.array([t for t, _ in got], dtype=np.int64)
        return tags, np.array([r for _, r in got], dtype=np.int64)

    def close(self) -> None:
        """Stop the threads once the reads already queued are done (as ``io_destroy`` waits for them),
        waiting at most ``close_timeout`` s; threads still stuck in a read are named in ``stuck``."""
        for _ in self.threads:
            self.jobs.put(None)
        self.stuck = join_within(self.threads, self.close_timeout, "closing the read threads")
        if not self.stuck:                               # a stuck read may still use its handle
            self.file.close()


def read_batch(reads, addr, offset, length, timeout: float, what: str, min_first: int | None = None) -> float:
    """Submit these reads at once and wait until every one is back, in full.

    Returns the ``time.perf_counter()`` at which the first completion was collected. By default
    the first wait asks for all the reads at once (one wake-up); ``min_first=1`` wakes at the
    first completion instead, to see *when* reads come back (:func:`~teachkit.sparse.planner.io_profile.burst_profile`).
    Raises :class:`~teachkit.sparse.flash.reader.FlashReadError` naming ``what`` if one comes back
    short or failed, or if nothing completes within ``timeout`` seconds (never hangs).
    """
    length = np.asarray(length, dtype=np.int64)
    reads.submit(addr, offset, length, np.arange(len(length)))
    got, t_first = 0, None
    while got < len(length):
        want = len(length) - got if (min_first is None or t_first is not None) else min(min_first, len(length))
        tags, res = reads.reap(want, timeout)
        if not len(tags):
            raise FlashReadError(f"{what}: no read completed within {timeout} s")
        if t_first is None:
            t_first = time.perf_counter()
        bad = res != length[tags]
        if bad.any():
            raise FlashReadError(f"{what}: a read returned {int(res[bad][0])} of {int(length[tags][bad][0])} B")
        got += len(tags)
    return t_first


def kernel_aio_available() -> bool:
    try:
        KernelAIO(0, 1).close()
        return True
    except AioUnavailable:
        return False


def open_async_reads(fd: int, depth: int, kind: str = "auto", path=None):
    """``kind``: ``"kernel"`` (:class:`KernelAIO`), ``"threads"`` (:class:`ThreadedReads`) or ``"auto"``
    (kernel AIO where the platform has it). ``path``: the file's, for platforms without ``pread``."""
    if kind not in ("auto", "kernel", "threads"):
        raise ValueError(f"kind must be 'auto', 'kernel' or 'threads', got {kind!r}")
    if kind != "threads":
        try:
            return KernelAIO(fd, depth)
        except AioUnavailable:
            if kind == "kernel":
                raise
    return ThreadedReads(fd, depth, path)
