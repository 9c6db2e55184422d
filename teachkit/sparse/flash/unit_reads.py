"""The read side of the cluster pipeline: a layer's misses in flight at once, landed cluster by cluster.

The compute thread calls :meth:`UnitReads.request` with the units (clusters) a layer must read.
Every read that fits goes to the kernel at once (kernel AIO, :mod:`teachkit.sparse.flash.aio`; the
first unit in a small ``io_submit`` of its own, the rest in a second), from the compute thread
itself: no thread hand-off stands between the prediction and the reads being in flight. One
**I/O thread** sleeps in ``io_getevents`` (no GIL held) until the unit nearest completion can
be done; when a unit's last read is back it makes sure the bytes are in the cache rows the
unit was given, frees the unit's rows (submitting queued units into them) and puts the unit
on the ``done`` queue, where the compute thread picks it up.

**Where the bytes land.** float32 cache rows are laid out exactly like a bundle on flash and
the regions are page-aligned, so reads go straight into the cache rows the unit was given:
no copy, and the I/O thread only counts and hands over. int8 rows (weights and scales kept
apart in the cache) and padded bundles are read into staging rows and copied
(:func:`~teachkit.sparse.compute.stages.scatter_rows`). Completions are tallied per unit in one numba
call (:meth:`JobTable.tally`).

Staging rows bound the reads in flight (``io_depth``, and at least one whole unit); each row,
AIO slot and job-table entry is counted in the engine's budget (:meth:`UnitReads.nbytes_for`).
A read that fails or comes back short marks its unit failed; an exception in the I/O thread
itself is handed to the compute thread as well, so the caller always gets the real error, never
a silent hang. ``fault`` (a test hook) is called for every completed read, where an injected
disk error or hang shows.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque

import numpy as np
from numba import njit

from .aio import KernelAIO, join_within, open_async_reads
from .reader import FlashReader, FlashReadError
from ..compute.stages import scatter_rows as _scatter_rows

__all__ = ["UnitReads", "JobTable", "staging_rows"]

FIRST_BATCH_READS = 16        # reads worth a first io_submit of their own (one unit goes first)
_LEFT_BEHIND: list = []       # buffers a read stuck past close() may still write into: never freed


def staging_rows(cfg, hot_cluster_size: int) -> int:
    """Staging rows the I/O thread holds: one per read in flight, and at least one whole unit."""
    return max(cfg.io_depth, cfg.cluster_size, hot_cluster_size)


class _Job:
    """One unit's reads in flight: where they go (staging ``rows``) and how many are still out."""

    __slots__ = ("id", "unit", "part", "layer", "rows", "left", "t0", "addr", "off", "length", "error")

    def __init__(self, jid, unit, part, layer, rows, t0, addr, off, length):
        self.id, self.unit, self.part, self.layer, self.rows = jid, unit, part, layer, rows
        self.left, self.t0, self.addr, self.off, self.length = len(rows), t0, addr, off, length
        self.error = None


def _as_bytes(W):
    """uint8 2-D views of a region's weights: ``(weights_bytes, scales_bytes or None)``."""
    if isinstance(W, tuple):
        q, s = W
        return q.reshape(q.shape[0], -1).view(np.uint8), s.view(np.uint8).reshape(s.shape[0], -1)
    return W.reshape(W.shape[0], -1).view(np.uint8), None


@njit(nogil=True, cache=True)
def _tally(tags, res, left, length, bad, failed, finished):
    """Count completed reads per job (``tags`` = job slots); return how many jobs are now complete.

    A result other than the job's read length (an ``-errno`` or a short count) marks the job
    failed and keeps the first such result in ``bad``. Complete jobs go to ``finished``.
    """
    n = 0
    for i in range(tags.shape[0]):
        j = tags[i]
        if res[i] != length[j] and not failed[j]:
            failed[j] = True
            bad[j] = res[i]
        left[j] -= 1
        if left[j] == 0:
            finished[n] = j
            n += 1
    return n


class JobTable:
    """What the I/O thread knows of the jobs in flight, one entry per job slot (one per staging
    row: a job holds at least one row): ``left`` reads still out, the ``length`` each must
    return, the first wrong result (``bad``) and whether there was one (``failed``); and
    ``finished``, where a tally lists the jobs it completed."""

    FIELDS = (("left", np.int64), ("length", np.int64), ("bad", np.int64), ("failed", np.bool_),
              ("finished", np.int64))
    BYTES_PER_ROW = sum(np.dtype(dtype).itemsize for _, dtype in FIELDS)

    def __init__(self, n_rows: int):
        for name, dtype in self.FIELDS:
            setattr(self, name, np.zeros(n_rows, dtype))

    @staticmethod
    def nbytes_for(n_rows: int) -> int:
        """Bytes of the table for ``n_rows`` job slots."""
        return int(n_rows) * JobTable.BYTES_PER_ROW

    @property
    def nbytes(self) -> int:
        """Bytes this table holds (measured)."""
        return sum(getattr(self, name).nbytes for name, _ in self.FIELDS)

    def start(self, slot: int, n_reads: int, length: int) -> None:
        """Job ``slot`` has ``n_reads`` reads in flight, each of ``length`` bytes."""
        self.left[slot], self.length[slot], self.failed[slot] = n_reads, length, False

    def tally(self, tags: np.ndarray, res: np.ndarray) -> list:
        """Count completed reads (``tags``: their job slots, ``res``: their results) in one numba
        call; return the slots of the jobs now complete. A result other than the job's read
        length (an ``-errno`` or a short count) marks the job failed, the first kept in ``bad``."""
        n = _tally(tags, res, self.left, self.length, self.bad, self.failed, self.finished)
        return self.finished[:n].tolist()


class UnitReads:
    """Reads units of a bundled flash file into a :class:`~teachkit.sparse.runtime.cache.SegmentedCache`."""

    def __init__(self, flash, cache, cfg, trace, done: queue.Queue, fault=None):
        self.flash, self.cache, self.cfg, self.trace, self.done = flash, cache, cfg, trace, done
        self.spec = flash.spec
        self.n_rows = staging_rows(cfg, cache.cfg.cluster_size)
        if cfg.check_reads and cfg.read_unit != "bundle":
            raise ValueError("check_reads needs read_unit='bundle': a unit's crc32 covers the whole bundle")
        self.reader = FlashReader(flash, self.n_rows, fault=fault, check=cfg.check_reads)
        if cfg.read_unit == "split" and self.reader.direct and (self.spec.d * 4) % 512:
            raise ValueError("read_unit='split' with O_DIRECT needs d*4 to be a multiple of 512")
        self.aio = open_async_reads(self.reader.fd, self.n_rows, cfg.aio, path=flash.path)
        self.into_cache = self._can_read_into(cache.hot_w) and self._can_read_into(cache.cold_w)
        self.lock = threading.Lock()               # guards the job table, free rows and backlog
        self.wake = threading.Event()
        self.free_rows = list(range(self.n_rows))
        self.backlog: deque = deque()
        self.jobs: dict = {}                        # job slot -> _Job in flight; the slot is the reads' tag
        self.job_slots = list(range(self.n_rows))  # a job holds >= 1 staging row, so n_rows slots suffice
        self.job_table = JobTable(self.n_rows)
        self.closed = False
        self.stuck: list[str] = []
        self.staging_bytes = self.reader.staging.nbytes
        self._warm_up()
        self.thread = threading.Thread(target=self._io_loop, daemon=True, name="flash-io")
        self.thread.start()

    @staticmethod
    def nbytes_for(spec, cfg, hot_cluster_size: int) -> int:
        """Bytes a ``UnitReads`` allocates, per staging row (:func:`staging_rows`): the reader's
        staging row, a kernel AIO slot (iocb and event; pread threads hold no table, so with
        them this errs by that much on the safe side) and a job-table entry."""
        rows = staging_rows(cfg, hot_cluster_size)
        return FlashReader.staging_nbytes(spec, rows) + KernelAIO.table_nbytes(rows) + JobTable.nbytes_for(rows)

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) the I/O thread's kernels now, not in its first
        wait: on a loaded machine that takes seconds, which a read timeout would count."""
        none = np.empty(0, np.int64)
        self.job_table.tally(none, none)
        if not self.into_cache:
            for W in (self.cache.hot_w, self.cache.cold_w):
                if len(W[0] if isinstance(W, tuple) else W) == 0:
                    continue
                qb, sb = _as_bytes(W)
                if sb is None:
                    _scatter_rows(self.reader.staging.view(np.uint32), none, 0, 0, qb.view(np.uint32), none, 0)
                else:
                    _scatter_rows(self.reader.staging, none, 0, 0, sb, none, 0)
                    _scatter_rows(self.reader.staging, none, 0, 0, qb, none, 0)

    def _can_read_into(self, W) -> bool:
        """Can reads land straight in ``W``'s rows (no staging copy)? float32 rows laid out exactly
        as a bundle on flash (no padding), and, for O_DIRECT, 512-aligned addresses."""
        if isinstance(W, tuple):
            return False
        if len(W) == 0:                                  # a region without rows is never read into
            return True
        if self.spec.stride != W[0].nbytes:
            return False
        return not self.reader.direct or (W.ctypes.data % 512 == 0 and self.spec.stride % 512 == 0)

    def _range(self, part: str):
        """Bytes ``[lo, hi)`` of a bundle that ``part`` reads, and the stage name."""
        d4, whole = self.spec.d * 4, self.spec.payload_bytes()
        if part == "bundle":
            return 0, self.spec.stride, "bundle_read"
        if part == "ahead":                                # a look-ahead's whole bundle
            return 0, self.spec.stride, "prefetch_read"
        if part == "gate":
            return 0, d4, "gate_read"
        return d4, (-(-whole // 512) * 512 if self.reader.direct else whole), "updown_read"

    def request(self, items) -> None:
        """Queue ``(unit, part, layer)`` reads and submit all that fit, at once, from this thread.

        Submitting here, not in the I/O thread, keeps a thread hand-off off the critical path:
        the reads are in flight before the compute thread starts on the work already in memory.
        The time this takes (the reads' addresses, one or two ``io_submit`` calls) is recorded as
        a ``submit`` event on the caller's lane, ``compute``: it is time the compute thread does
        not compute.
        """
        t0 = time.perf_counter()
        with self.lock:
            self.backlog.extend(items)
            self._submit_backlog()
        self.wake.set()
        if items:
            self.trace.add("compute", "submit", items[0][2], -1, t0, time.perf_counter())

    def _submit_backlog(self) -> None:
        """Submit queued units while staging rows and AIO slots last. Holds the lock.

        When more than one unit and over ``FIRST_BATCH_READS`` reads go out, the first unit goes
        to the kernel in an ``io_submit`` of its own and the rest in a second: the kernel
        prepares a whole batch before the disk sees any of it, so a short first batch starts
        the disk sooner. Units that do not fit stay queued, for the I/O thread to submit as
        rows come free.
        """
        picked, t0 = [], time.perf_counter()
        room = min(len(self.free_rows), len(self.aio.free))
        while self.backlog:
            unit, part, layer = self.backlog[0]
            k = len(unit.neurons)
            if k > room:
                break
            self.backlog.popleft()
            picked.append((unit, part, layer, k))
            room -= k
        if not picked:
            return
        total = sum(p[3] for p in picked)
        rows = np.array(self.free_rows[:total], dtype=np.int64)
        del self.free_rows[:total]
        batch, at = [], 0
        for unit, part, layer, k in picked:
            lo, hi, _ = self._range(part)
            r = rows[at:at + k]
            addr, off, length = self.reader.addresses(layer, unit.neurons, lo, hi, r)
            if self.into_cache:                          # straight into the cache rows
                addr = (unit.W.ctypes.data + unit.read_rows * self.spec.stride + lo).astype(np.uint64)
            slot = self.job_slots.pop()
            batch.append(_Job(slot, unit, part, layer, r, t0, addr, off, length))
            self.job_table.start(slot, k, hi - lo)
            at += k
        for j in batch:
            self.jobs[j.id] = j
        first = 1 if len(batch) > 1 and total > FIRST_BATCH_READS else len(batch)
        for group in (batch[:first], batch[first:]):
            if group:
                try:
                    self.aio.submit(np.concatenate([j.addr for j in group]), np.concatenate([j.off for j in group]),
                                    np.concatenate([j.length for j in group]),
                                    np.concatenate([np.full(j.left, j.id) for j in group]))
                except OSError as err:                   # e.g. io_submit refused: EAGAIN, EBADF, ENOMEM
                    if isinstance(err, FlashReadError):
                        raise
                    raise FlashReadError(err.errno, f"submitting reads of {self.flash.path.name} failed: "
                                                    f"{err.strerror or err}") from err

    def _io_loop(self) -> None:
        """The I/O thread. If it fails, the compute thread gets the error (not a timeout)."""
        try:
            self._serve()
        except BaseException as err:  # noqa: BLE001 - handed to the compute thread
            self.done.put((None, None, err))

    def _serve(self) -> None:
        """Wait for completions (no GIL) and hand back whole units.

        It sleeps in ``io_getevents`` until the unit nearest completion can be done. When a
        unit's last read is back, it is landed (:meth:`_land`), its rows are freed, and queued
        units are submitted into them.
        """
        reader = self.reader
        while not self.closed:
            with self.lock:
                hint = int(self.job_table.left[list(self.jobs)].min()) if self.jobs else 0
            if not hint:
                self.wake.wait(0.05)
                self.wake.clear()
                continue
            tags, res = self.aio.reap(1 if self.cfg.read_unit == "split" else hint, 0.05)
            if not len(tags):
                continue
            if reader.fault is not None:                  # test hook: an injected disk error or hang
                for j in range(len(tags)):
                    reader.fault(reader.n_reads + j)
            with self.lock:
                finished = [self.jobs.pop(j) for j in self.job_table.tally(tags, res)]
                self.job_slots.extend(j.id for j in finished)
            for job in finished:
                if self.job_table.failed[job.id]:
                    got, want = int(self.job_table.bad[job.id]), int(job.length[0])
                    why = os.strerror(-got) if got < 0 else f"short read: {got} of {want} B"
                    job.error = FlashReadError(f"reading layer {job.layer} from {self.flash.path.name} failed: {why}")
            for job in finished:
                if job.error is None:
                    self._land(job)
                else:
                    self.done.put((job.unit, job.part, job.error))
            with self.lock:
                for job in finished:
                    self.free_rows.extend(job.rows.tolist())
                self._submit_backlog()

    def _land(self, job: "_Job") -> None:
        """Count a unit's bytes, copy them from staging into its cache rows if they were not read
        there directly, and hand the unit over."""
        unit = job.unit
        try:
            lo, hi, stage = self._range(job.part)
            self.reader.completed(job.off, job.length)
            if self.reader.check:                           # whole bundles only (see __init__)
                self._check(job)
            self.cache.add_traffic("hot" if unit.W is self.cache.hot_w else "cold", int(job.length.sum()))
            if not self.into_cache:
                self._copy_from_staging(job, lo, hi)
            self.trace.add("io", stage, job.layer, unit.uid, job.t0, time.perf_counter())
            self.done.put((unit, job.part, None))
        except BaseException as err:  # noqa: BLE001 - handed to the compute thread
            self.done.put((unit, job.part, err))

    def _check(self, job: "_Job") -> None:
        """crc32 of each bundle read, where it landed, against the file's (FlashFile.unit_crcs)."""
        if self.into_cache:
            W = job.unit.W
            self.reader.check_units(job.layer, job.unit.neurons, W.reshape(W.shape[0], -1).view(np.uint8),
                                    job.unit.read_rows)
        else:
            self.reader.check_units(job.layer, job.unit.neurons, self.reader.staging, job.rows)

    def _copy_from_staging(self, job: "_Job", lo: int, hi: int) -> None:
        """Bytes ``[lo, hi)`` of each bundle, from the job's staging rows into its unit's cache rows."""
        qb, sb = _as_bytes(job.unit.W)
        whole, staging = self.spec.payload_bytes(), self.reader.staging
        if sb is None:                                      # float32 rows: copy 4 bytes at a time
            _scatter_rows(staging.view(np.uint32), job.rows, lo // 4, min(hi, whole) // 4, qb.view(np.uint32),
                          job.unit.read_rows, lo // 4)
        else:
            m = self.spec.n_mats
            _scatter_rows(staging, job.rows, 0, 4 * m, sb, job.unit.read_rows, 0)
            _scatter_rows(staging, job.rows, 4 * m, whole, qb, job.unit.read_rows, 0)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the I/O thread and the reads, waiting at most ``timeout`` s for each.

        A thread still stuck in a read after that is named in ``stuck`` (and a warning); the
        buffers its read may still write into are kept alive with it.
        """
        self.closed = True
        self.wake.set()
        self.stuck = join_within([self.thread], timeout, "closing the flash I/O thread")
        self.aio.close()
        self.stuck += self.aio.stuck
        if self.stuck:
            _LEFT_BEHIND.append((self.reader.staging, self.cache.hot_w, self.cache.cold_w))
        self.reader.close()

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    @property
    def n_reads(self) -> int:
        return self.reader.n_reads
