"""Reading the flash file for real: past the page cache, and without holding the GIL.

**Keeping the page cache out.** A weight read that hits Linux's page cache costs a memcpy,
not a disk access, and the cached pages are memory *outside* the engine's budget. Two ways
to keep it honest:

* ``O_DIRECT``: the read goes to the device into our own buffer. Offset, length and buffer
  address must be multiples of the block size, hence 4 KiB-aligned units and an
  ``mmap``-allocated (page-aligned) staging buffer.
* buffered reads followed by ``posix_fadvise(..., POSIX_FADV_DONTNEED)`` on the range read,
  rounded out to whole pages (the kernel keeps a partly covered page), and
  ``POSIX_FADV_RANDOM`` so no readahead pulls in neighbours: for small notebook files whose
  units are not 4 KiB-aligned. Dirty pages cannot be dropped, so files are ``fsync``-ed
  after writing (:func:`drop_cache`). :func:`cached_pages` asks the kernel (``mincore``)
  how many pages of a file are cached: the check that all this works.

Both are Linux calls. Elsewhere the file is opened as well as the platform allows
(:func:`~teachkit.sparse.flash.platform_io.open_uncached`: ``F_NOCACHE`` on macOS, a plain open on
Windows); :attr:`FlashReader.how` and :attr:`FlashReader.page_cache` say which, so a
measurement can say whether its reads may have come from memory.

**Blocking reads, GIL-free.** :meth:`FlashReader.read` (prefill, the baselines, notebook 12)
waits for its reads. ``os.preadv`` releases the GIL but takes it back after every read, so
with many small reads another thread keeps waiting for it; ``read`` therefore issues all reads
of one call from a single numba loop over libc ``pread`` (GIL released throughout; without libc,
as on Windows, a Python loop of seek + readinto). The Python
``os.preadv`` path remains for the ``fault`` test hook and for error messages. Every short read
raises :class:`FlashReadError`: a reader never hands back a half-filled buffer.

**Asynchronous reads.** The decode pipeline does not wait: it asks :meth:`FlashReader.addresses`
where each read goes and hands them to the kernel in one batch (:mod:`teachkit.sparse.flash.unit_reads`),
then reports what came back with :meth:`FlashReader.completed`.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
from numba import njit

from . import platform_io
from .format import FlashFile

__all__ = ["FlashReader", "FlashReadError", "aligned_buffer", "runs", "drop_cache", "direct_io_works"]

PAGE = mmap.PAGESIZE


def drop_cache(path) -> None:
    """``fsync`` ``path`` and drop all its pages from the page cache (a cold start).

    Where the platform cannot drop pages this only syncs (``platform_io.describe()`` says so).
    """
    fd = platform_io.open_read(path)
    try:
        os.fsync(fd)
        platform_io.drop_cache(fd)
    finally:
        os.close(fd)


def direct_io_works(path) -> bool:
    """True if this platform has O_DIRECT and ``path``'s filesystem accepts it (tmpfs, for one, refuses it)."""
    if not platform_io.CAPS.o_direct:
        return False
    fd, how = platform_io.open_uncached(path, True)
    os.close(fd)
    return how == "O_DIRECT"


class FlashReadError(OSError):
    """A read from the flash file failed or came back short."""


def aligned_buffer(nbytes: int) -> np.ndarray:
    """A page-aligned uint8 buffer (``mmap``-backed), usable for O_DIRECT reads."""
    mm = mmap.mmap(-1, max(int(nbytes), mmap.PAGESIZE))
    return np.frombuffer(mm, dtype=np.uint8)[:nbytes]


def runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted ids into runs of consecutive values: ``[(first_position, length), ...]``."""
    if len(ids) == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(ids)]))
    return [(int(a), int(b - a)) for a, b in zip(starts, ends)]


class FlashReader:
    """Reads units of a :class:`FlashFile` into a private aligned staging buffer.

    ``direct=None`` picks O_DIRECT when the file's alignment allows it, else buffered reads
    with DONTNEED eviction. ``check``: compare every whole unit read with its crc32
    (:meth:`FlashFile.unit_crcs`), so a corrupt read raises instead of computing garbage. ``fault`` is a test hook called as ``fault(n_reads_so_far)``
    before each read of :meth:`read` (and, in the pipeline, for each completed asynchronous
    read); it may raise (an injected disk error) or block (an injected hang).
    """

    def __init__(self, flash: FlashFile, max_units: int, direct: bool | None = None, fault=None,
                 check: bool = False):
        if max_units <= 0:
            raise ValueError(f"max_units must be positive, got {max_units}")
        self.flash, self.spec = flash, flash.spec
        caps = platform_io.CAPS
        want = caps.o_direct and (self.spec.align % 4096 == 0) if direct is None else bool(direct)
        if want and self.spec.align % 512:
            raise ValueError(f"O_DIRECT needs units aligned to 512 B at least; this file has align={self.spec.align}")
        self.fd, self.how = platform_io.open_uncached(flash.path, want)
        self.direct = self.how == "O_DIRECT"
        if direct and not self.direct:
            os.close(self.fd)
            where = "on a filesystem" if caps.o_direct else "on a platform"
            raise ValueError(f"{flash.path} is {where} without O_DIRECT; use direct=None or False")
        self.drops = self.how == "buffered+drop"          # evict what was read (see the module docstring)
        if not self.direct:
            platform_io.advise_random(self.fd)
        self.file = platform_io.RangeFile(self.fd, flash.path)
        self._native = _native_loops() if self.file.positional else None
        self.max_units = int(max_units)
        self.staging = aligned_buffer(self.staging_nbytes(self.spec, self.max_units)).reshape(self.max_units,
                                                                                               self.spec.stride)
        self.fault = fault
        self.check = bool(check)                        # crc32 of every whole unit read (FlashFile.unit_crcs)
        if self.check:
            flash.unit_crcs()
        self.bytes_read = 0
        self.n_reads = 0
        s = self.spec                                   # geometry, precomputed for the hot path
        self._stride, self._layer_bytes, self._base = s.stride, s.layer_bytes, flash.data_offset
        self._mat_bytes = s.n_neurons * s.stride if s.layout == "matrix" else 0

    @staticmethod
    def staging_nbytes(spec, max_units: int) -> int:
        """Bytes of the staging buffer a reader of ``max_units`` units allocates: one unit (``stride``) each."""
        return int(max_units) * spec.stride

    @property
    def page_cache(self) -> str:
        """What these reads measure, as far as the page cache goes (:func:`~teachkit.sparse.flash.platform_io.page_cache_note`)."""
        return platform_io.page_cache_note(self.how)

    def close(self) -> None:
        if self.fd >= 0:
            self.file.close()
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pread(self, views: list, offset: int) -> None:
        if self.fault is not None:
            self.fault(self.n_reads)
        want = sum(len(v) for v in views)
        try:
            got = self.file.read_into(views[0], offset) if len(views) == 1 else os.preadv(self.fd, views, offset)
        except OSError as err:
            raise FlashReadError(err.errno, f"read of {want} B at offset {offset} failed: {err.strerror}") from err
        if got != want:
            raise FlashReadError(f"short read: {got} of {want} B at offset {offset} in {self.flash.path.name}")
        if self.drops:                                  # whole pages: a partly covered page would stay
            lo = offset // PAGE * PAGE
            platform_io.drop_cache(self.fd, lo, -(-(offset + want) // PAGE) * PAGE - lo)
        self.bytes_read += want
        self.n_reads += 1

    def _read_native(self, base: int, units: np.ndarray, lo: int, hi: int, coalesce: bool) -> None:
        """All reads of one call in one GIL-free loop (:func:`_pread_all`); errors as in :meth:`_pread`."""
        stride, k = self._stride, len(units)
        if coalesce:
            first = np.flatnonzero(np.concatenate(([True], np.diff(units) != 1)))
            length = np.diff(np.append(first, k)) * stride
            dst, off = first * stride, base + units[first] * stride
        else:
            dst = np.arange(k, dtype=np.int64) * stride + lo
            off, length = base + units * stride + lo, np.full(k, hi - lo, dtype=np.int64)
        addr = dst + self.staging.ctypes.data
        failed = self._read_all(addr, off, length)
        if failed >= 0:                                   # redo the failed read in Python for its error message
            self.n_reads += int(failed)
            self.bytes_read += int(length[:failed].sum())
            v = memoryview(self.staging.reshape(-1))[int(dst[failed]):int(dst[failed] + length[failed])]
            self._pread([v], int(off[failed]))
            raise FlashReadError(f"read of {int(length[failed])} B at offset {int(off[failed])} "
                                 f"in {self.flash.path.name} failed (short or interrupted)")
        self.n_reads += len(off)
        self.bytes_read += int(length.sum())

    def _read_all(self, addr, off, length) -> int:
        """Every read of a batch; -1 if all came back whole, else the index of the first that did not."""
        if self._native is not None:                      # one GIL-free numba loop over libc pread
            failed = self._native[0](self.fd, addr, off, length)
        else:
            failed = next((j for j in range(len(off))
                           if self.file.read_address(int(addr[j]), int(length[j]), int(off[j])) != length[j]), -1)
        if self.drops:
            self._drop(off, length)
        return failed

    def _drop(self, offset, length) -> None:
        if self._native is not None and self._native[1] is not None:
            self._native[1](self.fd, np.asarray(offset, np.int64), np.asarray(length, np.int64), PAGE)
            return
        for o, n in zip(np.asarray(offset).tolist(), np.asarray(length).tolist()):
            lo = o // PAGE * PAGE
            platform_io.drop_cache(self.fd, lo, -(-(o + n) // PAGE) * PAGE - lo)

    def addresses(self, layer: int, units: np.ndarray, lo: int, hi: int, rows: np.ndarray, mat: int = 0):
        """``(addr, offset, length)`` of one read per unit: bytes ``[lo, hi)`` of ``units[j]`` into staging row ``rows[j]``.

        For asynchronous readers (:mod:`teachkit.sparse.flash.aio`), which issue the reads themselves.
        """
        if not 0 <= lo < hi <= self._stride:
            raise ValueError(f"byte range [{lo}, {hi}) is outside a unit of {self._stride} B")
        if self.direct and (lo % 512 or hi % 512):
            raise ValueError(f"O_DIRECT partial reads need 512-aligned bounds, got [{lo}, {hi})")
        units, rows = np.asarray(units, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        base = self._base + layer * self._layer_bytes + mat * self._mat_bytes
        addr = (self.staging.ctypes.data + rows * self._stride + lo).astype(np.uint64)
        return addr, base + units * self._stride + lo, np.full(len(units), hi - lo, dtype=np.int64)

    def completed(self, offset: np.ndarray, length: np.ndarray) -> None:
        """Count reads issued through :meth:`addresses` that completed; evict their pages if buffered."""
        if self.drops:
            self._drop(offset, length)
        self.n_reads += len(offset)
        self.bytes_read += int(np.sum(length))

    def read(self, layer: int, units: np.ndarray, mat: int = 0, lo: int = 0, hi: int | None = None,
             coalesce: bool = True) -> np.ndarray:
        """Read bytes ``[lo, hi)`` of each unit ``units`` (sorted) of ``layer`` into staging rows 0..k-1.

        Consecutive units are read with one ``preadv`` when whole units are read and
        ``coalesce`` is on (a run of neighbours is one large read). Returns the staging view.
        """
        stride = self._stride
        hi = stride if hi is None else hi
        k = len(units)
        if k > self.max_units:
            raise ValueError(f"asked for {k} units but the staging buffer holds {self.max_units}")
        if not 0 <= lo < hi <= stride:
            raise ValueError(f"byte range [{lo}, {hi}) is outside a unit of {stride} B")
        if self.direct and (lo % 512 or hi % 512):
            raise ValueError(f"O_DIRECT partial reads need 512-aligned bounds, got [{lo}, {hi})")
        base = self._base + layer * self._layer_bytes + mat * self._mat_bytes
        if self.fault is None and k:
            self._read_native(base, np.asarray(units, dtype=np.int64), lo, hi, coalesce and lo == 0 and hi == stride)
        else:
            flat = memoryview(self.staging.reshape(-1))
            if coalesce and lo == 0 and hi == stride:
                for first, n in runs(units):
                    a = first * stride
                    self._pread([flat[a:a + n * stride]], base + int(units[first]) * stride)
            else:
                for j in range(k):
                    a = j * stride + lo
                    self._pread([flat[a:a + hi - lo]], base + int(units[j]) * stride + lo)
        if self.check and lo == 0 and hi == stride:
            self.check_units(layer, np.asarray(units) + (mat * self.spec.n_neurons if self._mat_bytes else 0),
                             self.staging)
        return self.staging[:k]

    def check_units(self, layer: int, units, raw: np.ndarray, rows=None) -> None:
        """Raise :class:`FlashReadError` if a unit's bytes (row ``rows[j]`` of ``raw``) differ from the file's."""
        bad = self.flash.first_bad_unit(layer, units, raw, rows)
        if bad >= 0:
            raise FlashReadError(f"layer {layer}, unit {int(np.asarray(units)[bad])} of {self.flash.path.name}: "
                                 "the bytes read do not match its crc32 (a corrupt read, or the file "
                                 "changed on disk since it was opened)")


# --------------------------------------------------------------------------- GIL-free reads
_LOOPS: list = []


def _native_loops():
    """``(pread_all, drop_pages)`` compiled over libc (``drop_pages`` None without ``posix_fadvise``).

    Built on first use, so that importing this module needs no libc (Windows).
    """
    if _LOOPS:
        return _LOOPS[0]
    libc = platform_io.libc()
    c_pread = libc.pread                  # the address goes as an integer: same register as a pointer
    c_pread.restype, c_pread.argtypes = ctypes.c_ssize_t, [ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int64]

    @njit(nogil=True)
    def pread_all(fd, addr, offset, length):
        """``pread`` each (addr, offset, length) without the GIL; -1 if all complete, else the failed index.

        One Python call for a whole cluster's reads: a Python-level ``os.preadv`` per read hands
        the GIL back and forth with the compute thread at every read (a 0.2 ms switch interval each).
        """
        for j in range(offset.shape[0]):
            if c_pread(fd, addr[j], length[j], offset[j]) != length[j]:
                return j
        return -1

    drop_pages = None
    if platform_io.CAPS.fadvise and hasattr(libc, "posix_fadvise"):
        c_fadvise = libc.posix_fadvise
        c_fadvise.restype, c_fadvise.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
        dontneed = int(os.POSIX_FADV_DONTNEED)

        @njit(nogil=True)
        def drop_pages(fd, offset, length, page):
            """Evict the whole pages covering each read (a partly covered page would stay)."""
            for j in range(offset.shape[0]):
                a = offset[j] // page * page
                b = (offset[j] + length[j] + page - 1) // page * page
                c_fadvise(fd, a, b - a, dontneed)

    none, nothing = np.empty(0, np.uint64), np.empty(0, np.int64)
    pread_all(-1, none, nothing, nothing)              # compile now, not inside a timed or bounded read
    if drop_pages is not None:
        drop_pages(-1, nothing, nothing, PAGE)
    _LOOPS.append((pread_all, drop_pages))
    return _LOOPS[0]
