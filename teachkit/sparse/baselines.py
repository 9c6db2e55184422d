"""The engines the sparse engine is compared with, all behind the same ``ffn(layer, x)`` call.

* :class:`DenseRAM`: every weight in RAM, three BLAS matvecs per layer (no budget: a reference).
* :class:`DenseMmap`: llama.cpp style. The file is ``mmap``-ed and the OS pages weights in on
  demand. The budget is enforced the way a memory-limited page cache would: pages of the
  least recently used layers are dropped (``madvise``/``fadvise`` DONTNEED) once more than
  ``budget`` bytes are resident. With layers visited in a cycle, LRU keeps nothing useful.
* :class:`DenseStream`: the *tuned* dense streaming baseline. Whole layers that fit the
  budget are pinned in RAM; the others are streamed with large sequential O_DIRECT reads by
  an I/O thread into a ring of chunk buffers, overlapped with BLAS compute on the chunk
  before (FlexGen / LLM-in-a-flash "hybrid" style).
* :class:`NoCacheSparse`: predictor + sparse compute, but every active neuron is read from
  flash every token (ablation rungs "sparse from flash", and "+bundle" with a bundled file).
* :class:`LLMFlash`: LLM in a flash: predictor, row-column bundling, a *window* of the
  neurons used by the last ``window`` tokens kept in RAM, misses read then computed (no
  pipeline, no hot region). Compute uses K's fused kernel, on both cores (``parallel``) when
  that is faster on this machine, since nothing else runs during its compute.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections import OrderedDict

import numpy as np

from . import kernels as K
from .cache import LRUTable
from .flash import FlashFile
from .iobench import FlashReader, aligned_buffer

__all__ = ["DenseRAM", "DenseMmap", "DenseStream", "NoCacheSparse", "LLMFlash", "dense_bundle_ffn"]


def dense_bundle_ffn(B, x, gated: bool, out=None):
    """Dense FFN over bundles ``B`` (k, n_mats, d) (or a neuron range of them), BLAS matvecs."""
    h = B[:, 0] @ x
    h = np.maximum(h, 0.0)
    if gated:
        h *= B[:, 1] @ x
    y = h @ B[:, -1]
    if out is None:
        return y
    out += y
    return out


def _dequant(dec):
    return dec if not isinstance(dec, tuple) else dec[0].astype(np.float32) * dec[1][:, :, None]


class _Backend:
    gated: bool
    bytes_read = 0

    def end_token(self):
        return {}

    def close(self):
        pass

    def stats(self) -> dict:
        return {"bytes_read": self.bytes_read}


class DenseRAM(_Backend):
    def __init__(self, bundles: list, gated: bool):
        self.B, self.gated = bundles, gated
        self.resident_bytes = sum(b.nbytes for b in bundles)

    def __call__(self, layer, x):
        return dense_bundle_ffn(self.B[layer], x, self.gated)


class DenseMmap(_Backend):
    """``budget``: bytes of FFN pages that may stay resident (the rest of the budget is fixed weights)."""

    def __init__(self, flash_path, budget: int, gated: bool):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("DenseMmap reads a float32 bundled file")
        self.gated, self.budget = gated, int(budget)
        self.fd = os.open(self.flash.path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.mm = mmap.mmap(self.fd, 0, prot=mmap.PROT_READ)
        raw = np.frombuffer(self.mm, dtype=np.uint8, offset=self.flash.data_offset)
        self.units = raw.reshape(s.n_layers, s.n_neurons, s.stride)
        self.resident: OrderedDict[int, int] = OrderedDict()      # layer -> bytes, LRU order

    def _evict(self, layer):
        s = self.flash.spec
        off = self.flash.offset(layer, 0)
        lead = off % mmap.PAGESIZE                          # madvise wants a page-aligned start
        self.mm.madvise(mmap.MADV_DONTNEED, off - lead, s.layer_bytes + lead)
        os.posix_fadvise(self.fd, off, s.layer_bytes, os.POSIX_FADV_DONTNEED)

    def __call__(self, layer, x):
        s = self.flash.spec
        B = self.units[layer][:, :s.bundle_bytes].view(np.float32).reshape(s.n_neurons, s.n_mats, s.d)
        y = dense_bundle_ffn(B, x, self.gated)
        self.resident[layer] = s.layer_bytes
        self.resident.move_to_end(layer)
        while sum(self.resident.values()) > self.budget:
            old, _ = self.resident.popitem(last=False)
            self._evict(old)
        return y

    def close(self):
        units = self.units
        self.units = None
        del units
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


class DenseStream(_Backend):
    """Pinned layers in RAM + sequential O_DIRECT streaming of the rest, double-buffered."""

    def __init__(self, flash_path, budget: int, gated: bool, chunk_neurons: int = 256, ring: int = 3,
                 timeout: float = 30.0):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        self.gated, self.timeout, self.chunk = gated, timeout, int(chunk_neurons)
        self.ring_bytes = ring * self.chunk * s.stride
        room = budget - self.ring_bytes
        n_pin = max(0, min(s.n_layers, room // (s.n_neurons * s.n_mats * s.d * 4)))
        self.pinned = {l: _dequant(self.flash.read_layer(l)) for l in range(n_pin)}
        self.resident_bytes = sum(b.nbytes for b in self.pinned.values()) + self.ring_bytes
        self.streamed = [l for l in range(s.n_layers) if l not in self.pinned]
        self.reader = FlashReader(self.flash, self.chunk)
        self.buffers = [aligned_buffer(self.chunk * s.stride).reshape(self.chunk, s.stride) for _ in range(ring)]
        self.free: queue.Queue = queue.Queue()
        self.full: queue.Queue = queue.Queue()
        for b in self.buffers:
            self.free.put(b)
        self.stop = False
        self.thread = threading.Thread(target=self._io, daemon=True, name="stream-io")
        self.thread.start()

    def _io(self):
        s = self.flash.spec
        while not self.stop:                              # an endless cycle over the streamed layers
            for layer in self.streamed:
                for a in range(0, s.n_neurons, self.chunk):
                    buf = self.free.get()
                    if buf is None:
                        return
                    ids = np.arange(a, min(s.n_neurons, a + self.chunk), dtype=np.int64)
                    try:
                        raw = self.reader.read(layer, ids)
                        buf[:len(ids)] = raw
                        self.full.put((layer, a, len(ids), buf, None))
                    except Exception as err:  # noqa: BLE001
                        self.full.put((layer, a, 0, buf, err))
                        return

    def __call__(self, layer, x):
        if layer in self.pinned:
            return dense_bundle_ffn(self.pinned[layer], x, self.gated)
        s = self.flash.spec
        out = np.zeros(s.d, dtype=np.float32)
        done = 0
        while done < s.n_neurons:
            try:
                got_layer, a, n, buf, err = self.full.get(timeout=self.timeout)
            except queue.Empty:
                raise TimeoutError(f"streaming read stalled for {self.timeout} s") from None
            if err is not None:
                raise err
            if got_layer != layer:
                raise RuntimeError(f"stream out of order: expected layer {layer}, got {got_layer}")
            dense_bundle_ffn(_dequant(self.flash.decode(buf[:n])), x, self.gated, out)
            self.free.put(buf)
            done += n
        return out

    @property
    def bytes_read(self):
        return self.reader.bytes_read

    def close(self):
        self.stop = True
        self.free.put(None)


class NoCacheSparse(_Backend):
    """Read every predicted neuron every token (bundled: one read each; matrix: one per matrix)."""

    def __init__(self, flash_path, predictor, gated: bool, max_active: int):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        self.predictor, self.gated = predictor, gated
        self.reader = FlashReader(self.flash, max_active)
        self.bundles = np.zeros((max_active, s.n_mats, s.d), dtype=np.float32)
        self.resident_bytes = self.reader.staging.nbytes + self.bundles.nbytes

    def __call__(self, layer, x):
        s = self.flash.spec
        idx = self.predictor(layer, x)
        k = len(idx)
        if s.layout == "bundled":
            self.bundles[:k] = _dequant(self.flash.decode(self.reader.read(layer, idx)))
        else:
            for m in range(s.n_mats):
                self.bundles[:k, m] = _dequant(self.flash.decode(self.reader.read(layer, idx, mat=m)))[:, 0]
        out = np.zeros(s.d, dtype=np.float32)
        return K.sparse_ffn_bundled(self.bundles, np.arange(k, dtype=np.int64), x, out, self.gated)

    @property
    def bytes_read(self):
        return self.reader.bytes_read


class LLMFlash(_Backend):
    """Windowed neuron cache (last ``window`` tokens), bundled reads, read-then-compute."""

    def __init__(self, flash_path, predictor, gated: bool, budget: int, window: int = 5, parallel: bool = True):
        self.flash = FlashFile(flash_path, verify=False)
        s = self.flash.spec
        if s.layout != "bundled" or s.dtype != "float32":
            raise ValueError("LLMFlash reads a float32 bundled file")
        self.predictor, self.gated, self.window, self.parallel = predictor, gated, int(window), bool(parallel)
        self.reader = FlashReader(self.flash, 64)
        slots = (budget - self.reader.staging.nbytes) // (s.n_mats * s.d * 4)
        if slots <= 0:
            raise ValueError("budget too small for the LLM-in-a-flash window")
        self.table = LRUTable(int(slots), s.n_layers * s.n_neurons, "window")
        self.W = np.zeros((int(slots), s.n_mats, s.d), dtype=np.float32)
        self.resident_bytes = self.W.nbytes + self.reader.staging.nbytes
        self.token = 0
        self.hits = self.misses = 0

    def __call__(self, layer, x):
        s = self.flash.spec
        idx = self.predictor(layer, x)
        slots, miss = self.table.lookup(layer * s.n_neurons + idx, step=self.token + 1)
        self.hits += int((~miss).sum())
        self.misses += int(miss.sum())
        m_ids, m_slots = idx[miss], slots[miss]
        for a in range(0, len(m_ids), 64):                # read all misses first ...
            raw = self.reader.read(layer, m_ids[a:a + 64])
            self.W[m_slots[a:a + 64]] = self.flash.decode(raw)
        out = np.zeros(s.d, dtype=np.float32)             # ... then compute (both cores if parallel)
        return K.sparse_ffn_bundled(self.W, slots, x, out, self.gated, parallel=self.parallel)

    def end_token(self):
        """Drop neurons not used in the last ``window`` tokens (the window slides)."""
        self.token += 1
        t = self.table
        old = (t.key_of >= 0) & (t.stamp <= self.token - self.window)
        t.slot_of[t.key_of[old]] = -1
        t.key_of[old] = -1
        return {}

    @property
    def bytes_read(self):
        return self.reader.bytes_read

    def stats(self):
        n = self.hits + self.misses
        return {"bytes_read": self.bytes_read, "hit_rate": self.hits / n if n else float("nan")}
