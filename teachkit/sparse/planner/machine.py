"""What this machine can do: memory bandwidth on 1 and 2 threads, BLAS threads, load.

A batch-1 FFN reads every weight it uses once, so its time is bounded below by

    t  ≥  bytes touched / BW_mem(threads)

and ``achieved bytes/s ÷ BW_mem`` says how close a kernel comes to the hardware. BW_mem is
measured here, in the same run, with a read-only sum over a buffer far larger than the CPU
cache (a small buffer would be served from cache and overstate the bandwidth).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from ..flash import platform_io

__all__ = ["measure_memory_bandwidth", "blas_threads", "numba_threads", "median_seconds",
           "machine_info", "CacheFlusher", "last_level_cache_bytes"]

_LANES = 64


@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _read_sum(a, nchunks, nstreams):
    """Sum a (rows, 64) float32 array: each thread owns one contiguous chunk and reads it as
    ``nstreams`` interleaved sub-ranges (several streams keep more loads in flight than one),
    with a private 64-wide accumulator."""
    n = a.shape[0]
    per = (n + nchunks - 1) // nchunks
    tot = np.zeros((nchunks, a.shape[1]), np.float32)
    for c in prange(nchunks):
        acc = tot[c]
        lo = c * per
        hi = min(n, (c + 1) * per)
        m = (hi - lo) // nstreams
        for i in range(m):
            for s in range(nstreams):
                r = lo + s * m + i
                for k in range(a.shape[1]):
                    acc[k] += a[r, k]
        for r in range(lo + nstreams * m, hi):
            for k in range(a.shape[1]):
                acc[k] += a[r, k]
    return tot.sum()


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache the OS reports (0 if unknown; see :mod:`teachkit.sparse.flash.platform_io`)."""
    return platform_io.last_level_cache_bytes()


class CacheFlusher:
    """Calling it reads a buffer larger than the last-level cache, evicting earlier data."""

    def __init__(self, nbytes: int | None = None):
        if nbytes is None:
            nbytes = min(1 << 30, max(64 << 20, 2 * last_level_cache_bytes()))
        self.buf = np.ones((max(1, nbytes // (_LANES * 4)), _LANES), np.float32)

    def __call__(self) -> None:
        _read_sum(self.buf, numba.get_num_threads(), 4)


@contextlib.contextmanager
def numba_threads(n: int):
    """Temporarily run numba's parallel kernels on ``n`` threads."""
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def median_seconds(fn, repeats: int = 7, warmup: int = 1, before=None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed ones.

    ``before()``, if given, runs untimed before every call (e.g. a :class:`CacheFlusher`).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_memory_bandwidth(threads: int = 1, nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s on ``threads`` threads (median of ``repeats`` passes).

    Use ``nbytes`` well above the last-level cache (the default 1 GiB); a small buffer measures
    the cache instead, which is fine for a demo but not for a bound.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if nbytes < _LANES * 4:
        raise ValueError(f"nbytes must be at least {_LANES * 4}, got {nbytes}")
    rows = int(nbytes) // (_LANES * 4)
    buf = np.ones((rows, _LANES), np.float32)
    with numba_threads(threads):
        n = numba.get_num_threads()
        seconds = median_seconds(lambda: _read_sum(buf, n, 4), repeats=repeats)
    return buf.nbytes / seconds


def _openblas():
    import numpy as _np

    libs = glob.glob(str(Path(_np.__file__).parent.parent / "numpy.libs" / "*openblas*.so*"))
    for lib in libs:
        try:
            cdll = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(cdll, name):
                get = getattr(cdll, name.replace("set", "get"), None)
                return getattr(cdll, name), get
    return None, None


@contextlib.contextmanager
def blas_threads(n: int):
    """Temporarily set numpy's OpenBLAS thread count (a no-op if it cannot be found).

    Yields the thread count really in effect, or None if unknown.
    """
    setter, getter = _openblas()
    if setter is None:
        yield None
        return
    old = getter() if getter else None
    setter(int(n))
    try:
        yield getter() if getter else int(n)
    finally:
        if old is not None:
            setter(int(old))


def machine_info() -> dict:
    """Facts to print beside any timing: CPU, cores, load, library versions."""
    cpu = platform_io.cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(),
            "load_avg_1min": platform_io.load_average(),
            "numpy": np.__version__, "numba": numba.__version__,
            "numba_threads_max": numba.config.NUMBA_NUM_THREADS,
            "last_level_cache_MiB": last_level_cache_bytes() >> 20,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")}
