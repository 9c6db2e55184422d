# %% [markdown] slideshow={"slide_type": "slide"}
# # 11 · Neuron clusters and numba kernels
#
# Notebook 10 showed that a ReLU FFN fires only a small share of its neurons per token (it
# printed the share for each layer of our small model) and that a small predictor can say
# which. Skipping most of the neurons only pays if the code that runs the few others is fast.
# This notebook builds that code step by step, the way PowerInfer-2 (Xue et al.,
# arXiv:2406.06282v3, §4.1.2) runs the sparse part of a token's FFN, its cold neurons, on a
# phone's CPU cores (its NPU takes the dense, hot part):
#
# 1. the **neuron bundle**: the three weight vectors a neuron needs, stored side by side;
# 2. a sparse FFN in plain Python, then with numpy gather, then as a **numba** kernel;
# 3. the **race** in a naive parallel down projection, and its fix;
# 4. the **fused bundled kernel**, and an int8 variant;
# 5. time against activity, next to the **memory-bandwidth bound** (RAM bound);
# 6. **neuron clusters**: hot/cold from recorded activity, cluster sizes from a measured overhead.
#
# Every FFN layer here is **SYNTHETIC** (random weights with controlled statistics, from
# `teachkit.sparse.model.synthetic`), so it can be as wide as we like. All sizes are small enough
# for a laptop; the full-size numbers come from `make bench` (section 5).

# %% slideshow={"slide_type": "skip"}
import numba
import numpy as np
from numba import njit, prange

from teachkit import check, viz
from teachkit.sparse.compute import kernels
from teachkit.sparse.compute import reference
from teachkit.sparse.compute.bundles import make_bundles, quantize_int8
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. A neuron is three vectors: the bundle
#
# A gated (ReGLU) FFN computes `down @ (relu(gate @ x) * (up @ x))` with `gate, up` of shape
# `(d_ff, d)` and `down` of shape `(d, d_ff)`. Neuron *i* contributes
# `h_i · down[:, i]` with `h_i = relu(gate_i · x) · (up_i · x)`. So neuron *i* needs **row i of
# gate and up, and column i of down**. A column is scattered through memory (stride `d_ff`), so
# we store `down` transposed and put the three rows together: the **bundle**
# `[gate_i | up_i | down_i]`, one contiguous block per neuron (PowerInfer-2 loads a neuron's
# weights from flash the same way: arXiv:2406.06282v3, §4.4).

# %%
# NBVAL_CHECK_OUTPUT
rng = np.random.default_rng(0)
d, d_ff = 6, 10
w_gate, w_up = rng.standard_normal((d_ff, d)), rng.standard_normal((d_ff, d))
w_down = rng.standard_normal((d, d_ff))                 # nn.Linear(d_ff, d).weight
bundles = make_bundles(w_up, w_down, w_gate)
print("bundles:", bundles.shape, bundles.dtype, "C-contiguous:", bundles.flags.c_contiguous)
print("bundle 3 holds gate row 3, up row 3, down column 3:",
      np.allclose(bundles[3], np.stack([w_gate[3], w_up[3], w_down[:, 3]])))
print(f"one fp32 bundle at d = 4096: {3 * 4096 * 4 // 1024} KiB (one stream from RAM; in notebook 12, "
      f"one read from flash)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Three sparse FFNs: Python loops, numpy gather, numba
#
# We take a SYNTHETIC layer and one token's **oracle** active set (every neuron with a positive
# gate). Leaving out the inactive neurons changes nothing, because their `h_i` is exactly 0:
# the sparse FFN must equal the dense one.

# %%
# NBVAL_CHECK_OUTPUT
small = SyntheticStack(SyntheticConfig(d=256, d_ff=1024, n_layers=1, rank=16, seed=0))
print(small.describe())
B = small.bundles[0]
x = small.hidden_states(0, 1)[0]
idx = reference.active_set(B, x, gated=True)
print(f"oracle active set: {len(idx)} of {B.shape[0]} neurons ({len(idx) / B.shape[0]:.1%})")


# %%
def sparse_ffn_python(B, idx, x):
    """The definition, written as loops: slow but obviously right."""
    d = x.shape[0]
    out = [0.0] * d
    for i in idx:
        g = sum(float(B[i, 0, k]) * float(x[k]) for k in range(d))
        u = sum(float(B[i, 1, k]) * float(x[k]) for k in range(d))
        h = max(g, 0.0) * u
        for k in range(d):
            out[k] += h * float(B[i, 2, k])
    return np.array(out, dtype=np.float32)


def sparse_ffn_numpy(B, idx, x):
    """numpy gather: B[idx] copies the active bundles, then three small matvecs."""
    b = B[idx]
    h = np.maximum(b[:, 0] @ x, 0) * (b[:, 1] @ x)
    return h @ b[:, 2]


# %%
# NBVAL_CHECK_OUTPUT
dense = reference.dense_ffn_ref(B, x, gated=True)
y_py, y_np = sparse_ffn_python(B, idx, x), sparse_ffn_numpy(B, idx, x)
print("python loops == dense:", np.allclose(y_py, dense, rtol=1e-4, atol=1e-5))
print("numpy gather == dense:", np.allclose(y_np, dense, rtol=1e-4, atol=1e-5))
assert np.allclose(y_py, dense, rtol=1e-4, atol=1e-5) and np.allclose(y_np, dense, rtol=1e-4, atol=1e-5)

# %% [markdown]
# numpy gather has a hidden cost: `B[idx]` **copies** every active bundle before computing,
# so each weight is read from RAM, written to a copy, and read back (from the cache if the copy
# fits there) before it is used. A compiled loop can read each weight once, straight from its place. That is what numba gives
# us: `@njit` compiles the Python loop to machine code, `prange` splits its iterations over
# threads, `fastmath=True` lets LLVM vectorise the dot-product reduction, `nogil=True` lets
# other Python threads (an I/O thread in notebook 13) run meanwhile, and `cache=True` keeps
# the compiled code on disk for the next run.
#
# The **gathered dot product** for gate and up rows: each `prange` iteration owns `out[j]`, so
# no two threads ever write the same place.

# %%
@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def gather_dot(W, idx, x, out):
    for j in prange(idx.shape[0]):
        r = idx[j]
        acc = np.float32(0.0)
        for k in range(x.shape[0]):
            acc += W[r, k] * x[k]
        out[j] = acc


# %%
# NBVAL_CHECK_OUTPUT
W_gate = np.ascontiguousarray(B[:, 0])
out = np.empty(len(idx), np.float32)
gather_dot(W_gate, idx, x, out)
print("our gather_dot == W[idx] @ x:", np.allclose(out, W_gate[idx] @ x, rtol=1e-4, atol=1e-5))
lib = kernels.gather_dot(W_gate, idx, x, np.empty(len(idx), np.float32))
print("our gather_dot == teachkit.sparse.compute.kernels.gather_dot:", np.allclose(out, lib, atol=1e-5))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The down projection, and a data race
#
# The down projection is a sum of scaled rows into **one** output vector:
# `out += Σ_j h_j · down_{idx_j}` (an *axpy* per neuron). The obvious parallel version lets
# every `prange` iteration add into `out`. Two threads can then read the same `out[k]`, both
# add their term, and both write back: one of the two additions is lost. The result is wrong,
# and differently wrong on every run. Many tiny rows make the collision frequent:

# %%
@njit(parallel=True)
def down_axpy_racy(WdT, idx, h, out):
    for j in prange(idx.shape[0]):
        r = idx[j]
        for k in range(out.shape[0]):
            out[k] += h[j] * WdT[r, k]          # every thread writes the same out[k]: a race


# %%
# NBVAL_IGNORE_OUTPUT
n_rows = 4_000_000
ones_rows, many = np.ones((64, 8), np.float32), (np.arange(n_rows) % 64).astype(np.int64)
h_ones = np.ones(n_rows, np.float32)
print(f"numba threads: {numba.get_num_threads()}; the right answer is {n_rows:,} in every entry")
for attempt in range(4):
    y = np.zeros(8, np.float32)
    down_axpy_racy(ones_rows, many, h_ones, y)
    print(f"run {attempt}: out[0] = {y[0]:,.0f}  ({n_rows - y[0]:,.0f} additions lost)")

# %% [markdown]
# (On one thread, or if the operating system happened to run the two threads one after the
# other, every run is right: a race only *may* lose updates, which is what makes it
# treacherous.)
#
# With real sizes (d = 4096 outputs, a few hundred active rows) the collisions are rarer (not
# measured here), but "rarer" is not "never", and a lost update is silent. The demo above makes
# collisions frequent on purpose (8 outputs, 4 million additions) so we can see them. A run that
# loses exactly half of the additions lost one thread's whole share: both threads loaded
# `out[k]`, and the one that stored last overwrote everything the other had added.
#
# **The fix:** give each thread its own private accumulator row, `partial[c]`, split the
# active list into one contiguous chunk per thread, and sum the rows once at the end. Nothing
# is shared while the threads run. The CPU axpy kernel of PowerInfer (Song et al.,
# arXiv:2312.12456v2, §5.4; `ggml_compute_forward_mul_mat_axpy` in the `ggml.c` of its public
# code, github.com/SJTU-IPADS/PowerInfer) does much the same: each thread adds its contiguous
# range of rows into a private vector, then adds that vector to the shared output when it is
# done, with a plain `+=` in this function (its `_head` variant takes a spin lock for that step).

# %%
@njit(parallel=True, fastmath=True, nogil=True, cache=True)
def down_axpy(WdT, idx, h, out, nchunks):
    n, d = idx.shape[0], out.shape[0]
    per = (n + nchunks - 1) // nchunks
    partial = np.zeros((nchunks, d), dtype=np.float32)
    for c in prange(nchunks):
        for j in range(c * per, min(n, (c + 1) * per)):
            r = idx[j]
            for k in range(d):
                partial[c, k] += h[j] * WdT[r, k]     # thread c writes only row c
    for c in range(nchunks):
        out += partial[c]


# %%
# NBVAL_CHECK_OUTPUT
for attempt in range(3):
    y = np.zeros(8, np.float32)
    down_axpy(ones_rows, many, h_ones, y, numba.get_num_threads())
    print(f"run {attempt}: out[0] = {y[0]:,.0f}")
assert y[0] == n_rows
y_lib = kernels.down_axpy(ones_rows, many, h_ones, np.zeros(8, np.float32))
print(f"teachkit.sparse.compute.kernels.down_axpy: out[0] = {y_lib[0]:,.0f}")
assert np.array_equal(y, y_lib)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. One fused kernel over bundles, and int8
#
# Running gate, up and down as three kernels (two `gather_dot`, then `down_axpy`) reads `x`
# twice for each neuron, once in each dot product, walks the index list three times, and
# writes the `h` values out only to read them back. The **fused bundled kernel** does it all
# per neuron: the two dot products (read together, two memory streams), the activation, and
# the axpy into the thread's private row; if `h_i = 0` the down row is not even read.
# `teachkit.sparse.compute.kernels.sparse_ffn_bundled`
# is that kernel, with input checks in front:

# %%
# NBVAL_CHECK_OUTPUT
y_fused = kernels.sparse_ffn_bundled(B, idx, x, np.zeros(B.shape[2], np.float32), gated=True)
print("fused sparse FFN (oracle set) == dense FFN:", np.allclose(y_fused, dense, rtol=1e-4, atol=1e-5))
try:
    kernels.sparse_ffn_bundled(B.astype(np.float64), idx, x, np.zeros(256, np.float32), gated=True)
except TypeError as err:
    print("float64 bundles ->", err)
try:
    kernels.sparse_ffn_bundled(B, np.array([0, 5000]), x, np.zeros(256, np.float32), gated=True)
except ValueError as err:
    print("index 5000 ->", err)

# %% [markdown]
# numba has no float16 on the CPU, so to move fewer bytes we quantise to **int8 with one
# scale per row**: `w ≈ q · s`, `s = max|w| / 127`. Each weight is one byte instead of four, the
# error of each weight is at most `s / 2`, and the kernel multiplies by the scale once per dot
# product.

# %%
# NBVAL_CHECK_OUTPUT
q, s = quantize_int8(B)
y_i8 = kernels.sparse_ffn_bundled_int8(q, s, idx, x, np.zeros(256, np.float32), gated=True)
rel = np.linalg.norm(y_i8 - dense) / np.linalg.norm(dense)
print(f"int8 bundles: {q.nbytes + s.nbytes:,} bytes instead of {B.nbytes:,}; "
      f"relative error of the FFN output {rel:.3f}")
assert rel < 0.05

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Time against activity, beside the bandwidth bound
#
# At batch size 1 every weight is used once per token, so when the weights come from RAM a
# kernel can go no faster than **bytes read / memory bandwidth**. The fused fp32 kernel reads
# the gate and up rows of all `k` listed neurons (it needs them to compute `h`), but the down
# row only of the `n_pos` neurons whose `h ≠ 0`: `(2k + n_pos) · d · 4` bytes. That is the
# **RAM bound** drawn below (exercise 2 writes it for any weight format). int8 reads about a
# quarter of the bytes (each row also carries its scale: exercise 2), but converts each one to float.
#
# An **activity level** here is a top-k list: for each token, the `k = level × d_ff` neurons
# with the largest gate pre-activation. Above the layer's own activity (about 10%) the list
# runs into neurons with a negative gate, whose `h` is 0: what a predictor that over-selects
# hands the kernel. So `n_pos` can be well below `k`; the table prints the share of `h = 0`.
#
# The next cell times three kernels at five levels on a SYNTHETIC layer of 50 MB, on one
# thread, each call on a different token's list, each after a `CacheFlusher` has read
# 128 MiB so that the weights come from RAM, not from the CPU cache. Before each level it
# measures the read bandwidth with a loop over a buffer many times the cache; the bound
# divides by the **median** of those runs, which one fast or slow run hardly moves. Timings
# vary run to run: nbval compares none of this section's numbers, and the asserts check only
# what holds on a busy machine too.

# %% slideshow={"slide_type": "notes"}
# NBVAL_IGNORE_OUTPUT
from teachkit.sparse.planner.machine import (CacheFlusher, last_level_cache_bytes, measure_memory_bandwidth,
                                             median_seconds)

layer = SyntheticStack(SyntheticConfig(d=1024, d_ff=4096, n_layers=1, rank=32, seed=1))
Bl = layer.bundles[0]
X = layer.hidden_states(0, 16, seed=2)
pre = layer.preactivations(0, X)
print(layer.describe())


def timed_ms(call, before):
    """Median ms of ``call(t)`` on one thread, a different token's active set on every call."""
    counter = [0]

    def next_token():
        counter[0] += 1
        call(counter[0] % 16)

    return 1e3 * median_seconds(next_token, repeats=15, before=before)


levels = [0.02, 0.05, 0.1, 0.2, 0.5]
times = {"numpy gather": [], "numba fused": [], "numba fused int8": []}
touched, bw_runs, zero_h = [], [], []   # bytes the fused fp32 kernel reads; bandwidth runs; share of h = 0
BW_BYTES = 512 << 20           # the read loop's buffer: many times the last-level cache
ql, sl = quantize_int8(Bl)
out = np.zeros(1024, np.float32)
flush = CacheFlusher(128 << 20)
numba.set_num_threads(1)
empty = np.zeros(0, np.int64)                       # a call with no neurons: its fixed cost
empty_ms = 1e3 * median_seconds(lambda: kernels.sparse_ffn_bundled(Bl, empty, X[0], out, True), repeats=15,
                                before=flush)       # after a flush
warm_empty_ms = 1e3 * median_seconds(lambda: kernels.sparse_ffn_bundled(Bl, empty, X[0], out, True),
                                     repeats=51)    # back to back: code and data stay in the cache
for level in levels:
    bw_runs.append(measure_memory_bandwidth(threads=1, nbytes=BW_BYTES, repeats=5))   # again before each level
    k = int(level * 4096)
    sets = [np.sort(np.argsort(-p)[:k]).astype(np.int64) for p in pre]   # top-k by gate pre-activation
    n_pos = np.mean([(p[s_] > 0).sum() for p, s_ in zip(pre, sets)])     # down rows really read (h > 0)
    zero_h.append(1 - n_pos / k)
    calls = {"numpy gather": lambda t, sets=sets: sparse_ffn_numpy(Bl, sets[t], X[t]),
             "numba fused": lambda t, sets=sets: kernels.sparse_ffn_bundled(Bl, sets[t], X[t], out, True),
             "numba fused int8": lambda t, sets=sets: kernels.sparse_ffn_bundled_int8(ql, sl, sets[t], X[t], out,
                                                                                       True)}
    for name, call in calls.items():
        times[name].append(timed_ms(call, flush))
    touched.append((2 * k + n_pos) * 1024 * 4)
top_big_ms = timed_ms(calls["numba fused"], CacheFlusher(512 << 20))   # the top level again, a 4x larger flush
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
bw = float(np.median(bw_runs))      # one fast or slow run moves the median little
bound = [1e3 * b / bw for b in touched]
dense_ms = 1e3 * median_seconds(lambda: Bl[:, 2].T @ (np.maximum(Bl[:, 0] @ X[0], 0) * (Bl[:, 1] @ X[0])),
                                repeats=9, before=flush)
print(f"timed {len(levels)} levels x {len(times)} kernels")

# %% [markdown]
# The table. Two of its lines guard against the cache having served the "RAM" timings: a
# fused fp32 point below half its bound (the cache is several times faster than RAM) fails the
# cell, and so would the top level slowing down when timed again after a flush four times as
# large.

# %% slideshow={"slide_type": "notes"}
# NBVAL_IGNORE_OUTPUT
print(f"read bandwidth (1 thread, {BW_BYTES >> 20} MiB buffer; last-level cache {last_level_cache_bytes() >> 20} "
      "MiB), measured before each level: " + ", ".join(f"{b / 1e9:.1f}" for b in bw_runs) + " GB/s")
print(f"  spread: slowest {min(bw_runs) / 1e9:.1f}, fastest {max(bw_runs) / 1e9:.1f} GB/s "
      f"(fastest / slowest {max(bw_runs) / min(bw_runs):.2f}); the bound uses the median, {bw / 1e9:.1f} GB/s")
print("listed neurons with h = 0 (top-k by pre-activation, negative gate): "
      + ", ".join(f"{lv:.0%}: {z:.0%}" for lv, z in zip(levels, zero_h)))
print("listed  | RAM bound ms | " + " | ".join(times))
for i, level in enumerate(levels):
    print(f"  {level:5.0%} |    {bound[i]:6.3f}    | " + " | ".join(f"{t[i]:8.3f}" for t in times.values()))
print(f"dense numpy FFN: {dense_ms:.3f} ms")
over = [t / b for t, b in zip(times["numba fused"], bound)]     # fused fp32 time / its RAM bound
print("fused fp32 time / RAM bound: " + ", ".join(f"{lv:.0%}: {r:.2f}" for lv, r in zip(levels, over)))
under = [f"{lv:.0%}" for lv, r in zip(levels, over) if r < 1]
print(f"fused fp32 points under the line: {', '.join(under) if under else 'none'}")
i8_vs_fp32 = [a / b for a, b in zip(times["numba fused int8"], times["numba fused"])]
print("int8 time / fp32 time: " + ", ".join(f"{lv:.0%}: {r:.2f}" for lv, r in zip(levels, i8_vs_fp32)))
print(f"an empty call: {empty_ms:.3f} ms after a flush ({empty_ms / times['numba fused'][0]:.0%} of the "
      f"{levels[0]:.0%} call), {warm_empty_ms:.3f} ms warm ({empty_ms / warm_empty_ms:.0f}x less)")
print(f"fused fp32 at {levels[-1]:.0%} after a flush 4x as large: {top_big_ms:.3f} ms "
      f"({top_big_ms / times['numba fused'][-1]:.2f}x the time after the usual one)")
assert zero_h[-1] > zero_h[0], "the larger the top-k set, the more of it has a negative gate"
assert min(over) > 0.5, "a fused fp32 point far under the RAM bound: it was served from cache"
assert top_big_ms < 1.5 * times["numba fused"][-1], "a larger flush slows the kernel: the cache served it"
assert over[0] > over[-1], "the smallest active set should sit further above its bound than the largest"
assert warm_empty_ms < empty_ms, "a flush evicts the call's own code and data: an empty call gets slower"

# %% [markdown]
# **Reading the table.** The ratios `fused fp32 time / RAM bound` fall as the list grows
# (checked: the smallest list sits further above its bound than the largest). A call has a
# fixed cost that the few bytes of a small list cannot hide, and a flush makes that cost
# larger, because it evicts the call's own code and data too: compare the printed empty call
# after a flush with the warm one, and its share of the smallest call. The printed
# `int8 time / fp32 time` says where int8 pays on this machine: typically not at the smallest
# list, where the fixed cost dominates. If a point does come in under the line (printed above,
# if any; the larger flush rules out the cache), the kernel drew more from RAM than the read
# loop, whose bandwidth is only one access pattern's.

# %%
# NBVAL_IGNORE_OUTPUT
viz.plot_kernel_times(levels, times, bound, dense_ms,
                      title="SYNTHETIC layer d=1024, d_ff=4096, 1 thread, cache flushed",
                      bound_label="fp32 RAM bound: (2k + n_pos) rows / measured GB/s",
                      xlabel="fraction of neurons listed (top-k)")

# %% [markdown]
# **The full-size figures** (d = 4096, d_ff = 11008, cache flushed the same way) come from
# `python -m teachkit.sparse.bench.suite --json data/sparse_bench.json` (`make bench`),
# measured on a quiet machine; the next cell loads them. They are the reference; the small
# layer above is a demonstration on this machine, at this moment.

# %% slideshow={"slide_type": "notes"}
# NBVAL_IGNORE_OUTPUT
import json

from teachkit import DATA_DIR

stored = DATA_DIR / "sparse_bench.json"
if stored.exists():
    res = json.loads(stored.read_text())
    rows = [r for r in res["kernels"] if r["threads"] == res["headline_threads"] and r["level"] != "oracle"]
    lv = sorted({r["activity"] for r in rows})
    by = {k: [r["median_ms"] for r in rows if r["kernel"] == k]
          for k in ("numpy_gather_ffn", "numba_fused_bundled", "numba_fused_bundled_int8")}
    bw_full = res["bandwidth_GBps"][str(res["headline_threads"])]
    fused_bytes = [r["bytes_touched"] for r in rows if r["kernel"] == "numba_fused_bundled"]
    print(f"STORED RESULTS of `python -m teachkit.sparse.bench.suite` ({res['label']}), run at "
          f"{res['started_utc']} on {res['machine']['cpu']} with load {res['machine']['load_avg_1min']}")
    print(res["synthetic_description"])
    dense_full = res["dense_numpy_ffn_ms"][str(res["headline_threads"])]
    print(f"\nTHE TABLE: one timing per kernel; bandwidth {bw_full} GB/s (the best measured around the "
          f"table); dense numpy FFN {dense_full:.1f} ms")
    print("kernel (oracle set)                             |     ms | GB/s | share of bandwidth | x dense")
    head_rows = {r["kernel"]: r for r in res["kernels"]
                 if r["threads"] == res["headline_threads"] and r["level"] == "oracle"}
    partial = {"numba_gather_dot_gate": "PARTIAL: gate rows only", "numba_down_axpy": "PARTIAL: down only"}
    for name, r in head_rows.items():
        x_dense = "   —   " if name in partial else f"{r['speedup_vs_dense']:7.1f}"
        label = f"{name} ({partial[name]})" if name in partial else name
        print(f"{label:47s} | {r['median_ms']:6.2f} | {r['GBps']:4.1f} | {r['bandwidth_fraction']:18.2f} | {x_dense}")
    print("(the PARTIAL rows do a third of the FFN's reads each, so a speedup over the whole dense FFN "
          "would flatter them: left blank)")
    fu, i8, npg = (head_rows[k] for k in ("numba_fused_bundled", "numba_fused_bundled_int8",
                                          "numpy_gather_ffn"))
    rounds, best_bw = res["headline_rounds"], res["headline_bandwidth_GBps"]
    speedups = [r["speedup"] for r in rounds]
    fractions = [r["fused_GBps"] / best_bw for r in rounds]
    print(f"\nTHE HEADLINE: {len(rounds)} more rounds of the fused kernel (oracle sets, "
          f"{res['headline_activity']:.2%} activity), each timing bandwidth, dense and sparse back to back:")
    print(f"  speedup over dense per round {min(speedups):.2f}-{max(speedups):.2f}x, median "
          f"kernel_speedup_at_10pct = {res['kernel_speedup_at_10pct']}")
    print(f"  share of the best bandwidth of the whole run ({best_bw} GB/s) per round {min(fractions):.3f}-"
          f"{max(fractions):.3f}, median kernel_bandwidth_fraction = {res['kernel_bandwidth_fraction']}")
    print(f"  the table's row ({fu['speedup_vs_dense']:.1f}x, {fu['bandwidth_fraction']:.2f}) is one more such "
          f"timing, its share taken of the table's bandwidth ({bw_full} GB/s)")
    # one timing, and the median of several, of the same kernel on the same weights: they agree within the rounds' spread
    assert 0.9 * min(speedups) <= fu["speedup_vs_dense"] <= 1.1 * max(speedups)
    assert 0.9 * min(fractions) <= fu["bandwidth_fraction"] <= 1.1 * max(fractions)
    print(f"\n-> the fused fp32 kernel streams at {res['kernel_bandwidth_fraction']} of the measured "
          f"bandwidth and is {res['kernel_speedup_at_10pct']}x faster than the dense FFN (the headline medians);")
    unfused = 2 * head_rows["numba_gather_dot_gate"]["median_ms"] + head_rows["numba_down_axpy"]["median_ms"]
    print(f"-> fusing pays: gate + up + down as three kernels (2 x gather_dot + down_axpy) {unfused:.2f} ms, "
          f"the fused kernel {fu['median_ms']:.2f} ms")
    assert fu["median_ms"] < unfused
    print(f"-> numpy gather reaches only {npg['bandwidth_fraction']:.2f} of it (it copies the "
          f"active bundles before computing);")
    print(f"-> int8 uses a smaller share of the bandwidth ({i8['bandwidth_fraction']:.2f}: "
          f"converting int8 to float costs instructions) but, reading a quarter of the bytes, "
          f"is {fu['median_ms'] / i8['median_ms']:.1f}x faster than fp32.")
    assert fu["speedup_vs_dense"] > 0.7 / fu["activity"]          # close to 1 / activity: set by the bytes
    assert npg["bandwidth_fraction"] < fu["bandwidth_fraction"] and i8["bandwidth_fraction"] < fu["bandwidth_fraction"]
    assert i8["median_ms"] == min(r["median_ms"] for r in head_rows.values() if r["kernel"] not in partial)
    fp32_line = fu["median_ms"] * fu["bandwidth_fraction"]        # the fp32 RAM bound, in ms
    print(f"-> int8 at full size: {i8['median_ms']:.2f} ms against the fp32 RAM bound of {fp32_line:.2f} ms "
          f"({i8['median_ms'] / fp32_line:.2f} of it): int8 beats the fp32 line here")
    assert i8["median_ms"] < 0.8 * fp32_line
    viz.plot_kernel_times(lv, by, [1e3 * b / (bw_full * 1e9) for b in fused_bytes], dense_full,
                          title=f"STORED bench{' (--quick)' if res['quick'] else ''}: SYNTHETIC "
                                f"d=4096, d_ff=11008, {res['headline_threads']} thread(s)",
                          bound_label="fp32 RAM bound: (2k + n_pos) rows / measured GB/s",
                          xlabel="fraction of neurons listed (top-k)")
else:
    print("no stored benchmark yet: run `python -m teachkit.sparse.bench.suite --json data/sparse_bench.json`")

# %% [markdown]
# **What the stored benchmark shows.** At full size the weights (the size is printed above)
# cannot sit in the cache, and the fused kernel comes close to the RAM bound: the time of a
# sparse FFN is set by the bytes it must read, so computing about a tenth of the neurons makes
# it nearly ten times faster than the dense FFN (the cell checks that the speedup is above
# 0.7 / activity). numpy gather is far from the bound because `B[idx]` writes a copy of every
# active bundle before computing on it. int8 is the fastest in milliseconds but uses a smaller
# share of the bandwidth: each weight byte now needs a conversion to float, so the kernel
# starts to be limited by instructions rather than by memory.
#
# **Why two sets of figures.** The headline (`kernel_speedup_at_10pct`,
# `kernel_bandwidth_fraction`) and the table's fused row measure the same kernel on the same
# weights, but not in the same timings: the headline is the median of several separate rounds,
# each of which times bandwidth, dense and sparse back to back (so the ratio compares them under
# the same load), and divides by the best bandwidth seen anywhere in the run; the table's row is
# one timing, divided by the best bandwidth measured around the table. So they differ by the
# run-to-run spread, which the cell prints: the rounds' range, with the table's row inside it
# (to 10%). Quote the headline; the table is there for the shape across kernels.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Neuron clusters: hot neurons dense, cold neurons sparse
#
# Activation frequencies are skewed (notebook 10), so a few **hot** neurons fire on many
# tokens. Predicting them one by one saves little, so PowerInfer-2 merges them into a few large
# clusters that are always computed densely (on the NPU), and leaves the long **cold** tail to
# small clusters in which only the predicted-active neurons run (on the CPU; Xue et al.,
# arXiv:2406.06282v3, §3.1, §4.1.2). Sorting the neurons hot-first makes every hot
# cluster one contiguous slice of the bundle array: a sequential read. Here both kinds of
# cluster run on the same CPU kernel, `sparse_ffn_bundled`; what we take from PowerInfer-2 is
# the split and the order, not the NPU.
#
# Hot or cold is decided from **recorded activity**, as a profiling run would: we run 2000
# tokens through the SYNTHETIC layer, count how often each neuron fires, and call hot the most
# frequent neurons that make up half of all firings (at most 20% of the neurons).

# %%
# NBVAL_CHECK_OUTPUT
from teachkit.sparse.model import stats
from teachkit.sparse.model.clusters import classify_hot, cluster_size_for_overhead, make_clusters

X_prof = layer.hidden_states(0, 2000, seed=3)                   # a profiling run
freq = stats.firing_frequency(layer.preactivations(0, X_prof) > 0)
hot = classify_hot(freq, coverage=0.5, max_hot=0.2)
print(f"recorded over {len(X_prof)} tokens: {freq.mean():.1%} of neurons fire per token")
print(f"hot neurons: {hot.sum()} of {len(freq)} ({hot.mean():.1%}) carry "
      f"{freq[hot].sum() / freq.sum():.0%} of the firings; a hot neuron fires on "
      f"{freq[hot].mean():.2f} of tokens on average, a cold one on {freq[~hot].mean():.3f}")

# %% [markdown]
# **How big should a cluster be?** Every cluster is one task: one call into the kernel, with a
# fixed cost `t0` (the Python call and its argument checks) on top of `t1` per neuron. The
# overhead stays below 5% of the work when a task has at least `t0 / (0.05 · t1)` neurons
# (`cluster_size_for_overhead`). We measure both on one thread (`parallel=False`), as a worker
# of a pipeline runs its tasks. `t0` is an empty call made back to back, as a worker's tasks
# follow each other (its code stays warm). `t1` must be the cost of a neuron whose weights come
# from RAM, so it is taken between two calls made the same way, both after a flush: one over
# 1024 neurons and one empty; their difference is the 1024 neurons' work, with the flush's
# extra fixed cost cancelled. A hot cluster computes all its neurons; a cold cluster only its
# active ones, about `c · p_cold` of `c` (`p_cold`: a cold neuron's mean firing rate, printed
# below), so cold clusters must be larger by `1 / p_cold` to carry the same work per task.

# %%
# NBVAL_IGNORE_OUTPUT
Bh = np.ascontiguousarray(Bl[np.argsort(-freq, kind="stable")])  # hot-first bundle order
x0, y0 = X[0], np.zeros(1024, np.float32)
t0 = median_seconds(lambda: kernels.sparse_ffn_bundled(Bh, np.zeros(0, np.int64), x0, y0, True,
                                                       parallel=False), repeats=51)
all1024, none = np.arange(1024, dtype=np.int64), np.zeros(0, np.int64)
t_full, t_empty = (median_seconds(lambda ids=ids: kernels.sparse_ffn_bundled(Bh, ids, x0, y0, True, parallel=False),
                                  repeats=9, before=flush) for ids in (all1024, none))
t1 = (t_full - t_empty) / 1024                      # both after a flush: the flush's fixed cost cancels
n_hot = int(hot.sum())
hot_size = min(cluster_size_for_overhead(t0, t1, 0.05), n_hot)                 # at most all hot
cold_size = min(cluster_size_for_overhead(t0, t1 * freq[~hot].mean(), 0.05), len(freq) - n_hot)
print(f"measured: t0 = {t0 * 1e6:.1f} us per task (warm empty call), t1 = {t1 * 1e6:.2f} us per neuron "
      f"(flushed: 1024 neurons {t_full * 1e6:.0f} us minus an empty call {t_empty * 1e6:.0f} us, / 1024)")
n_cold, p_cold = len(freq) - n_hot, freq[~hot].mean()
print(f"-> hot clusters of {hot_size} neurons (of {n_hot} hot), "
      f"cold clusters of {cold_size} neurons (of {n_cold} cold)")
assert 0 < t1 and t_empty < t_full, "1024 neurons from RAM must cost more than an empty call"
wanted = cluster_size_for_overhead(t0, t1 * p_cold, 0.05)       # before capping at the cold count
if wanted >= n_cold:
    print(f"-> the rule wants {wanted} cold neurons per task, no fewer than the {n_cold} there are: "
          f"the whole cold tail is ONE cluster")
else:
    print(f"-> the rule wants {wanted} cold neurons per task: the {n_cold} cold neurons make "
          f"{-(-n_cold // cold_size)} clusters")
T0_COMPILED = 0.1e-6     # a per-call cost for illustration: a kernel called from compiled code
compiled_size = cluster_size_for_overhead(T0_COMPILED, t1 * p_cold, 0.05)
print(f"-> with t0 = {T0_COMPILED * 1e6:.1f} us and the same t1: cold clusters of {compiled_size} neurons, "
      f"{-(-n_cold // compiled_size)} of them")
assert compiled_size < wanted
assert t0 > 10 * t1 * p_cold, "a Python-level call costs many times a cold neuron's average work"

# %% [markdown]
# **Why the cold tail may not split.** Read the printed `t0`, `t1` and cold count. A cold
# neuron costs a task only `p_cold · t1` on average (it runs only on the tokens where it
# fires), so the rule asks for `t0 / (0.05 · t1 · p_cold)` cold neurons per task. Here `t0`
# is a whole Python-level call with its argument checks, many times `p_cold · t1`; when the
# rule then asks for more neurons than the cold tail has (the cell prints which case held),
# the whole tail is one cluster, and splitting it would only add calls. Small clusters pay off
# when the per-call cost is small, as in the printed line with `t0 = 0.1` µs (a value for
# illustration): a kernel called from compiled code rather than from Python.

# %% [markdown]
# The FFN over clusters: reorder the bundles hot-first once, run every hot cluster on its whole
# slice, and run each cold cluster on its active neurons only, all accumulating into the same
# output. With the oracle active set this equals the dense FFN exactly (the hot neurons that
# happen to be off this token contribute `h = 0`). Both loops call the same CPU kernel; in
# PowerInfer-2 the hot loop would run on the NPU. The cluster counts depend on the sizes just
# measured, so they differ from machine to machine; the equality does not.

# %%
cl = make_clusters(freq, hot_size=hot_size, cold_size=cold_size, coverage=0.5, max_hot=0.2)
assert cl.n_hot == hot.sum()
Bh = np.ascontiguousarray(Bl[cl.order])            # hot-first bundle order
pos_of = np.empty_like(cl.order)
pos_of[cl.order] = np.arange(len(cl.order))
x0 = X[0]
active_pos = np.sort(pos_of[reference.active_set(Bl, x0, True)])
y = np.zeros(1024, np.float32)
for a, b in cl.hot:
    kernels.sparse_ffn_bundled(Bh, np.arange(a, b, dtype=np.int64), x0, y, True)
cold_parts = cl.cold_active(active_pos[active_pos >= cl.n_hot])
for part in cold_parts:
    kernels.sparse_ffn_bundled(Bh, part, x0, y, True)
dense0 = reference.dense_ffn_ref(Bl, x0, True)
print(f"{len(cl.hot)} hot clusters; cold clusters with work this token: {len(cold_parts)} of {len(cl.cold)}")
print("hot (dense) + cold (sparse) clusters == dense FFN:", np.allclose(y, dense0, rtol=1e-4, atol=1e-4))
assert np.allclose(y, dense0, rtol=1e-4, atol=1e-4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# If a check fails, it names the property that failed and shows its first hint (the idea);
# `check.hint(name, 2)` and `check.hint(name, 3)` give the formula and the code's shape, and
# `check.solution(name)` prints self-contained reference code.
#
# 1. `sparse_ffn_parallel(B, idx, x)`: write the **fused bundled kernel** of section 4 yourself,
#    as a numba `@njit(parallel=True)` function with `prange`. `B` is a float32 `(n, 3, d)` array
#    of `[gate | up | down]` bundles, `idx` an int64 list of neurons (unsorted, maybe repeated),
#    `x` a float32 `(d,)` vector; return a new `(d,)` array `Σ_{i∈idx} relu(gate_i·x)·(up_i·x)·down_i`.
#    It must be race-free: section 3's racy kernel wrote every neuron into one shared `out`; here
#    each thread needs its own partial row (section 3 did this for the down projection alone; now
#    the dot products, the ReLU and the skip of `h = 0` go in the same loop). The checker runs it
#    on a collision like section 3's (2,000,000 neurons into 8 outputs) on at least two threads, checks
#    that a NaN in the down row of a neuron with `h = 0` never reaches the output (that row must
#    not be read), and that your inputs are left unchanged.
# 2. `bandwidth_bound_ms(k, n_pos, d, bytes_per_weight, scale_bytes, bandwidth_GBps)`: section
#    5's RAM bound for **any** weight format. Section 5 wrote it for fp32 rows; the int8 kernel
#    reads rows of `d` one-byte weights, and each row it reads also brings its float32 scale
#    (`quantize_int8` keeps one per row). `k` neurons are listed, `n_pos` of them have `h ≠ 0`,
#    each row holds `d` weights of `bytes_per_weight` bytes plus `scale_bytes` of scale (4 for
#    int8, 0 for fp32), and RAM delivers `bandwidth_GBps` (1 GB = 10⁹ bytes). Return the least
#    time **in milliseconds**. The checker tries every neuron firing, none, int8 rows with
#    scales, and random formats; the cell then prints how the int8 bound compares with the fp32
#    one for this layer's `d`. Is it exactly a quarter? Why not?

# %%
from numba import njit, prange  # noqa: F811 (imported again so that this cell stands alone)


@njit(parallel=True)
def my_sparse_ffn_parallel(B, idx, x):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.sparse_ffn_parallel(my_sparse_ffn_parallel)


# %%
def my_bandwidth_bound_ms(k, n_pos, d, bytes_per_weight, scale_bytes, bandwidth_GBps):
    raise NotImplementedError  # YOUR CODE HERE


if check.bandwidth_bound_ms(my_bandwidth_bound_ms):
    int8, fp32 = (my_bandwidth_bound_ms(100, 50, 1024, b, s, 20.0) for b, s in ((1, 4), (4, 0)))
    print(f"int8 bound / fp32 bound at d = 1024: {int8 / fp32:.4f} (a quarter would be 0.25)")
