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

**Blocking reads, GIL-free.** :meth:`FlashReader.read` (prefill, the baselines, notebook 12)
waits for its reads. ``os.preadv`` releases the GIL but takes it back after every read, so
with many small reads another thread keeps waiting for it; ``read`` therefore issues all reads
of one call from a single numba loop over libc ``pread`` (GIL released throughout). The Python
``os.preadv`` path remains for the ``fault`` test hook and for error messages. Every short read
raises :class:`FlashReadError`: a reader never hands back a half-filled buffer.

**Asynchronous reads.** The decode pipeline does not wait: it asks :meth:`FlashReader.addresses`
where each read goes and hands them to the kernel in one batch (:mod:`teachkit.sparse.unit_reads`),
then reports what came back with :meth:`FlashReader.completed`.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

import numpy as np
from numba import njit

from .flash import FlashFile

__all__ = ["FlashReader", "FlashReadError", "aligned_buffer", "runs", "cached_pages", "drop_cache", "direct_io_works"]

_DIRECT = getattr(os, "O_DIRECT", 0)
PAGE = mmap.PAGESIZE


def drop_cache(path) -> None:
    """``fsync`` ``path`` and drop all its pages from the page cache (a cold start)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_pages(path) -> int:
    """How many pages of ``path`` are in the page cache right now (``mincore`` on a mapping)."""
    import ctypes

    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap failed")
    try:
        vec = (ctypes.c_ubyte * (-(-size // PAGE)))()
        if libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return sum(v & 1 for v in vec)
    finally:
        libc.munmap(addr, size)


def direct_io_works(path) -> bool:
    """True if ``path``'s filesystem accepts O_DIRECT (tmpfs, for one, refuses it)."""
    fd = _open(path, True) if _DIRECT else -1
    if fd >= 0:
        os.close(fd)
    return fd >= 0


class FlashReadError(OSError):
    """A read from the flash file failed or came back short."""


def _open(path, direct: bool) -> int:
    """``os.open`` read-only, with O_DIRECT if asked; -1 if the filesystem does not support it."""
    if not direct:
        return os.open(path, os.O_RDONLY)
    try:
        return os.open(path, os.O_RDONLY | _DIRECT)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return -1
        raise


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
    with DONTNEED eviction. ``fault`` is a test hook called as ``fault(n_reads_so_far)``
    before each read of :meth:`read` (and, in the pipeline, for each completed asynchronous
    read); it may raise (an injected disk error) or block (an injected hang).
    """

    def __init__(self, flash: FlashFile, max_units: int, direct: bool | None = None, fault=None):
        if max_units <= 0:
            raise ValueError(f"max_units must be positive, got {max_units}")
        self.flash, self.spec = flash, flash.spec
        self.direct = bool(_DIRECT) and (self.spec.align % 4096 == 0) if direct is None else bool(direct)
        if self.direct and self.spec.align % 512:
            raise ValueError(f"O_DIRECT needs units aligned to 512 B at least; this file has align={self.spec.align}")
        self.fd = _open(flash.path, self.direct)
        if self.fd < 0:                                   # the filesystem refuses O_DIRECT (e.g. tmpfs)
            if direct:
                raise ValueError(f"{flash.path} is on a filesystem without O_DIRECT; use direct=None or False")
            self.direct = False
            self.fd = os.open(flash.path, os.O_RDONLY)
        if not self.direct:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        self.max_units = int(max_units)
        self.staging = aligned_buffer(self.max_units * self.spec.stride).reshape(self.max_units, self.spec.stride)
        self.fault = fault
        self.bytes_read = 0
        self.n_reads = 0
        s = self.spec                                   # geometry, precomputed for the hot path
        self._stride, self._layer_bytes, self._base = s.stride, s.layer_bytes, flash.data_offset
        self._mat_bytes = s.n_neurons * s.stride if s.layout == "matrix" else 0

    def close(self) -> None:
        if self.fd >= 0:
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
            got = os.preadv(self.fd, views, offset)
        except OSError as err:
            raise FlashReadError(err.errno, f"read of {want} B at offset {offset} failed: {err.strerror}") from err
        if got != want:
            raise FlashReadError(f"short read: {got} of {want} B at offset {offset} in {self.flash.path.name}")
        if not self.direct:                             # whole pages: a partly covered page would stay
            lo = offset // PAGE * PAGE
            os.posix_fadvise(self.fd, lo, -(-(offset + want) // PAGE) * PAGE - lo, os.POSIX_FADV_DONTNEED)
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
        failed = _pread_all(self.fd, addr, off, length, not self.direct, PAGE)
        if failed >= 0:                                   # redo the failed read in Python for its error message
            self.n_reads += int(failed)
            self.bytes_read += int(length[:failed].sum())
            v = memoryview(self.staging.reshape(-1))[int(dst[failed]):int(dst[failed] + length[failed])]
            self._pread([v], int(off[failed]))
            raise FlashReadError(f"read of {int(length[failed])} B at offset {int(off[failed])} "
                                 f"in {self.flash.path.name} failed (short or interrupted)")
        self.n_reads += len(off)
        self.bytes_read += int(length.sum())

    def addresses(self, layer: int, units: np.ndarray, lo: int, hi: int, rows: np.ndarray, mat: int = 0):
        """``(addr, offset, length)`` of one read per unit: bytes ``[lo, hi)`` of ``units[j]`` into staging row ``rows[j]``.

        For asynchronous readers (:mod:`teachkit.sparse.aio`), which issue the reads themselves.
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
        if not self.direct:
            _drop_pages(self.fd, np.asarray(offset, np.int64), np.asarray(length, np.int64), PAGE)
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
            return self.staging[:k]
        flat = memoryview(self.staging.reshape(-1))
        if coalesce and lo == 0 and hi == stride:
            for first, n in runs(units):
                a = first * stride
                self._pread([flat[a:a + n * stride]], base + int(units[first]) * stride)
        else:
            for j in range(k):
                a = j * stride + lo
                self._pread([flat[a:a + hi - lo]], base + int(units[j]) * stride + lo)
        return self.staging[:k]


# --------------------------------------------------------------------------- GIL-free reads
_libc = ctypes.CDLL(None, use_errno=True)
_c_pread = _libc.pread                   # the address goes as an integer: same register as a pointer
_c_pread.restype, _c_pread.argtypes = ctypes.c_ssize_t, [ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int64]
_c_fadvise = _libc.posix_fadvise
_c_fadvise.restype, _c_fadvise.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
_FADV_DONTNEED = int(getattr(os, "POSIX_FADV_DONTNEED", 4))


@njit(nogil=True)
def _pread_all(fd, addr, offset, length, drop, page):
    """``pread`` each (addr, offset, length) without the GIL; -1 if all complete, else the failed index.

    One Python call for a whole cluster's reads: a Python-level ``os.preadv`` per read hands the
    GIL back and forth with the compute thread at every read (a 0.2 ms switch interval each).
    ``drop``: evict the pages just read (buffered files, see the module docstring).
    """
    for j in range(offset.shape[0]):
        if _c_pread(fd, addr[j], length[j], offset[j]) != length[j]:
            return j
        if drop:
            a = offset[j] // page * page
            b = (offset[j] + length[j] + page - 1) // page * page
            _c_fadvise(fd, a, b - a, _FADV_DONTNEED)
    return -1


@njit(nogil=True)
def _drop_pages(fd, offset, length, page):
    for j in range(offset.shape[0]):
        a = offset[j] // page * page
        b = (offset[j] + length[j] + page - 1) // page * page
        _c_fadvise(fd, a, b - a, _FADV_DONTNEED)
