"""Where flash I/O meets the operating system: the one module that knows the platform.

Every other module of the sparse engine asks this one for the OS-specific parts:

================================  =====================  ==================  =============================
capability                        Linux                  macOS               Windows (native)
================================  =====================  ==================  =============================
open for uncached reads           ``O_DIRECT``           ``F_NOCACHE``       plain open (page cache used)
drop a file from the page cache   ``posix_fadvise``      (none)              (none)
read many ranges at once          kernel AIO             ``pread`` threads   seek + readinto, per thread
GIL-free blocking reads           libc ``pread``         libc ``pread``      Python reads
process I/O counters              ``/proc/self/io``      (none)              (none)
CPU name, cache sizes             ``/proc``, ``/sys``    ``sysctl``          ``platform``
================================  =====================  ==================  =============================

A missing capability is a fallback, never an ``AttributeError``: the function says what it
did (``open_uncached`` returns how the file was opened, ``drop_cache`` whether pages were
dropped, ``process_read_bytes`` ``None`` when the OS keeps no count), and :func:`describe`
prints one line per fallback in force, so a benchmark on a laptop says that its reads may come
from the page cache instead of claiming a disk figure.

**Testing the fallbacks on Linux.** The environment variable ``TEACHKIT_IO_PLATFORM`` hides
capabilities: ``portable`` (as on a Mac: no ``posix_fadvise``, no ``O_DIRECT``, no kernel
AIO, no ``/proc`` or ``/sys``) and ``windows`` (``portable``, and no ``pread`` or libc:
seek + readinto on a handle per thread). :func:`simulate` does the same inside one process.
Sources: ``open(2)`` (O_DIRECT), ``posix_fadvise(2)``, ``io_submit(2)``, ``proc(5)``, and
Apple's ``fcntl(2)`` (F_NOCACHE).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import mmap
import os
import platform
import subprocess
import threading
from dataclasses import dataclass, replace

__all__ = ["Capabilities", "CAPS", "MODES", "simulate", "libc", "open_read", "open_uncached", "drop_cache",
           "advise_random", "cached_pages", "RangeFile", "process_read_bytes", "cpu_name", "last_level_cache_bytes",
           "read_ahead_bytes", "page_cache_note", "describe", "io_path", "load_average"]

MODES = ("native", "portable", "windows")
_F_NOCACHE = 48                                 # <sys/fcntl.h> on macOS


@dataclass(frozen=True)
class Capabilities:
    mode: str                # "native", "portable" or "windows"
    system: str              # platform.system()
    o_direct: bool           # open(..., O_DIRECT)
    f_nocache: bool          # fcntl(fd, F_NOCACHE, 1)
    fadvise: bool            # posix_fadvise(DONTNEED / RANDOM)
    kernel_aio: bool         # io_setup / io_submit / io_getevents
    pread: bool              # positional reads (os.pread, os.preadv, libc pread)
    proc: bool               # /proc and /sys
    mincore: bool            # mincore(2): which pages of a file are cached


def detect(mode: str = "native") -> Capabilities:
    """What this OS offers, less what ``mode`` hides."""
    if mode not in MODES:
        raise ValueError(f"TEACHKIT_IO_PLATFORM must be one of {', '.join(MODES)}, got {mode!r}")
    system = platform.system()
    has_libc = system != "Windows"
    caps = Capabilities(
        mode, system, o_direct=hasattr(os, "O_DIRECT"),
        f_nocache=system == "Darwin",
        fadvise=hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED"),
        kernel_aio=system == "Linux" and platform.machine() in ("x86_64", "aarch64") and hasattr(os, "O_DIRECT"),
        pread=has_libc and hasattr(os, "pread") and hasattr(os, "preadv"),
        proc=os.path.exists("/proc/self/io"), mincore=has_libc)
    if mode != "native":
        caps = replace(caps, o_direct=False, fadvise=False, kernel_aio=False, proc=False)
    if mode == "windows":
        caps = replace(caps, f_nocache=False, pread=False, mincore=False)
    return caps


CAPS = detect(os.environ.get("TEACHKIT_IO_PLATFORM", "native") or "native")


@contextlib.contextmanager
def simulate(mode: str):
    """Run a block as if on another platform (tests): ``with simulate("windows"): ...``.

    Affects objects created inside the block; callers read :data:`CAPS` when they open a file.
    """
    global CAPS
    old, CAPS = CAPS, detect(mode)
    try:
        yield CAPS
    finally:
        CAPS = old


_LIBC = []


def libc():
    """The C library as a ``ctypes.CDLL`` (calls release the GIL), or ``None`` (Windows, or simulated)."""
    if not CAPS.pread:
        return None
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


# --------------------------------------------------------------------------- opening and the page cache
def open_read(path) -> int:
    """A read-only file descriptor (binary mode on Windows)."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def open_uncached(path, direct: bool = True) -> tuple[int, str]:
    """Open ``path`` for reads that bypass the page cache as far as this platform allows.

    Returns ``(fd, how)``: ``"O_DIRECT"`` (Linux; reads must be aligned, see
    :mod:`teachkit.sparse.flash.reader`), ``"F_NOCACHE"`` (macOS: new reads are not cached, pages
    already cached may still serve reads), ``"buffered+drop"`` (the file's pages are dropped now;
    the caller drops what it reads) or ``"buffered"`` (the page cache may serve reads).
    ``direct=False`` skips O_DIRECT (unaligned reads). O_DIRECT refused by the filesystem
    (tmpfs) falls back to the next way.
    """
    if direct and CAPS.o_direct:
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECT), "O_DIRECT"
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
    fd = open_read(path)
    if CAPS.f_nocache:
        import fcntl
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_NOCACHE", _F_NOCACHE), 1)
            return fd, "F_NOCACHE"
        except OSError:
            pass
    return fd, ("buffered+drop" if drop_cache(fd) else "buffered")


def drop_cache(fd: int, offset: int = 0, length: int = 0) -> bool:
    """Drop ``[offset, offset + length)`` of an open file (0 = to the end) from the page cache.

    True if the OS was asked to (``posix_fadvise(DONTNEED)``; dirty pages stay until written
    back, so ``fsync`` first); False where it has no such call (the pages stay).
    """
    if not CAPS.fadvise:
        return False
    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    return True


def advise_random(fd: int) -> bool:
    """Ask for no readahead (``POSIX_FADV_RANDOM``); False where the OS has no such hint."""
    if not CAPS.fadvise:
        return False
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return True


def cached_pages(path) -> int | None:
    """How many pages of ``path`` are in the page cache right now (``mincore`` on a mapping).

    ``None`` where the platform cannot tell (no ``mincore``).
    """
    size = os.path.getsize(path)
    if not CAPS.mincore:
        return None
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fd = open_read(path)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap failed")
    try:
        vec = (ctypes.c_ubyte * (-(-size // mmap.PAGESIZE)))()
        if libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return sum(v & 1 for v in vec)
    finally:
        libc.munmap(addr, size)


# --------------------------------------------------------------------------- positional reads
class RangeFile:
    """Positional reads of one file, safe from many threads at once.

    With ``pread``: ``os.preadv`` (Python buffers) and libc ``pread`` (raw addresses, GIL
    released) on ``fd``. Without it (Windows): every thread gets its own handle, opened from
    ``path``, and reads with seek + readinto; with no ``path`` the threads share one handle
    under a lock (correct, one read at a time).
    """

    def __init__(self, fd: int, path=None):
        self.fd, self.path = int(fd), path
        self.positional = CAPS.pread
        self._local, self._lock, self._handles = threading.local(), threading.Lock(), []
        if self.positional:
            c = libc()
            self._pread = c.pread
            self._pread.restype = ctypes.c_ssize_t
            self._pread.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int64]

    def _handle(self):
        """This thread's handle (its own, opened from ``path``), or the one shared handle."""
        h = getattr(self._local, "h", None)
        if h is None:
            with self._lock:
                if self.path is not None:
                    h = open(self.path, "rb", buffering=0)
                    self._handles.append(h)
                else:
                    if not self._handles:
                        self._handles.append(os.fdopen(os.dup(self.fd), "rb", buffering=0))
                    h = self._handles[0]
            self._local.h = h
        return h

    def read_into(self, view, offset: int) -> int:
        """Read up to ``len(view)`` bytes at ``offset`` into the writable buffer ``view``; bytes read."""
        if self.positional:
            return os.preadv(self.fd, [view], offset)
        h, view, got = self._handle(), memoryview(view).cast("B"), 0
        shared = self.path is None
        with (self._lock if shared else contextlib.nullcontext()):
            h.seek(offset)
            while got < len(view):
                n = h.readinto(view[got:])
                if not n:
                    break
                got += n
        return got

    def read_address(self, addr: int, length: int, offset: int) -> int:
        """Read ``length`` bytes at ``offset`` to memory address ``addr``; bytes read, or ``-errno``."""
        if self.positional:
            got = self._pread(self.fd, addr, length, offset)
            return got if got >= 0 else -ctypes.get_errno()
        try:
            return self.read_into((ctypes.c_char * int(length)).from_address(int(addr)), offset)
        except OSError as err:
            return -(err.errno or errno.EIO)

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for h in handles:
            h.close()


# --------------------------------------------------------------------------- counters and machine facts
def process_read_bytes() -> int | None:
    """Bytes this process has made the kernel fetch from storage (``/proc/self/io``); None where unknown."""
    if not CAPS.proc:
        return None
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def load_average() -> float | None:
    """The 1-minute load average, recorded beside timings; None where the OS has none (Windows)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _sysctl(name: str) -> str | None:
    if CAPS.system != "Darwin":
        return None
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, ``sysctl`` on macOS, else ``platform``)."""
    if CAPS.proc:
        with contextlib.suppress(OSError):
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
    return _sysctl("machdep.cpu.brand_string") or platform.processor() or platform.machine()


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache the OS reports (``/sys``, ``sysctl``); 0 if unknown."""
    sizes = []
    if CAPS.proc:
        for f in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f) as fh:
                    txt = fh.read().strip().upper()
                mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(txt[-1], 1)
                sizes.append(int(txt.rstrip("KMG")) * mult)
    for key in ("hw.l3cachesize", "hw.perflevel0.l2cachesize", "hw.l2cachesize"):
        with contextlib.suppress(TypeError, ValueError):
            sizes.append(int(_sysctl(key)))
    return max(sizes, default=0)


def read_ahead_bytes(path, default: int = 128 << 10) -> int:
    """The kernel's readahead window for the device holding ``path`` (Linux sysfs), else ``default``."""
    if not CAPS.proc:
        return default
    st = os.stat(path)
    dev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for q in (f"{dev}/queue/read_ahead_kb", f"{dev}/../queue/read_ahead_kb"):
        try:
            with open(q) as f:
                return int(f.read()) << 10
        except (OSError, ValueError):
            continue
    return default


# --------------------------------------------------------------------------- saying what ran
def page_cache_note(how: str) -> str:
    """What an ``open_uncached`` result means for a measurement."""
    return {"O_DIRECT": "reads bypass the page cache (O_DIRECT): a disk figure",
            "F_NOCACHE": "reads are not cached (F_NOCACHE), but pages cached before may serve them",
            "buffered+drop": "buffered reads, pages dropped after each read: mostly a disk figure",
            }.get(how, "reads may come from the page cache on this platform: the figure may be memory, not disk")


def io_path(aio_kind: str, how: str) -> dict:
    """What the bench JSON records about the I/O that ran: ``aio_kind`` is ``"kernel"`` or ``"threads"``."""
    reads = "kernel AIO" if aio_kind == "kernel" else ("pread threads" if CAPS.pread else "seek+readinto threads")
    return {"platform": CAPS.system, "mode": CAPS.mode, "reads": reads, "open": how,
            "page_cache": page_cache_note(how), "uncached": how in ("O_DIRECT", "buffered+drop")}


def describe() -> list[str]:
    """One line for the platform, then one per fallback in force (for notebooks and the benchmark)."""
    c = CAPS
    lines = [f"I/O platform: {c.system} ({c.mode}); reads: "
             + ("kernel AIO" if c.kernel_aio else "pread threads" if c.pread else "seek+readinto threads")
             + "; open: " + ("O_DIRECT" if c.o_direct else "F_NOCACHE" if c.f_nocache else "buffered")]
    if not (c.o_direct or c.fadvise):
        lines.append("reads may come from the page cache on this platform (no O_DIRECT, no posix_fadvise)"
                     + (": F_NOCACHE keeps new reads out of it" if c.f_nocache else ""))
    if not c.kernel_aio:
        lines.append("no kernel AIO: reads in flight are threads, one per read")
    if not c.pread:
        lines.append("no pread: every read thread seeks and reads on its own handle")
    if not c.proc:
        lines.append("no /proc: the process's disk bytes are not counted (mmap's reads show as unknown)")
    return lines
