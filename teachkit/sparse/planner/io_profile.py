"""Measuring how fast this machine reads the flash file: the I/O profile the planner uses.

**The I/O profile** (:func:`profile_reads`) is PowerInfer-2's hardware profile: random-read
bandwidth against read size and queue depth (QD = reads in flight, kept by one thread with kernel AIO),
plus sequential bandwidth. Small reads are IOPS-bound; bandwidth rises with size and QD.
:func:`burst_profile` times a batch of reads submitted at once, as a decoding layer issues them.

The reader itself (:class:`FlashReader`, page-cache eviction, GIL-free reads) lives in
:mod:`teachkit.sparse.flash.reader`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..flash import platform_io
from ..flash.reader import FlashReadError, aligned_buffer, direct_io_works, drop_cache

__all__ = ["profile_reads", "burst_profile", "sequential_read_bw", "interpolate_bw"]


def _scratch_file(nbytes: int, directory=None) -> Path:
    fd, name = tempfile.mkstemp(prefix="teachkit_io_", suffix=".bin", dir=directory)
    block = np.random.default_rng(0).integers(0, 255, 1 << 20, dtype=np.uint8).tobytes()
    with os.fdopen(fd, "wb") as f:
        for _ in range(nbytes >> 20):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())                        # else writeback competes with the measurement
    drop_cache(name)
    return Path(name)


def _open_uncached(path, direct: bool) -> tuple[int, str]:
    """Open for reading past the page cache: O_DIRECT, or (where refused) evict the file's pages first.

    Without O_DIRECT the measurement drops cached pages once; repeated random reads of the same
    block may then hit the cache, so the profile is optimistic on such filesystems. Where the
    platform cannot drop pages at all (``how`` = ``"buffered"``) the profile may be a memory figure.
    """
    fd, how = platform_io.open_uncached(path, direct)
    platform_io.drop_cache(fd)
    platform_io.advise_random(fd)
    return fd, how


def _keep_in_flight(path, direct: bool, offsets: np.ndarray, size: int, qd: int, method: str) -> float:
    """Bytes/s reading ``size`` bytes at each offset, ``qd`` in flight from one thread.

    A read is submitted as soon as one completes, so the queue never drains until the end
    (:func:`~teachkit.sparse.flash.aio.open_async_reads`: kernel AIO, or ``qd`` ``pread`` threads).
    """
    from ..flash.aio import open_async_reads

    fd, _ = _open_uncached(path, direct)
    buf = aligned_buffer(qd * size)
    reads = open_async_reads(fd, qd, method, path=path)
    try:
        t0 = time.perf_counter()
        nxt = done = 0
        free = list(range(qd))
        while done < len(offsets):
            k = min(len(free), len(offsets) - nxt)
            if k:
                rows = np.array(free[:k], dtype=np.int64)
                del free[:k]
                reads.submit((buf.ctypes.data + rows * size).astype(np.uint64), offsets[nxt:nxt + k],
                             np.full(k, size, dtype=np.int64), rows)
                nxt += k
            tags, res = reads.reap(1, 5.0)
            if not len(tags):
                raise FlashReadError("no read completed within 5 s while profiling")
            if (res != size).any():
                raise FlashReadError(f"short or failed read while profiling (result {int(res[res != size][0])})")
            free.extend(tags.tolist())
            done += len(tags)
        dt = time.perf_counter() - t0
    finally:
        reads.close()
        os.close(fd)
    return len(offsets) * size / dt


def sequential_read_bw(path, chunk: int = 1 << 20, limit: int | None = None, direct: bool = True,
                       qd: int = 1, method: str = "auto") -> float:
    """Bytes/s reading ``path`` front to back in ``chunk``-sized O_DIRECT reads, ``qd`` in flight.

    The device sees ``qd`` consecutive requests at once, as a streaming reader makes them.
    """
    size = os.path.getsize(path) if limit is None else min(limit, os.path.getsize(path))
    return _keep_in_flight(path, direct, np.arange(size // chunk, dtype=np.int64) * chunk, chunk, qd, method)


SEQ_CONFIGS = ((1 << 20, 1), (4 << 20, 1), (4 << 20, 2), (4 << 20, 4), (1 << 20, 8))   # (chunk, qd) tried for the best


def _random_bw(path, size: int, qd: int, n_reads: int, span: int, seed: int, direct: bool, method: str) -> float:
    """Random ``size``-byte reads at aligned offsets, ``qd`` in flight."""
    total = max(4 * qd, min(n_reads * qd, (64 << 20) // size))      # at most ~64 MiB per cell
    offsets = np.random.default_rng(seed).integers(0, span // size, total) * size
    return _keep_in_flight(path, direct, offsets, size, qd, method)


def burst_profile(size: int, path=None, ks=(8, 16, 32, 64, 128), repeats: int = 15, seed: int = 0,
                  method: str = "auto", file_bytes: int = 64 << 20, directory=None) -> dict:
    """How long a *batch* of ``k`` random reads takes, submitted at once, until the last is back.

    A decoding engine cannot keep the queue full: a layer's reads are known only after its
    predictor has run, so they go out as one burst and the layer waits for the slowest. The
    fit ``t(k) = a + b·k`` gives ``a`` (the intercept: a burst's fixed cost, not a lone read's
    latency) and ``b`` (time per extra read, ~1/IOPS). ``first_seconds`` is when the *first* read of the burst came back: a
    pipeline can compute an arrived cluster only after that, so ``first_seconds / seconds`` near
    1 means the disk hands the whole burst back at once and only work already in memory can
    hide under it. Reads ``path``, or a scratch file of ``file_bytes`` in ``directory`` (deleted
    after). Returns ``{"k": [...], "seconds": [...], "first_seconds": [...] (medians), "a": s, "b": s}``.
    """
    own = path is None
    path = _scratch_file(file_bytes, directory) if own else Path(path)
    try:
        return _bursts(path, size, ks, repeats, seed, method)
    finally:
        if own:
            path.unlink(missing_ok=True)


def _bursts(path, size, ks, repeats, seed, method) -> dict:
    from ..flash.aio import open_async_reads, read_batch

    fd, _ = _open_uncached(path, True)
    span = os.path.getsize(path)
    rng = np.random.default_rng(seed)
    buf = aligned_buffer(max(ks) * size)
    reads = open_async_reads(fd, max(ks), method, path=path)
    med, med_first = [], []
    try:
        for k in ks:
            times, firsts = [], []
            addr = (buf.ctypes.data + np.arange(k) * size).astype(np.uint64)
            for _ in range(repeats):
                off = rng.integers(0, span // size, k) * size
                t0 = time.perf_counter()
                t_first = read_batch(reads, addr, off, np.full(k, size, np.int64), 5.0, "a burst read while profiling",
                                     min_first=1)
                times.append(time.perf_counter() - t0)
                firsts.append(t_first - t0)
            med.append(float(np.median(times)))
            med_first.append(float(np.median(firsts)))
    finally:
        reads.close()
        os.close(fd)
    b, a = np.polyfit(np.asarray(ks, float), np.asarray(med), 1)
    return {"k": [int(k) for k in ks], "seconds": med, "first_seconds": med_first, "a": float(max(a, 0.0)),
            "b": float(max(b, 0.0))}


def profile_reads(sizes=(4096, 16384, 65536, 262144), qds=(1, 4), n_reads: int = 64,
                  file_bytes: int = 256 << 20, path=None, direct: bool = True, seed: int = 0,
                  directory=None, method: str = "auto") -> dict:
    """Random-read bandwidth (bytes/s) by read size x queue depth, and sequential bandwidth.

    Reads a scratch file (in ``directory``, deleted after) or ``path`` with O_DIRECT at random ``size``-aligned offsets;
    one thread keeps ``qd`` reads in flight with kernel AIO (``method="kernel"``; ``"threads"``:
    ``qd`` blocking-``pread`` threads; ``"auto"``: kernel AIO where the OS has it). Returns
    ``{"random": {size: {qd: bytes_per_s}}, "sequential": bytes_per_s (1 MiB reads, QD 1),
    "sequential_best": the best of :data:`SEQ_CONFIGS` (larger reads, more in flight: what a tuned
    streaming reader can reach, hence the one a bound must use), "sequential_by": each of them,
    "span": bytes, "direct": bool, "method": what issued the random reads}``;
    ``direct`` is False where the filesystem refused O_DIRECT (the profile is then optimistic);
    ``open`` says how the file was opened and ``page_cache`` what that means for the figures
    (:func:`~teachkit.sparse.flash.platform_io.page_cache_note`: where the platform can neither bypass
    nor drop the page cache, the "disk" bandwidth may be memory bandwidth).
    """
    own = path is None
    path = _scratch_file(file_bytes, directory) if own else Path(path)
    if not own:
        drop_cache(path)                            # fsync (no writeback during the run), then cold
    span = os.path.getsize(path)
    used_direct = direct and direct_io_works(path)
    fd, how = _open_uncached(path, direct)
    os.close(fd)
    try:
        table = {int(s): {int(q): _random_bw(path, s, q, n_reads, span, seed + q, direct, method) for q in qds}
                 for s in sizes}
        lim = min(span, 128 << 20)
        seq_by = {f"{c >> 20}MiB_qd{q}": sequential_read_bw(path, c, lim, direct, q, method) for c, q in SEQ_CONFIGS}
    finally:
        if own:
            path.unlink(missing_ok=True)
    return {"random": table, "sequential": seq_by["1MiB_qd1"], "sequential_best": max(seq_by.values()),
            "sequential_by": seq_by, "span": span, "direct": used_direct, "method": _method_name(method),
            "open": how, "page_cache": platform_io.page_cache_note(how)}


def _method_name(method: str) -> str:
    from ..flash.aio import kernel_aio_available

    return "kernel" if method == "kernel" or (method == "auto" and kernel_aio_available()) else "threads"


def interpolate_bw(profile: dict, size: int, qd: int = 1) -> float:
    """Random-read bandwidth for ``size`` bytes at ``qd``, log-interpolated between measured sizes."""
    table = {int(s): {int(q): float(v) for q, v in row.items()} for s, row in profile["random"].items()}
    sizes = sorted(table)
    q = min(table[sizes[0]], key=lambda k: abs(k - qd))
    bws = [table[s][q] for s in sizes]
    return float(np.exp(np.interp(np.log(size), np.log(sizes), np.log(bws))))
