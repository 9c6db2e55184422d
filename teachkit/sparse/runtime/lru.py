"""One LRU region as integer arrays: the slot tables and the numba lookup that updates them.

A region of the segmented cache (:mod:`teachkit.sparse.runtime.cache`) holds ``n_slots`` slots
for keys in ``[0, n_keys)``; the hot region's keys are clusters, the cold region's neurons.
Its bookkeeping lives in preallocated integer tables that numba functions update (no Python
dicts on the hot path, the lesson of LLM in a flash's 57 ms/token of memory management).

**LRU as arrays.** Slots form a doubly linked list (``prev``, ``next``) from least to most
recently used. A hit unlinks its slot and appends it at the tail; a miss takes the head. Both
are O(1). ``slot_of[key]`` maps a key (``layer * n + neuron``) to its slot, -1 if absent.
A lookup touches every hit first, then places the misses: so a miss never evicts a neuron the
same layer is about to use. If the region has fewer slots than one layer needs, the lookup
fails with a clear error instead of thrashing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["LRUTable", "lru_lookup", "INDEX"]

_HEAD, _TAIL = 0, 1
INDEX = np.dtype(np.int64)     # every bookkeeping entry: keys, slots, links, stamps, cluster maps


@njit(nogil=True, cache=True)
def _unlink(prev, nxt, ends, s):
    p, n = prev[s], nxt[s]
    if p >= 0:
        nxt[p] = n
    else:
        ends[_HEAD] = n
    if n >= 0:
        prev[n] = p
    else:
        ends[_TAIL] = p


@njit(nogil=True, cache=True)
def _append(prev, nxt, ends, s):
    t = ends[_TAIL]
    prev[s] = t
    nxt[s] = -1
    if t >= 0:
        nxt[t] = s
    else:
        ends[_HEAD] = s
    ends[_TAIL] = s


@njit(nogil=True, cache=True)
def lru_lookup(slot_of, key_of, prev, nxt, ends, stamp, keys, step, out_slot, out_miss):
    """Look up ``keys`` in one region's tables (:attr:`LRUTable.tables`, in this order); fill
    ``out_slot`` and ``out_miss``; return the number of misses, or -1.

    Hits move to the most-recently-used end; each miss evicts the least recently used slot
    (``key_of`` / ``slot_of`` updated) unless that slot was already used in this ``step``,
    which means the region is too small: then return -1 with the tables unchanged for the
    remaining keys.
    """
    n_miss = 0
    for j in range(keys.shape[0]):
        s = slot_of[keys[j]]
        if s >= 0:
            out_slot[j] = s
            out_miss[j] = False
            stamp[s] = step
            _unlink(prev, nxt, ends, s)
            _append(prev, nxt, ends, s)
        else:
            out_miss[j] = True
            n_miss += 1
    for j in range(keys.shape[0]):
        if not out_miss[j]:
            continue
        s = ends[_HEAD]
        if s < 0 or stamp[s] == step:
            return -1
        old = key_of[s]
        if old >= 0:
            slot_of[old] = -1
        key_of[s] = keys[j]
        slot_of[keys[j]] = s
        stamp[s] = step
        out_slot[j] = s
        _unlink(prev, nxt, ends, s)
        _append(prev, nxt, ends, s)
    return n_miss


class LRUTable:
    """Bookkeeping of one LRU region: ``n_slots`` slots for keys in ``[0, n_keys)``.

    Its :attr:`tables` hold one entry per key (``slot_of``), four per slot
    (``key_of``, ``prev``, ``next``, ``stamp``) and the two ``ends``; :meth:`nbytes_for` counts them.
    """

    PER_SLOT = 4                   # key_of, prev, next, stamp
    BYTES_PER_SLOT = PER_SLOT * INDEX.itemsize

    def __init__(self, n_slots: int, n_keys: int, name: str = "region"):
        if n_slots < 0 or n_keys <= 0:
            raise ValueError(f"{name}: need n_slots >= 0 and n_keys > 0, got {n_slots}, {n_keys}")
        self.name, self.n_slots = name, int(n_slots)
        self.slot_of = np.full(n_keys, -1, dtype=INDEX)
        self.key_of = np.full(self.n_slots, -1, dtype=INDEX)
        self.prev = np.arange(-1, self.n_slots - 1, dtype=INDEX)
        self.next = np.arange(1, self.n_slots + 1, dtype=INDEX)
        if self.n_slots:
            self.next[-1] = -1
        self.ends = np.array([0 if self.n_slots else -1, self.n_slots - 1], dtype=INDEX)
        self.stamp = np.full(self.n_slots, -1, dtype=INDEX)
        self.step = 0
        self.hits = self.misses = 0

    @staticmethod
    def nbytes_for(n_slots: int, n_keys: int) -> int:
        """Bytes of the tables ``LRUTable(n_slots, n_keys)`` allocates."""
        return INDEX.itemsize * (n_keys + 2) + LRUTable.BYTES_PER_SLOT * n_slots

    @property
    def tables(self) -> tuple:
        """``(slot_of, key_of, prev, next, ends, stamp)``, the order :func:`lru_lookup` takes them in."""
        return self.slot_of, self.key_of, self.prev, self.next, self.ends, self.stamp

    @property
    def nbytes(self) -> int:
        """Bytes of the tables this table holds (measured, not computed)."""
        return sum(a.nbytes for a in self.tables)

    def lookup(self, keys: np.ndarray, step: int | None = None):
        """Return ``(slots, miss_mask)`` for int64 ``keys`` (distinct); misses are given slots."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if step is None:
            self.step += 1
            step = self.step
        slots = np.empty(len(keys), dtype=np.int64)
        miss = np.empty(len(keys), dtype=np.bool_)
        n_miss = lru_lookup(*self.tables, keys, step, slots, miss)
        if n_miss < 0:
            raise ValueError(f"{self.name} region has {self.n_slots} slots but one step needs {len(keys)}: "
                             f"raise the memory budget or give this region a larger share")
        self.hits += len(keys) - n_miss
        self.misses += n_miss
        return slots, miss

    def order(self) -> np.ndarray:
        """Keys from least to most recently used (empty slots give -1), for tests and plots."""
        out, s = [], self.ends[_HEAD]
        while s >= 0:
            out.append(self.key_of[s])
            s = self.next[s]
        return np.array(out, dtype=np.int64)

    @property
    def occupied(self) -> int:
        return int((self.key_of >= 0).sum())
