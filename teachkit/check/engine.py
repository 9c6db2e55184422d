"""Exercises of notebooks 12-14: flash layout, an LRU step, a burst of reads, the pipeline makespan, the decode bound."""

from __future__ import annotations

import random

from ._core import Exercise, assert_close, matches_reference

__all__ = ["bundle_offset", "lru_step", "burst_time", "pipelined_makespan", "decode_bound"]


# --------------------------------------------------------------------------- 12: where is neuron i?
def _ref_offset(data_offset, layer, neuron, n_neurons, payload_bytes, align):
    stride = (payload_bytes + align - 1) // align * align
    return data_offset + (layer * n_neurons + neuron) * stride


def _offset_case(fn, args, want, what):
    got = fn(*args)
    if got != want:
        raise AssertionError(f"{what}: bundle_offset{args} expected {want}, got {got}")


def _offset_hand(fn):
    _offset_case(fn, (4096, 0, 0, 10, 100, 64), 4096, "neuron 0 of layer 0 starts at data_offset")
    _offset_case(fn, (4096, 0, 3, 10, 100, 64), 4096 + 3 * 128, "units are padded: stride = round_up(100, 64) = 128")
    _offset_case(fn, (4096, 0, 3, 10, 128, 64), 4096 + 3 * 128,
                 "a payload already a multiple of align needs no padding: stride = 128, not 192")
    _offset_case(fn, (4096, 2, 1, 10, 128, 64), 4096 + 21 * 128, "layer 2 starts after 2 x 10 units")


bundle_offset = Exercise(
    name="bundle_offset",
    reference=_ref_offset,
    properties=[("units are aligned: the stride is the payload rounded up to `align`", _offset_hand),
                ("it matches the file's own geometry on other shapes",
                 matches_reference(_ref_offset, lambda s: (4096 * (s + 1), s, 7 * s + 1, 50 + s, 3000 + 77 * s, 4096)))],
    wrong_answers={"forgets the padding": lambda o, l, i, n, p, a: o + (l * n + i) * p,
                   "stride off by one: (payload + align) // align * align":
                       lambda o, l, i, n, p, a: o + (l * n + i) * ((p + a) // a * a),
                   "forgets the layers before": lambda o, l, i, n, p, a: o + i * ((p + a - 1) // a * a)},
    hints=(
        'units sit one after another, layer after layer, each padded up to a multiple of `align`',
        'stride = ceil(payload / align) · align; offset = data_offset + (layer · n_neurons + neuron) · stride',
        'stride = (payload_bytes + align - 1) // align * align',
    ),
)


# --------------------------------------------------------------------------- 12: one LRU step
def _ref_lru(order, capacity, key):
    """``order``: keys from least to most recently used. Returns (new_order, hit, evicted or None)."""
    order = list(order)
    if key in order:
        order.remove(key)
        return order + [key], True, None
    evicted = order.pop(0) if len(order) >= capacity else None
    return order + [key], False, evicted


def _lru_hand(fn):
    got = fn([1, 2, 3], 3, 2)
    assert list(got[0]) == [1, 3, 2] and got[1] is True and got[2] is None, \
        f"a hit moves the key to the most-recent end: expected ([1, 3, 2], True, None), got {got}"
    got = fn([1, 2, 3], 3, 4)
    assert list(got[0]) == [2, 3, 4] and got[1] is False and got[2] == 1, \
        f"a miss in a full cache evicts the least recently used: expected ([2, 3, 4], False, 1), got {got}"
    got = fn([1, 2], 3, 4)
    assert list(got[0]) == [1, 2, 4] and got[2] is None, f"a miss with room evicts nothing, got {got}"


def _lru_replay(fn):
    rng = random.Random(0)
    a = b = []
    for _ in range(200):
        k = rng.randrange(8)
        ra, rb = _ref_lru(a, 4, k), fn(list(b), 4, k)
        assert (list(rb[0]), bool(rb[1]), rb[2]) == (ra[0], ra[1], ra[2]), \
            f"after a replay of random keys: expected {ra}, got {rb}"
        a, b = ra[0], list(rb[0])


def _lru_no_mutation(fn):
    for order, key in (([1, 2, 3], 2), ([1, 2, 3], 4), ([1, 2], 4)):
        before = list(order)
        fn(order, 3, key)
        assert order == before, (f"lru_step({before}, 3, {key}) changed its input list to {order}: "
                                 "copy it (new = list(order)) and return the copy")


def _wrong_fifo(order, capacity, key):      # a hit does not refresh: FIFO, not LRU
    order = list(order)
    if key in order:
        return order, True, None
    evicted = order.pop(0) if len(order) >= capacity else None
    return order + [key], False, evicted


def _wrong_in_place(order, capacity, key):   # right answers, but the caller's list is changed
    if key in order:
        order.remove(key)
        order.append(key)
        return order, True, None
    evicted = order.pop(0) if len(order) >= capacity else None
    order.append(key)
    return order, False, evicted


def _wrong_mru(order, capacity, key):       # evicts the most recent
    order = list(order)
    if key in order:
        order.remove(key)
        return order + [key], True, None
    evicted = order.pop() if len(order) >= capacity else None
    return order + [key], False, evicted


lru_step = Exercise(
    name="lru_step",
    reference=_ref_lru,
    properties=[("a hit moves the key to the end; a miss in a full cache evicts the front", _lru_hand),
                ("it agrees with the reference over a replay of 200 random keys", _lru_replay),
                ("it does not mutate its input list (it returns a new one)", _lru_no_mutation)],
    wrong_answers={"FIFO: a hit does not refresh the key": _wrong_fifo,
                   "mutates the caller's list": _wrong_in_place,
                   "evicts the most recently used key": _wrong_mru},
    hints=(
        'order runs from least to most recently used; a hit moves the key to the end, a miss in a full cache evicts the front; return a new list',
        'hit: order − key + [key]; miss: (order[1:] if full else order) + [key], evicted = order[0] if full',
        'new = list(order); if key in new: new.remove(key); new.append(key); return new, True, None; else pop(0) when len(new) >= capacity',
    ),
)


# --------------------------------------------------------------------------- 12: a burst of reads
def _ref_burst(k, queue_depth, read_s):
    """``k`` reads submitted at once, at most ``queue_depth`` in flight, each taking ``read_s``.

    They go in waves of ``queue_depth``: the last lands after ceil(k / queue_depth) reads' time.
    """
    if k <= 0:
        return 0.0
    return -(-k // queue_depth) * read_s


def _burst_hand(fn):
    assert_close(fn(1, 8, 1e-4), 1e-4, "one read: its own latency")
    assert_close(fn(8, 8, 1e-4), 1e-4, "8 reads, 8 in flight: one wave")
    assert_close(fn(9, 8, 1e-4), 2e-4, "9 reads, 8 in flight: the 9th waits for a free slot (a second wave)")
    assert_close(fn(48, 1, 5e-5), 48 * 5e-5, "one read in flight: one after the other")
    assert_close(fn(0, 4, 1e-4), 0.0, "no reads, no time")


burst_time = Exercise(
    name="burst_time",
    reference=_ref_burst,
    properties=[("hand-checked cases: one wave, a partial second wave, queue depth 1, no reads", _burst_hand),
                ("it matches the reference on other bursts",
                 matches_reference(_ref_burst, lambda s: (3 + 11 * s, 1 + s % 5 * 4, 4e-5 + s * 1e-5)))],
    wrong_answers={"serial: k reads one after the other": lambda k, q, t: k * t,
                   "no partial wave: k / queue_depth": lambda k, q, t: k / q * t,
                   "all at once, whatever the queue depth": lambda k, q, t: t if k else 0.0},
    hints=(
        'at most queue_depth reads are in flight, so the reads land in waves',
        'time = ceil(k / queue_depth) · read_s (0 for no reads)',
        '-(-k // queue_depth) * read_s if k > 0 else 0.0',
    ),
)


# --------------------------------------------------------------------------- 13: the pipeline's makespan
def _ref_makespan(read_ms, compute_ms):
    """One I/O lane, one compute lane; cluster i computes after its read and after cluster i-1."""
    io_end = comp_end = 0.0
    for r, c in zip(read_ms, compute_ms):
        io_end += r
        comp_end = max(comp_end, io_end) + c
    return comp_end


def _makespan_hand(fn):
    assert_close(fn([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), 4.0, "3 clusters, 1 ms read + 1 ms compute each")
    assert_close(fn([0.0, 0.0], [2.0, 3.0]), 5.0, "clusters already in memory: compute only")
    assert_close(fn([3.0, 3.0], [1.0, 1.0]), 7.0, "I/O-bound: the last compute waits for the last read")
    assert_close(fn([1.0, 5.0, 1.0, 1.0], [1.0, 5.0, 1.0, 1.0]), 13.0,
                 "a slow read in the middle stalls compute, and its long compute then delays the rest: 1+5+5+1+1")


makespan_inputs = lambda s: ([0.5 + (s * 7 + k * 3) % 5 * 0.3 for k in range(6)],  # noqa: E731
                             [0.2 + (s * 5 + k * 2) % 4 * 0.4 for k in range(6)])

pipelined_makespan = Exercise(
    name="pipelined_makespan",
    reference=_ref_makespan,
    properties=[("hand-checked cases: overlap, compute-only, I/O-bound", _makespan_hand),
                ("it matches the reference on other read/compute times", matches_reference(_ref_makespan, makespan_inputs))],
    wrong_answers={"no overlap (serial)": lambda r, c: float(sum(r) + sum(c)),
                   "perfect overlap (max of the sums)": lambda r, c: float(max(sum(r), sum(c))),
                   "two-bottleneck shortcut": lambda r, c: float(max(sum(r) + c[-1], r[0] + sum(c)))},
    hints=(
        "one I/O lane and one compute lane: a cluster computes once its read has landed and the previous cluster's compute is done",
        'io_end_i = io_end_{i−1} + read_i;  comp_end_i = max(comp_end_{i−1}, io_end_i) + compute_i',
        'io = comp = 0.0; for r, c in zip(read_ms, compute_ms): io += r; comp = max(comp, io) + c; return comp',
    ),
)


# --------------------------------------------------------------------------- 14: the decode bound
def _ref_bound(ram_bytes, miss_bytes, bw_mem, bw_io):
    """tok/s <= 1 / max(t_mem, t_io): missed bytes are read from disk *and* then from RAM."""
    t_mem = (ram_bytes + miss_bytes) / bw_mem
    t_io = miss_bytes / bw_io
    return 1.0 / max(t_mem, t_io)


def _bound_max_not_min(fn):
    # t_mem = 110 MB / 20 GB/s = 5.5 ms, t_io = 10 MB / 1 GB/s = 10 ms: the slower lane sets the pace
    got = fn(100e6, 10e6, 20e9, 1e9)
    want, with_min = 1 / 10e-3, 1 / 5.5e-3
    if abs(got - with_min) < 1e-6 * with_min:
        raise AssertionError(f"t_mem = 5.5 ms, t_io = 10 ms: expected {want:.6g} tok/s = 1/max(t_mem, t_io), got "
                             f"{got:.6g} = 1/min(t_mem, t_io): the slower of the two lanes sets the pace, so take max")
    assert_close(got, want, "t_mem = 5.5 ms and t_io = 10 ms (tok/s)")


def _bound_hand(fn):
    assert_close(fn(100e6, 0.0, 20e9, 1e9), 200.0, "no misses: 100 MB at 20 GB/s")
    assert_close(fn(100e6, 10e6, 20e9, 0.2e9), 20.0, "10 MB of misses at 0.2 GB/s dominate")
    assert_close(fn(190e6, 10e6, 20e9, 2e9), 100.0, "missed bytes also cross RAM: (190+10) MB at 20 GB/s")


decode_bound = Exercise(
    name="decode_bound",
    reference=_ref_bound,
    properties=[("the slower lane sets the pace: 1/max(t_mem, t_io), not min", _bound_max_not_min),
                ("hand-checked cases: RAM-bound, I/O-bound, misses counted in RAM traffic", _bound_hand),
                ("it matches the reference elsewhere",
                 matches_reference(_ref_bound, lambda s: (50e6 * (s + 1), 3e6 * (s + 2), 10e9 + s * 5e9, 0.3e9 + s * 0.2e9)))],
    wrong_answers={"no overlap: 1/(t_mem + t_io)": lambda r, m, bm, bi: 1.0 / ((r + m) / bm + m / bi),
                   "min instead of max: 1/min(t_mem, t_io)": lambda r, m, bm, bi: 1.0 / min((r + m) / bm, m / bi),
                   "forgets misses in RAM traffic": lambda r, m, bm, bi: 1.0 / max(r / bm, m / bi)},
    hints=(
        'memory traffic and flash reads overlap, so the slower of the two sets the pace; missed bytes cross RAM too',
        't_mem = (ram_bytes + miss_bytes) / bw_mem, t_io = miss_bytes / bw_io, tok/s = 1 / max(t_mem, t_io)',
        'return 1.0 / max((ram_bytes + miss_bytes) / bw_mem, miss_bytes / bw_io)',
    ),
)
