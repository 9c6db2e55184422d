# %% [markdown] slideshow={"slide_type": "slide"}
# # 12 · Weights on flash, and the segmented neuron cache
#
# Notebooks 10 and 11 kept every weight in RAM. PowerInfer-2 (Xue et al., arXiv:2406.06282v1)
# runs models whose FFN weights do **not** fit the memory budget: the FFN lives on flash (here:
# the disk), and only what the current tokens need is brought into RAM. Three questions decide whether that can be fast:
#
# 1. **How are the weights laid out on flash?** One active neuron should cost one read.
# 2. **How fast can this machine read?** Small random reads are slow; bigger ones, and more of
#    them in flight, are faster. We measure it, with the page cache kept out of the way.
# 3. **What do we keep in RAM?** A *segmented cache*: a fixed region (attention, embeddings,
#    predictors), a hot region of neuron clusters and a cold region of single neurons (the
#    last two each with its own LRU), all in preallocated numpy arrays. (PowerInfer-2's neuron
#    cache has the same three regions, its fixed one holding attention weights and the KV
#    cache: Xue et al., arXiv:2406.06282v3, §4.2.)
#
# The FFN layers here are **SYNTHETIC** (random weights with controlled statistics, from
# `teachkit.sparse.model.synthetic`). Files go to a temporary directory and are deleted at the end.

# %%
import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from teachkit import check, viz
from teachkit.sparse.compute.bundles import quantize_int8
from teachkit.sparse.runtime.cache import simulate_hit_rate
from teachkit.sparse.runtime.lru import LRUTable
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN
from teachkit.sparse.flash.format import FlashFile, FlashFormatError, FlashSpec, write_flash
from teachkit.sparse.flash import platform_io
from teachkit.sparse.flash.aio import kernel_aio_available
from teachkit.sparse.flash.reader import FlashReader, drop_cache
from teachkit.sparse.planner.io_profile import burst_profile, interpolate_bw, profile_reads
from teachkit.sparse.flash.platform_io import cached_pages
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack

workdir = Path(tempfile.mkdtemp(prefix="nb12_"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The flash file: neuron-major bundles, aligned, with a header
#
# Neuron *i* of a gated FFN needs row *i* of `gate` and `up` and column *i* of `down`. Stored
# matrix by matrix (as in a llama.cpp file), that is **three** reads far apart. Stored
# **neuron-major**, the three rows sit together in one *bundle* `[gate_i | up_i | down_i]`:
# **one** read. Each bundle starts at a multiple of `align` bytes (4 KiB here), because the
# fastest way to bypass the page cache (the operating system's copy, in RAM, of recently read
# file data: a read served from it would measure RAM, not the disk), `O_DIRECT`, only reads
# aligned blocks.
#
# The header holds a magic number, the format version, the shapes, dtype and layout, and a
# crc32 checksum of every layer, so a damaged or foreign file is refused with a clear message.

# %%
# NBVAL_CHECK_OUTPUT
stack = SyntheticStack(SyntheticConfig(d=256, d_ff=1024, n_layers=2, activity=0.1, rank=16, seed=0))
spec = FlashSpec(n_layers=2, n_neurons=1024, n_mats=3, d=256, dtype="float32", layout="bundled", align=4096)
path = write_flash(workdir / "ffn.bin", spec, stack.bundles)
f = FlashFile(path, expect=spec)
print(f)
print(f"payload {spec.payload_bytes()} B per bundle, stride {spec.stride} B, data starts at {f.data_offset}")
print("offsets of neurons 0..3 of layer 1:", [f.offset(1, i) for i in range(4)])
print("file size:", os.path.getsize(path), "=", f.data_offset, "+ 2 x 1024 x", spec.stride)

# %%
# NBVAL_CHECK_OUTPUT
with open(path, "rb") as fh:
    raw = fh.read(4096)
head = json.loads(raw[20:20 + int.from_bytes(raw[12:16], "little")])
print("magic:", raw[:8], " version:", int.from_bytes(raw[8:12], "little"))
print({k: head[k] for k in ("n_layers", "n_neurons", "n_mats", "d", "dtype", "layout", "align", "stride")})
whole = path.read_bytes()
layer_bytes = [whole[f.offset(l, 0):f.offset(l, 0) + spec.n_neurons * spec.stride] for l in range(spec.n_layers)]
# the values themselves hang on the last bits of the float weights, so we print what they must match
print(f"crc32 per layer: {len(head['layer_crc32'])} values, equal to zlib.crc32 of each layer's bytes:",
      head["layer_crc32"] == [zlib.crc32(b) for b in layer_bytes])

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### A damaged or foreign file is refused, with a reason
#
# Three ways a weight file goes wrong: it is cut short (an interrupted copy), a byte flips
# (a bad disk), or it belongs to another model. Each gives a different, clear error.

# %%
# NBVAL_CHECK_OUTPUT
def why(fn):
    try:
        fn()
        return "accepted"
    except FlashFormatError as err:
        return str(err).split(": ", 1)[1]            # drop the temporary path


bad = workdir / "bad.bin"
bad.write_bytes(path.read_bytes()[:-5000])
print("truncated:  ", why(lambda: FlashFile(bad)))
data = bytearray(path.read_bytes())
data[f.offset(1, 500) + 7] ^= 0x40
bad.write_bytes(bytes(data))
print("bit flip:   ", why(lambda: FlashFile(bad)))
print("other model:", why(lambda: FlashFile(path, expect={"d": 512})))
drop_cache(path)             # reading the file to damage a copy put it in the page cache: drop it

# %% [markdown]
# int8 bundles store one float32 scale per row (scales first, then the int8 rows): the
# *payload* is about 4x smaller. Whether the *read* is smaller depends on the alignment: here
# (d = 256) both payloads fit in one 4 KiB unit, so both strides are 4096 B and int8 saves
# nothing on flash. At a real model's width (d = 4096) the payloads span many pages: the int8
# payload is almost exactly 4x smaller, but its 12 bytes of scales push it just past three
# 4 KiB pages, so it is read as four pages instead of the fp32 bundle's twelve: 3x fewer bytes
# (4x if the scales were stored apart). Both dtypes go through the same format.

# %%
# NBVAL_CHECK_OUTPUT
spec8 = FlashSpec(2, 1024, 3, 256, dtype="int8", align=4096)
path8 = write_flash(workdir / "ffn_int8.bin", spec8, [quantize_int8(b) for b in stack.bundles])
q, s = FlashFile(path8).read_layer(0)
for d in (256, 4096):
    a, b = FlashSpec(1, 1, 3, d), FlashSpec(1, 1, 3, d, dtype="int8")
    print(f"d = {d:4d}: fp32 payload {a.payload_bytes():5d} B, stride {a.stride:5d} B | "
          f"int8 payload {b.payload_bytes():5d} B, stride {b.stride:5d} B | bytes read: {a.stride / b.stride:.2f}x fewer")
# symmetric rounding: every weight is within half a step of its own row's scale
err = np.abs(q * s[:, :, None] - stack.bundles[0])
print("every row within scale/2 of the fp32 weights:", bool(np.all(err <= 0.5 * s[:, :, None] * (1 + 1e-5))))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Reading neurons: `pread` into an aligned buffer
#
# `FlashReader` opens the file with `O_DIRECT` (when the alignment allows it) and reads into a
# page-aligned staging buffer. Neighbouring neurons are read with **one** `preadv` (a *run*).
# Every short read raises `FlashReadError`: a reader never hands back half a neuron.

# %%
# NBVAL_CHECK_OUTPUT
ids = np.array([3, 4, 5, 6, 100, 731], dtype=np.int64)
with FlashReader(f, max_units=16) as reader:
    got = f.decode(reader.read(1, ids))
    direct, how = reader.direct, reader.how
    print("neurons read:", len(ids), "| read calls:", reader.n_reads, "| bytes:", reader.bytes_read)
print("identical to the weights in RAM:", np.array_equal(got, stack.bundles[1][ids]))

# %% [markdown]
# Did the reads bypass the page cache? `O_DIRECT` works on most disk filesystems; tmpfs (a
# RAM disk) refuses it, and the reader then falls back to buffered reads followed by
# `posix_fadvise(DONTNEED)` on whole pages. `cached_pages` asks the kernel (`mincore`) how many
# pages of the file sit in the page cache: it should be 0 after the writer, the checksum pass
# and the reads (on tmpfs the file *is* in memory, so the question does not apply).
#
# `O_DIRECT`, `posix_fadvise` and kernel AIO are Linux calls. On a Mac the reader opens the file
# with `F_NOCACHE` instead, on Windows with a plain open, and `teachkit.sparse.flash.platform_io`
# says which fallbacks are in force: where reads may come from the page cache, the
# measurements below may be memory speed, not disk speed, and the lines printed here say so.

# %%
for line in platform_io.describe():
    print(line)
print("O_DIRECT on this filesystem:", direct, "| the reader opened the file with:", how)
pages = cached_pages(path)
print("pages of the file in the page cache:", "unknown on this platform" if pages is None else pages)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. How fast does this machine read?
#
# PowerInfer-2's offline planner starts by **measuring** the device, among other things the
# storage's read performance for different read sizes (Xue et al., arXiv:2406.06282v3, §5). We
# measure random-read bandwidth against the read size and the number of reads in flight (queue
# depth), on a 64 MiB scratch file with `O_DIRECT` (so every read reaches the device). The
# numbers are this machine's and change from run to run; the *shape* is the lesson: small
# random reads are limited by the number of operations per second, so bandwidth grows with the
# read size, and with reads in flight until the device is saturated.

# %%
# warm-up: the first reads of a run pay one-off costs (setting up the kernel AIO context, a disk or
# a VM's virtual disk waking up). Measured cold, the 4 KiB row, which comes first, can take many
# times longer per read than the 16 KiB one. A small throw-away profile takes those costs.
profile_reads(sizes=(4096,), qds=(1,), n_reads=8, file_bytes=4 << 20, directory=workdir)
io = profile_reads(sizes=(4096, 16384, 65536, 262144, 1 << 20), qds=(1, 4), n_reads=24,
                   file_bytes=64 << 20, directory=workdir)
for size, row in io["random"].items():
    print(f"{size // 1024:5d} KiB: " + "  ".join(f"QD{q}: {v / 1e6:7.1f} MB/s" for q, v in row.items())
          + f"  | one read at a time (QD1): {size / row[1] * 1e6:6.0f} us per read")
print(f"sequential 1 MiB: {io['sequential'] / 1e6:.0f} MB/s   (O_DIRECT used: {io['direct']})")
print("what these figures are:", io["page_cache"])
viz.plot_io_profile(io)

# %% [markdown]
# Two things to notice. Large random reads can come close to, or even beat, the "sequential"
# figure. Part of the reason is the queue depth: the sequential figure is measured with a
# single 1 MiB read in flight (QD 1), while QD 4 keeps four requests busy. Where even the QD 1
# random reads of the same size beat it (compare the 1024 KiB row), the queue depth cannot be
# the reason, and this notebook does not measure what is: the device, or the host behind a
# virtual disk, may read ahead, stripe or cache in ways we cannot see from here, and one short
# measurement swings from run to run. Do not read much into the order of those two figures; the
# lesson is the shape: "random is slow" is a statement about *small* reads.
#
# The last column says why: up to tens of KiB, a read's time is mostly a fixed cost per read. A
# 64 KiB read moves 16 times the bytes of a 4 KiB one in far less than 16 times the time
# (asserted below: less than 8 times), so the small read moves far fewer bytes per second.

# %%
bw = io["random"]
assert bw[262144][1] > bw[4096][1], "bigger reads should move more bytes per second"
print("a 256 KiB read moves more bytes/s than a 4 KiB read:", bw[262144][1] > bw[4096][1])
one_bundle = 49152 / interpolate_bw(io, 49152, 1)             # gate|up|down of d = 4096, fp32
three_rows = 3 * 16384 / interpolate_bw(io, 16384, 1)         # the same rows, one read each
print(f"one 48 KiB bundle read: {one_bundle * 1e6:.0f} us; three 16 KiB row reads: {three_rows * 1e6:.0f} us")
# the three row reads are timed one after another (QD 1 each), as a reader that waits for each makes them
print(f"so the bundled layout saves {(three_rows - one_bundle) * 1e6:.0f} us per neuron read this way "
      f"({three_rows / one_bundle:.1f}x less time)")
t_read = {size: size / row[1] for size, row in bw.items()}          # seconds per read, QD 1
assert one_bundle < three_rows and t_read[65536] < 8 * t_read[4096]

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Many reads in flight, from one thread
#
# Why does bandwidth grow with the queue depth? **Little's law**: reads per second = reads in
# flight / time per read. The time of one 16 KiB read at a time, and the cap it puts on reads
# per second, are printed below the next measurement: one read at a time cannot go faster than
# that, whatever the disk could do in parallel. With blocking `pread` each read in flight needs its own thread, and every thread
# wakes up and takes Python's GIL for its own result. Linux's **kernel AIO**
# (`io_submit` / `io_getevents`, wrapped in `teachkit.sparse.flash.aio`) takes a whole batch in one
# system call from one thread, which later collects the completions with a second call
# (`io_getevents`): that is what
# `profile_reads` used above, and what the engine uses. The same measurement both ways:

# %%
methods = ("threads", "kernel") if kernel_aio_available() else ("threads",)
both = {m: profile_reads(sizes=(16384,), qds=(1, 16), n_reads=24, file_bytes=64 << 20, directory=workdir,
                         method=m)["random"][16384] for m in methods}
for m, row in both.items():
    print(f"16 KiB random reads with {m:7s}: " + "  ".join(f"QD{q}: {v / 1e6:6.0f} MB/s" for q, v in row.items()))
best_qd1 = max(row[1] for row in both.values())
print(f"this machine: {os.cpu_count()} CPU cores (os.cpu_count()) for the 16 pread threads")
print(f"one 16 KiB read at a time: {16384 / best_qd1 * 1e6:.0f} us each, so at most {best_qd1 / 16384:,.0f} reads/s")
if len(both) == 2:
    per_read = {m: 16384 / both[m][1] * 1e6 for m in methods}
    print(f"QD 1, per read: {per_read['threads']:.0f} us with a pread thread, {per_read['kernel']:.0f} us with "
          f"kernel AIO: a difference of {per_read['threads'] - per_read['kernel']:+.0f} us")
    for q, who in ((16, "16 pread threads"), (1, "one pread thread")):
        ratio = both["kernel"][q] / both["threads"][q]
        print(f"QD {q:2d}: kernel AIO moves {ratio:.1f}x the bytes of {who}: "
              f"{'kernel AIO' if ratio > 1 else 'the pread threads'} faster here")

# %% [markdown]
# Compare the rows. With 16 in flight, kernel AIO moved more bytes than 16 `pread` threads
# on the course VM (the ratio is printed above): every thread wakes up for its own result and
# needs the GIL, so the 16 threads take turns, and where they outnumber the cores (the count is
# printed above) they also wait for a core. At QD 1 there is
# nothing to batch, and the second ratio can land on either side of 1 (below 1: the one
# `pread` thread was faster): kernel AIO pays two system calls per read (submit, then
# collect), the thread version a hand-over to another thread and back. Where the QD 1 ratio is
# well above 1, that hand-over is the likely reason: waking a sleeping thread, and waking the
# caller again when the result is back, costs tens of µs, of the same order as one 16 KiB read
# here (compare the per-read difference printed above with the time of one read). These
# are one run's figures on one machine, so the cell prints them rather than asserting them: a
# disk that serves reads slowly enough hides the threads' overhead. (Where the kernel lacks
# AIO, only the threads row is printed.)

# %% [markdown]
# **Bursts.** A decoding engine cannot keep the queue full all the time: a layer's missing
# neurons are known only after its predictor has run, so they go out together and the layer
# waits for the slowest one. `burst_profile` times exactly that: `k` reads submitted at once,
# until the last is back. A straight line `a + b·k` fits it. `a` is the line's intercept: a
# burst's fixed cost, what every burst pays whatever its size (submitting, waking up, the wait
# for the first completion). It is not the time of a lone read: the line is fitted to bursts of 4
# reads and more, and a burst of one costs `a + b` on it. `b` is the time each extra read adds
# (about 1/IOPS). Notebook 14's planner uses both.

# %%
burst = burst_profile(16384, ks=(4, 16, 64), repeats=9, file_bytes=64 << 20, directory=workdir)
for k, t, t1 in zip(burst["k"], burst["seconds"], burst["first_seconds"]):
    print(f"{k:3d} reads at once: {t * 1e3:5.2f} ms  ({k / t / 1e3:5.1f} k reads/s); "
          f"the first was back after {t1 * 1e3:5.2f} ms = {t1 / t:4.2f} of the burst")
print(f"fit: a = {burst['a'] * 1e6:.0f} us (a burst's fixed cost, the intercept), b = {burst['b'] * 1e6:.1f} us "
      f"per extra read; a lone 16 KiB read, measured above: {16384 / best_qd1 * 1e6:.0f} us")
first_share = [t1 / t for t, t1 in zip(burst["seconds"], burst["first_seconds"])]
for k, sh in zip(burst["k"], first_share):
    print(f"burst of {k:2d}: first read back after {sh:.2f} of the burst: "
          + ("nearly all at once" if sh > 0.9 else "the first reads landed early"))

# %% [markdown]
# The last column says *when* a burst's reads come back. A phone's UFS (Universal Flash
# Storage, the phone's built-in flash) has a single command queue (Xue et al.,
# arXiv:2406.06282v3, §2.3.2), so its reads are served in turn and should
# come back one after another: the first after about 1/k of the burst, so a pipeline can
# compute the first cluster that lands while the rest are still on their way. Read the shares
# per burst size (the last lines above). A share near 1 means the disk handed that burst back
# nearly all at once; a share well below 1 means its first reads landed early, as when a large
# burst comes back in two or more waves. The stored outputs are one run on the course VM's
# virtual disk; your disk prints its own. Where the share is near
# 1, the only work that can hide under a burst is the work already in memory; nothing "lands
# early". Keep these shares in mind in notebooks 13 and 14: they are one reason the cluster
# pipeline gains less here than on the phones PowerInfer-2 was built for (notebook 13 models
# both cases).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. LRU in arrays
#
# The cache keeps what was used most recently. A Python `OrderedDict` would do, but the
# engine's bookkeeping runs thousands of times per token, so it lives in numpy arrays that a
# numba function updates: `slot_of[key]` (-1 if absent), `key_of[slot]`, and a doubly linked
# list `prev`/`next` from least to most recently used. A hit moves its slot to the end; a miss
# takes the slot at the front.

# %%
# NBVAL_CHECK_OUTPUT
t = LRUTable(n_slots=3, n_keys=10)
for keys in ([1, 2, 3], [1], [4], [2, 5]):
    slots, miss = t.lookup(np.array(keys))
    print(f"lookup {keys}: misses {np.array(keys)[miss].tolist()}, order (LRU -> MRU) {t.order().tolist()}")
print("slot_of:", t.slot_of.tolist())
lru_before = t.order().tolist()
slots, miss = t.lookup(np.array([6, 4]))       # 4 is the least recently used key, and a hit
print(f"lookup [6, 4] on {lru_before}: misses {np.array([6, 4])[miss].tolist()}, "
      f"order (LRU -> MRU) {t.order().tolist()}: {lru_before[1]} evicted, {lru_before[0]} kept")
assert lru_before[0] == 4 and miss.tolist() == [True, False]
assert t.slot_of[4] >= 0 and t.slot_of[lru_before[1]] == -1 and t.order().tolist()[-2:] == [4, 6]

# %% [markdown]
# The last lookup asks for 2 and 5 together. 2 had been evicted by 4, so both miss, and both
# need a slot: the two least recently used (3, then 1) go. Within one lookup, a hit is touched
# first, so a miss can never evict a neuron the same layer is about to use. The lookup after it
# shows this: it asks for 6 and 4, and 4 is then the least recently used key, the one a miss
# would take. But 4 is a hit, so it moves to the most recent end before 6 is placed, and 6
# evicts 2, the next in line (printed and asserted).
#
# ## 5. The segmented cache on a real decode
#
# `SparseFFN` is the decode FFN of the engine: predictor, then cache, then the pipeline of
# notebook 13. For each token and layer, the predictor names the active neurons, the cache says
# which of them are in RAM, and the pipeline reads the missing ones from the flash file (one
# burst per layer, into cache slots) and computes the FFN output as they land; notebook 13 is
# about how it overlaps the reads with the compute. Here it only has to be correct and count the
# bytes it reads. Its budget covers **everything** it holds: the fixed region, the predictor, the
# hot and cold regions, their LRU tables, the I/O and prefill buffers (and the model's KV
# cache, in notebook 14). It is checked once, at construction: the arrays never grow.
#
# Two settings below size the prefill buffers: a prompt is run densely (notebook 10), reading
# each layer front to back in runs of `prefill_chunk` neurons, for up to `max_prompt` prompt
# tokens. This demo decodes only, so those buffers are never used, but they are allocated and
# counted against the budget, so we keep them small.
#
# The hot region holds the most frequently firing neurons in clusters of 32, with a
# cluster-level LRU; the cold region holds single neurons with a neuron-level LRU. A real
# engine would rank the neurons by a profiling run; here the generator's own firing
# probabilities (`stack.firing_prob`) stand in for that run's counts. The budget is half of the
# FFN's bytes on flash (`spec.ffn_bytes // 2`), so the cache cannot simply hold every neuron.
# We run it twice: with room for **all** hot clusters (as the planner sizes it), and with
# room for only **half** of them (`hot_share=0.5`), so the hot LRU has to evict. The budget is
# the same in both runs, so the memory the smaller hot region frees goes to the cold region: the
# half-hot run gets more cold slots (the cell prints how many of each).
#
# We use an *oracle* predictor: it knows the exact active set because it keeps the whole gate
# matrix in RAM. That is not a real engine's memory, so the engine reports those bytes as
# `outside_budget` instead of hiding them. This FFN-only demo has no attention, so the fixed
# region is empty; notebook 14 adds attention weights and a real predictor.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
n_tok = 40
X = [stack.hidden_states(l, n_tok, seed=1) for l in range(2)]
freq = stack.firing_prob                               # what a profiling run would measure
budget = spec.ffn_bytes // 2
runs_ = {}
for share in (1.0, 0.5):
    cfg = EngineConfig(budget=budget, hot_neurons=256, hot_share=share, cluster_size=32, prefill_chunk=64,
                       max_prompt=16)
    with SparseFFN(path, cfg, OraclePredictor(stack.bundles, gated=True), gated=True, freq=freq) as eng:
        for t_ in range(n_tok):
            for l in range(2):
                y = eng(l, X[l][t_])
            eng.end_token()
        runs_[share] = dict(hist=eng.cache.history, regions=eng.cache.region_bytes(),
                            capacity={"hot": eng.cache.cfg.hot_slots, "cold": eng.cache.cfg.cold_slots},
                            outside=eng.stats()["outside_budget"], read=eng.pipe.bytes_read / n_tok)
full = runs_[1.0]
print({k: f"{v / 2**20:.2f} MiB" for k, v in full["regions"].items()})
print(f"held by the oracle, outside the budget: {full['outside'] / 2**20:.2f} MiB")


def late_rate(hist, region, skip=10):
    h = hist[skip:]
    return sum(r[f"{region}_hits"] for r in h) / max(1, sum(r[f"{region}_hits"] + r[f"{region}_misses"] for r in h))


n_hot_clusters = full["capacity"]["hot"]              # with hot_share=1.0 there is a slot for every hot cluster
print(f"hot clusters: {cfg.hot_neurons} hot neurons per layer / clusters of {cfg.cluster_size} x "
      f"{spec.n_layers} layers = {cfg.hot_neurons // cfg.cluster_size * spec.n_layers}")
assert n_hot_clusters == cfg.hot_neurons // cfg.cluster_size * spec.n_layers
for share, r in runs_.items():
    print(f"hot region for {share:.0%} of the {n_hot_clusters} hot clusters ({r['capacity']['hot']} slots), "
          f"{r['capacity']['cold']} cold slots: after warm-up hot hit rate {late_rate(r['hist'], 'hot'):.2f}, "
          f"cold {late_rate(r['hist'], 'cold'):.2f}")
half = runs_[0.5]
freed = (n_hot_clusters - half["capacity"]["hot"]) * cfg.cluster_size
print(f"half the hot slots frees {freed} neuron rows of hot region; the half-hot run has "
      f"{half['capacity']['cold'] - full['capacity']['cold']} more cold slots (a cold slot also needs its LRU entry)")
assert 0 < half["capacity"]["cold"] - full["capacity"]["cold"] <= freed

# %%
# NBVAL_CHECK_OUTPUT
viz.plot_cache_runs({f"hot region for {share:.0%} of the hot clusters": r["hist"] for share, r in runs_.items()},
                    title="the segmented cache, token by token: the whole hot set against half of it")
for share, r in runs_.items():
    print(f"hot share {share:.0%}: {r['read'] / 1024:.0f} KiB read from flash per token")
growth = runs_[0.5]["read"] / full["read"]
print(f"half the hot slots read {growth:.1f}x the bytes from flash; the full hot region held every hot cluster "
      f"after token {next(k for k, h in enumerate(full['hist']) if h['hot_occupied'] == n_hot_clusters)}")
assert late_rate(runs_[0.5]["hist"], "hot") < 0.5 and late_rate(full["hist"], "hot") > 0.99 and growth > 3
assert full["hist"][0]["hot_occupied"] == n_hot_clusters        # filled on the first token

# %% [markdown]
# Left, room for every hot cluster: the hot region fills on the first token and then always
# hits (its neurons fire most often), so only the cold region's misses are read from flash.
#
# Right, room for half of them: the hot hit rate **collapses**, and the flash traffic grows many
# times (both printed above, on one scale in the bottom row). This is LRU's classic failure on a **cyclic** working set: the hot clusters are used
# on nearly every token, in the same order. With fewer slots than clusters, each miss evicts
# the least recently used cluster, which is exactly the one needed soonest, so almost every
# lookup misses. (The same happens to the cold region in notebook 14 when the budget gets
# small.) That is why our engine by default (`hot_share=1`) sizes the hot region to hold the
# whole hot set, keeps it resident (it fills on the first token), and leaves the evicting to
# the cold neurons, whose reuse is irregular. (PowerInfer-2 also puts a cluster-level LRU on its
# hot region and resizes the hot and cold regions as the batch size changes, Xue et al.,
# arXiv:2406.06282v3, §4.2, and its planner chooses how many neurons are hot, v3, §5.)

# %% [markdown]
# The budget is enforced, not hoped for: give the engine less memory than its buffers and
# tables need, and it refuses to start (rather than quietly use more).

# %%
# NBVAL_CHECK_OUTPUT
try:
    SparseFFN(path, EngineConfig(budget=200_000, max_prompt=16), OraclePredictor(stack.bundles, True), gated=True)
except ValueError as err:
    print("refused:", err)

# %% [markdown]
# **Hit rate against cache size.** The planner (notebook 14) needs `h(size)`. It gets it by
# *replaying* recorded activation traces through the same LRU tables, without any weights.
# LRU has the *inclusion property*: a bigger cache holds everything a smaller one would, so the
# curve can only rise. The pinned hot set here is 64 neurons per layer, not section 5's 256, so
# that its 128 rows stay fewer than even the smallest cold region swept (200 rows): pinning is
# added to the LRU, and never takes most of the cache.

# %%
# NBVAL_CHECK_OUTPUT
traces = [[stack.active_sets(l, X[l][t_:t_ + 1])[0] for l in range(2)] for t_ in range(n_tok)]
hot_sets = [np.argsort(-fq)[:64] for fq in freq]
sizes = [200, 400, 600, 800, 1000]
curves = {"cold LRU only": [simulate_hit_rate(traces, 1024, c, warmup=10) for c in sizes],
          "64 hot neurons/layer pinned + cold LRU": [simulate_hit_rate(traces, 1024, c, hot_sets, warmup=10) for c in sizes]}
for name, c in curves.items():
    print(f"{name:40s}", " ".join(f"{v:.3f}" for v in c))
assert all(np.diff(curves["cold LRU only"]) >= 0)

# %%
# NBVAL_CHECK_OUTPUT
pinned = "64 hot neurons/layer pinned + cold LRU"
in_memory = {"cold LRU only": sizes, pinned: [c + 2 * 64 for c in sizes]}  # pinned rows cost memory too
viz.plot_hit_curve(in_memory, curves, xlabel="neurons held in memory (both layers)")
# at equal memory: the cold-only curve read off at the pinned configuration's memory
gain = np.array(curves[pinned]) - np.interp(in_memory[pinned], sizes, curves["cold LRU only"])
print("pinned minus cold-only hit rate at equal memory: " + " ".join(f"{g:+.3f}" for g in gain[:-1])
      + " (the last point lies past the cold-only curve's end)")
assert gain[0] > max(gain[1:-1]) and gain[0] > 0

# %% [markdown]
# The x-axis is the memory each configuration holds: the pinned curve sits 128 neurons (64 per
# layer) to the right of the cold-only one at the same cold size. Compare the two at equal memory,
# that is along a vertical line (the printed differences do exactly that). Pinning pays most
# where the cold region is small and LRU churns; with room to spare, a plain LRU keeps the
# frequent neurons anyway and the difference shrinks. The planner weighs exactly this trade
# when it splits the budget (notebook 14).

# %% [markdown]
# **Try it.** Move the total memory and the share given to the pinned hot region; the hit rate is
# replayed on the same traces (a static figure when no front end is attached).

# %%
# NBVAL_IGNORE_OUTPUT
from teachkit import widgets

widgets.cache_split_widget(traces, 1024, warmup=10)

# %%
# NBVAL_CHECK_OUTPUT
from teachkit.sparse.planner.tradeoffs import hit_rate_over_splits, split_hit_rate

rows = int(round(0.2 * 2 * 1024))                # the widget's starting point: 20% of the rows cached
start_share = 0.5                                # ... and its hot-share slider's starting value
split = hit_rate_over_splits(traces, 1024, rows, np.linspace(0, 1, 11), warmup=10)
rates = split["hit_rate"]
print(f"{rows} cached rows: hit rate {rates.min():.3f} to {rates.max():.3f} over the hot shares 0 to 1, "
      f"highest at {split['share'][rates.argmax()]:.1f}; all pinned (1.0): {rates[-1]:.3f}")
chosen = split_hit_rate(traces, 1024, rows, start_share, warmup=10)["hit_rate"]
print(f"the red 'chosen' point at the start: hot share {start_share}, hit rate {chosen:.1%}")
assert chosen == rates[np.isclose(split["share"], start_share)][0]          # a point of the curve
assert rates.max() - rates.min() < 0.1 and rates[-1] < rates.max()

# %% [markdown]
# The line is the hit rate for every split of the cache at the chosen size; the large red point,
# labelled "chosen" with its hit rate, is the split the hot-share slider selects. The slider
# starts at 0.5, half the cache pinned hot, so at first the red point is simply the curve's
# middle point (printed above). At its starting point (20% of the rows cached) the figure is
# nearly flat: on these traces the split between pinned hot rows and the cold LRU moves the hit
# rate by less than ten points (asserted; the range is printed), and the all-pinned end is not
# the best, because pinning everything leaves no cold LRU to catch the neurons outside the hot
# set. Move the size slider to see how the curve changes with the cache size (section 5 found
# pinning pays most when the cache is small).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# If a check fails, its hint is the idea; `check.hint(name, 2)` and `check.hint(name, 3)` give the
# formula and the code's shape, and `check.solution(name)` prints the reference.
#
# 1. **Where is neuron i?** Return the byte offset of neuron `neuron` of layer `layer` in a
#    bundled file: units of `payload_bytes` padded to a multiple of `align`, `n_neurons` per
#    layer, data starting at `data_offset`. A payload that is already a multiple of `align` needs
#    no padding. Once the check passes, the cell feeds it the file of section 1 (`f`, `spec`) and
#    prints its offsets of neurons 0..3 of layer 1 beside the file's own, the ones printed there.

# %%
def my_bundle_offset(data_offset, layer, neuron, n_neurons, payload_bytes, align):
    raise NotImplementedError  # YOUR CODE HERE


if check.bundle_offset(my_bundle_offset):
    mine = [my_bundle_offset(f.data_offset, 1, i, spec.n_neurons, spec.payload_bytes(), spec.align)
            for i in range(4)]
    theirs = [f.offset(1, i) for i in range(4)]
    print(f"neurons 0..3 of layer 1: yours {mine}, the file's {theirs}, equal: {mine == theirs}")

# %% [markdown]
# 2. **One LRU step.** `order` lists the cached keys from least to most recently used. Return
#    `(new_order, hit, evicted)` after looking up `key` in a cache of `capacity` keys
#    (`evicted` is `None` when nothing leaves). Leave `order` as it is: build and return a new
#    list (the checker looks at the caller's list afterwards).

# %%
def my_lru_step(order, capacity, key):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.lru_step(my_lru_step)

# %% [markdown]
# 3. **A burst of reads.** A layer submits `k` reads at once; the disk keeps at most
#    `queue_depth` of them in flight, and each takes `read_s` seconds. Return the time until
#    the last one lands. Real disks are not this regular; once the check passes, the cell
#    compares your model with the burst profile of section 3: with `read_s` the lone 16 KiB
#    read's time printed there, it finds the queue depth at which your model gives the measured
#    time of the largest burst, the number of reads this disk behaved as if it kept in flight.

# %%
def my_burst_time(k, queue_depth, read_s):
    raise NotImplementedError  # YOUR CODE HERE


if check.burst_time(my_burst_time):
    k_big, t_big, lone = burst["k"][-1], burst["seconds"][-1], 16384 / best_qd1
    model = {q: my_burst_time(k_big, q, lone) for q in range(1, k_big + 1)}
    q_fit = min(model, key=lambda q: abs(model[q] - t_big))
    print(f"largest burst: {k_big} reads in {t_big * 1e3:.2f} ms measured; with read_s = {lone * 1e6:.0f} us "
          f"your model gives {model[q_fit] * 1e3:.2f} ms at queue depth {q_fit} (the closest)")

# %%
import shutil

shutil.rmtree(workdir, ignore_errors=True)
