"""Exercises of notebooks 12-14: flash layout, an LRU step, a burst of reads, the pipeline makespan, the hit rate the decode bound needs."""

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


# --------------------------------------------------------------------------- 14: the decode bound, read backwards
def _ref_bound(fixed_bytes, active_bytes, bw_mem, bw_io, target_tok_s):
    """Smallest hit rate h in [0, 1] at which 1 / max(t_mem, t_io) reaches the target; None if none does.

    t_io = A (1 - h) / bw_io and t_mem = (F + A + A (1 - h)) / bw_mem (missed bytes cross RAM
    once more); each must fit in T = 1 / target, so h is the larger of the two requirements.
    """
    T = 1.0 / target_tok_s
    h_io = 1.0 - T * bw_io / active_bytes
    h_mem = 2.0 - (T * bw_mem - fixed_bytes) / active_bytes
    h = max(0.0, h_io, h_mem)
    return None if h > 1.0 else h


def _bound_case(fn, args, want, what):
    got = fn(*args)
    if want is None or got is None:
        if got is not want:
            raise AssertionError(f"{what}: expected {want}, got {got}")
        return
    assert_close(got, want, what)


def _bound_max_not_min(fn):
    # F = 60 MB, A = 20 MB, 20 GB/s RAM, 1 GB/s flash, 200 tok/s (5 ms): RAM needs h >= 0, the reads h >= 0.75
    got = fn(60e6, 20e6, 20e9, 1e9, 200.0)
    if got is not None and abs(got) < 1e-9:
        raise AssertionError("F = 60 MB, A = 20 MB, 20 GB/s RAM, 1 GB/s flash, 200 tok/s: expected 0.75, got 0: at "
                             "h = 0 the memory traffic fits in 5 ms but 20 MB of reads at 1 GB/s take 20 ms. 0 "
                             "satisfies one lane only, a min of the two requirements as in 1/min(t_mem, t_io); a "
                             "token waits for the slower lane, 1/max(t_mem, t_io), so take the max")
    _bound_case(fn, (60e6, 20e6, 20e9, 1e9, 200.0), 0.75, "I/O-bound case: 20 MB (1 - h) at 1 GB/s in 5 ms")


def _bound_ram(fn):
    # F = 90 MB, A = 20 MB, 25 GB/s RAM, 4 GB/s flash, 200 tok/s: the reads need h >= 0, RAM h >= 0.25
    got = fn(90e6, 20e6, 25e9, 4e9, 200.0)
    if got is not None and abs(got) < 1e-9:
        raise AssertionError("F = 90 MB, A = 20 MB, 25 GB/s RAM, 4 GB/s flash, 200 tok/s: expected 0.25, got 0: at "
                             "h = 0 the memory traffic is (90 + 20 + 20) MB / 25 GB/s = 5.2 ms > 5 ms: the missed "
                             "bytes cross RAM once more after they land")
    _bound_case(fn, (90e6, 20e6, 25e9, 4e9, 200.0), 0.25, "memory-bound case: RAM carries (90 + 20 + 20 (1 - h)) MB")


def _bound_edges(fn):
    _bound_case(fn, (10e6, 20e6, 20e9, 1e9, 10.0), 0.0, "an easy target needs no hits: 0, not a negative hit rate")
    _bound_case(fn, (120e6, 20e6, 25e9, 4e9, 200.0), None,
                "even at h = 1 RAM needs 140 MB / 25 GB/s = 5.6 ms > 5 ms: unreachable, return None")
    _bound_case(fn, (100e6, 20e6, 20e9, 2e9, 100.0), 0.0,
                "missed bytes cross RAM too: at h = 0, (100 + 20 + 20) MB / 20 GB/s = 7 ms and 10 ms of reads fit")


decode_bound = Exercise(
    name="decode_bound",
    reference=_ref_bound,
    properties=[("both lanes must fit: the slower sets the pace, 1/max(t_mem, t_io), so take the max of the two "
                 "requirements, not the min", _bound_max_not_min),
                ("the missed bytes cross RAM too: the memory lane can set the hit rate", _bound_ram),
                ("the edges: 0 when no hits are needed, None when even h = 1 is too slow", _bound_edges),
                ("it matches the reference elsewhere",
                 matches_reference(_ref_bound, lambda s: (30e6 * (s + 1), 15e6 * (s + 1), 20e9 + s * 5e9,
                                                          1e9 + s * 0.5e9, 60.0 + 20 * s)))],
    wrong_answers={
        "min instead of max: satisfies one lane only":
            lambda F, A, bm, bi, g: (lambda h: None if h > 1 else h)(
                max(0.0, min(1 - bi / (g * A), 2 - (bm / g - F) / A))),
        "forgets misses in RAM traffic":
            lambda F, A, bm, bi, g: None if (F + A) / bm > 1 / g else max(0.0, 1 - bi / (g * A)),
        "no clamp at 0": lambda F, A, bm, bi, g: (lambda h: None if h > 1 else h)(max(1 - bi / (g * A), 2 - (bm / g - F) / A)),
        "no overlap: t_mem + t_io <= 1/target":
            lambda F, A, bm, bi, g: (lambda h: None if h > 1 else max(0.0, h))(
                1 - (1 / g - (F + A) / bm) / (A * (1 / bm + 1 / bi))),
    },
    hints=(
        "a token takes max(t_mem, t_io) and both fall as h grows: find the hit rate at which each lane fits in "
        "1/target, then the one both fit at; the missed bytes cross RAM too, and h = 1 is the best there is",
        "T = 1/target; t_io = A (1 - h) / bw_io <= T gives h >= 1 - T bw_io / A; t_mem = (F + A + A (1 - h)) / bw_mem "
        "<= T gives h >= 2 - (T bw_mem - F) / A; h = max(0, both), None if h > 1",
        "T = 1 / target_tok_s; h = max(0.0, 1 - T * bw_io / active_bytes, "
        "2 - (T * bw_mem - fixed_bytes) / active_bytes); return None if h > 1 else h",
    ),
)
