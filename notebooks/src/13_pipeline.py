# %% [markdown] slideshow={"slide_type": "slide"}
# # 13 · The neuron-cluster pipeline
#
# With the cache of notebook 12, most active neurons of a token are already in RAM and some
# must be read from flash. A read takes far longer than computing on a neuron, so the question
# is what the compute thread does while it waits. PowerInfer-2's answer (Xue et al.,
# arXiv:2406.06282v1, §4.3 and its Fig. 6):
#
# * split each layer's active neurons into **clusters** (work units of a few dozen neurons);
# * put the reads of the missing clusters in flight at once (up to `io_depth` reads), and let
#   the **compute thread** work on clusters already in memory meanwhile;
# * never wait at a *matrix* boundary: as soon as a cluster's gate is done, its up/down can
#   run, even while other clusters' gates are still being read.
#
# Each cluster passes five stages: **predict → gate read → gate compute → up/down read →
# up/down compute**. Every stage is recorded in an event trace, which we draw as a Gantt chart,
# and so is the moment the compute thread spends handing the reads to the kernel (`submit`).
# On 2 cores: one compute thread and one **I/O thread**. The compute thread hands a layer's
# reads to the kernel itself (`io_submit`, Linux AIO, notebook 12; in a batch of more than
# `teachkit.sparse.flash.unit_reads.FIRST_BATCH_READS` reads the first cluster goes alone, so
# the disk starts sooner, then the rest), up to `io_depth` of them, so they are in flight before
# it starts computing. When a cache row has exactly a bundle's layout (float32, no
# padding, as in notebook 14's full-size run) a read lands straight in it; otherwise (int8, or
# a padded bundle like this notebook's 3 KiB in a 4 KiB stride) it lands in a staging buffer
# and the I/O thread copies it. The I/O thread sleeps until reads complete, hands each
# finished cluster over, and submits any clusters still queued as reads free up. The FFN layers are **SYNTHETIC**.

# %%
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from teachkit import check, viz
from teachkit.sparse.compute import kernels
from teachkit.sparse.flash import platform_io
from teachkit.sparse.runtime.engine import EngineConfig, OraclePredictor, SparseFFN
from teachkit.sparse.flash.format import FlashSpec, write_flash
from teachkit.sparse.flash.reader import FlashReadError
from teachkit.sparse.runtime.pipeline import PipelineTimeout
from teachkit.sparse.runtime.trace import TraceEvent
from teachkit.sparse.compute.stages import gate_compute, updown_compute
from teachkit.sparse.compute.reference import dense_ffn_ref
from teachkit.sparse.model.synthetic import SyntheticConfig, SyntheticStack

workdir = Path(tempfile.mkdtemp(prefix="nb13_"))
stack = SyntheticStack(SyntheticConfig(d=256, d_ff=2048, n_layers=4, activity=0.1, rank=16, seed=3))
spec = FlashSpec(4, 2048, 3, 256, align=4096)
path = write_flash(workdir / "ffn.bin", spec, stack.bundles)
X = [stack.hidden_states(l, 16, seed=1) for l in range(4)]
oracle = OraclePredictor(stack.bundles, gated=True)
print(stack.describe())
for line in platform_io.describe():            # which I/O this platform gives the engine
    print(line)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Two stages per cluster: gate, then up/down
#
# The fused bundled kernel of notebook 11 (`kernels.sparse_ffn_bundled`) computes `Σ h_i down_i` in one pass. The pipeline cuts it in
# two so that the stages can be scheduled separately:
#
# * `gate_compute`: `g_j = gate_{rows[j]} · x` for the cluster's rows;
# * `updown_compute`: for `g_j > 0`, `h_j = g_j (up_j · x)` and `out += h_j down_j`.
#
# Together they must give exactly what the fused kernel gives. Work that is already in
# memory has nothing to wait for between the stages, so the cluster schedule runs it as one
# `fused_compute` (that fused kernel, on both cores when it is large enough to gain from the
# second) and keeps the two stages for clusters that arrive from flash.

# %%
# NBVAL_CHECK_OUTPUT
B, x = stack.bundles[0], X[0][0]
idx = oracle(0, x)
g = np.empty(len(idx), np.float32)
two_stage = updown_compute(B, idx, x, gate_compute(B, idx, x, g), True, np.zeros(256, np.float32))
fused = kernels.sparse_ffn_bundled(B, idx, x, np.zeros(256, np.float32), gated=True)
print(f"active neurons: {len(idx)} of 2048;  two-stage == fused: {np.allclose(two_stage, fused, atol=1e-4)}")
print("sparse == dense FFN:", np.allclose(two_stage, dense_ffn_ref(B, x, True), atol=1e-4))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Three schedules, same tokens, same answers
#
# * `serial`: read every missing cluster, then compute everything (what LLM in a flash does);
# * `matrix`: compute in-memory clusters while reads are in flight, but finish the whole gate
#   matrix before any up/down work;
# * `cluster`: no barrier; take whatever is ready.
#
# The budget is a quarter of the FFN, so every token misses some neurons; clusters hold 8
# neurons, so a layer's misses form several clusters, and `io_depth=64` lets all of them be in
# flight at once. With the oracle predictor every schedule must reproduce the dense FFN.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
budget = spec.ffn_bytes // 4
refs = [[dense_ffn_ref(stack.bundles[l], X[l][t], True) for l in range(4)] for t in range(16)]
schedules = ("serial", "matrix", "cluster")
engines = {sched: SparseFFN(path, EngineConfig(budget=budget, hot_neurons=128, cluster_size=8, schedule=sched,
                                               prefill_chunk=64, io_depth=64),   # a whole layer's reads in flight
                            oracle, gated=True, freq=stack.firing_prob)
           for sched in schedules}
worst = dict.fromkeys(schedules, 0.0)
token_ms = {sched: [] for sched in schedules}          # per timed token
lanes = {sched: [] for sched in schedules}            # per timed token: compute, reads in flight, waiting, submitting (ms)
traces = {sched: [] for sched in schedules}           # per timed token: the trace's events
overlaps = {sched: [] for sched in schedules}         # per timed token: computes started during reads
for t in range(16):
    for sched in schedules[t % 3:] + schedules[:t % 3]:   # the schedules take turns going first
        eng = engines[sched]
        eng.trace.clear()                              # the trace keeps the last token only
        t0 = time.perf_counter()
        ys = [eng(l, X[l][t]) for l in range(4)]
        dt = time.perf_counter() - t0
        eng.end_token()
        worst[sched] = max([worst[sched]] + [float(np.abs(y - r).max() / np.abs(r).max()) for y, r in zip(ys, refs[t])])
        if t >= 4:                                     # the first tokens fill the cache
            token_ms[sched].append(1e3 * dt)
            lanes[sched].append((1e3 * eng.trace.busy("compute", {"gate_compute", "updown_compute", "fused_compute"}),
                                 1e3 * eng.trace.covered("io"),
                                 1e3 * eng.trace.busy("compute", {"wait"}),
                                 1e3 * eng.trace.busy("compute", {"submit"})))
            traces[sched].append(list(eng.trace.events))
            overlaps[sched].append(eng.trace.computes_during_reads())
for sched, eng in engines.items():
    eng.close()
    print(f"{sched:8s} same output as dense (rel. error < 1e-4): {worst[sched] < 1e-4}  "
          f"cold hit rate {eng.cache.hit_rates()['cold']:.2f}")
assert max(worst.values()) < 1e-4
missed = [any(TraceEvent._make(e).is_read for e in events) for events in traces["cluster"]]
print(f"timed tokens that read from flash: {sum(missed)} of {len(missed)}")
assert all(missed)                                     # the budget is too small for any token to hit everywhere

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The Gantt chart: where the time goes
#
# Each bar is one event of the trace of the last token, in the layer with the most reads. On
# top, the reads: a bar runs from the moment a cluster's reads are submitted to the moment the
# cluster lands in the cache; reads overlap in time, so each one in flight gets its own row
# (`io 1`, `io 2`, ...). Below, the compute lane (up/down work on its own row), grey where the
# compute thread waits for a read. The dashed line marks the moment the layer's last read
# lands. Everything already in memory forms one batch per region (hot, cold). Fused work
# (gate and up/down in one pass) is drawn on the up/down row.
#
# On the compute row, before any compute: the prediction (grey), then the **submit** bar, the
# compute thread handing the layer's reads to the kernel (their addresses and one or two
# `io_submit` calls; the read bars start when it starts). It is part of every layer's critical
# path, and the cell prints how long it took here.
#
# * **Matrix-level pipeline:** the compute thread does the in-memory gates, then waits at the
#   barrier: no up/down work starts before the dashed line.
# * **Cluster-level pipeline:** the in-memory work (gate and up/down, fused, red) starts right
#   after the submit bar and runs while the reads fly: left of the dashed line. A read cluster's
#   own gate and up/down (green, orange) run as soon as it lands, so its bars sit left of the
#   line only if it landed before the last read. On the course VM most of a burst lands
#   together at its end (notebook 12's burst profile), so most of those bars sit at or just
#   right of the line; the cell prints how many of them started before it in the drawn layer.

# %%
reads = [engines["cluster"].trace.reads_per_layer().get(l, 0) for l in range(4)]
busiest = int(np.argmax(reads))
print(f"layer {busiest}: {reads[busiest]} read clusters in the cluster-level run")
viz.plot_gantt_pair(engines["matrix"].trace.events, engines["cluster"].trace.events, layers={busiest})
drawn = [e for e in map(TraceEvent._make, engines["cluster"].trace.events) if e.layer == busiest]
last_landing = max(e.t1 for e in drawn if e.is_read)
read_ids = {e.cluster for e in drawn if e.is_read}
submit = [e for e in drawn if e.stage == "submit"]
first_compute = min(e.t0 for e in drawn if e.stage in ("fused_compute", "gate_compute", "updown_compute"))
early_reads = {e.cluster for e in drawn if e.cluster in read_ids and e.stage == "updown_compute" and e.t0 < last_landing}
early_memory = [e for e in drawn if e.stage == "fused_compute" and e.t0 < last_landing]
print(f"cluster-level, layer {busiest}: submitting the reads took {1e3 * sum(e.seconds for e in submit):.3f} ms, "
      f"the first compute began {1e3 * (first_compute - submit[0].t1):.3f} ms after it")
print(f"  in-memory batches started before the last read landed: {len(early_memory)}; read clusters whose "
      f"up/down started before it: {len(early_reads)} of {len(read_ids)}")

# %%
# NBVAL_CHECK_OUTPUT
for sched in schedules:
    print(f"{sched:8s} up/down or fused computes started while the layer's reads were in flight: "
          f"{'some' if any(overlaps[sched]) else 'none'}")
assert any(overlaps["cluster"])
assert not any(overlaps["matrix"]) and not any(overlaps["serial"])

# %%
for sched in schedules:
    ms = np.array(token_ms[sched])
    compute, io, wait, submit_ms = np.median(lanes[sched], axis=0)
    print(f"{sched:8s} token {np.median(ms):5.2f} ms (quartiles {np.percentile(ms, 25):5.2f}-{np.percentile(ms, 75):5.2f})"
          f" | compute {compute:5.2f} ms, reads in flight {io:5.2f} ms, compute thread waiting {wait:5.2f} ms,"
          f" submitting {submit_ms:5.2f} ms")
medians = {sched: float(np.median(v)) for sched, v in token_ms.items()}
gap = max(medians.values()) - min(medians.values())
spread = max(float(np.percentile(v, 75) - np.percentile(v, 25)) for v in token_ms.values())
compute, io = np.median([row[:2] for rows in lanes.values() for row in rows], axis=0)
print(f"medians over {len(token_ms['cluster'])} tokens, the schedules taking turns; "
      f"reads in flight / compute: {io / compute:.1f}x ({'I/O' if io > compute else 'compute'}-bound)")
print(f"largest gap between the schedules' medians {gap:.2f} ms, the tokens' own spread (widest quartile range) "
      f"{spread:.2f} ms: " + (f"{min(medians, key=medians.get)} is fastest here" if gap > spread
                              else "no order between the schedules beyond the noise"))
print(f"so overlap can hide at most the compute, {compute:.2f} ms of a {np.median(token_ms['serial']):.2f} ms token")

# %% [markdown]
# **Why this machine shows little gain.** Here the reads take far longer than the compute, so
# overlap can hide only a small compute, and the three schedules take about the same time.
#
# * **The layers are I/O-bound.** Reads are in flight many times longer than the compute takes
#   (the ratio printed above). A layer cannot end before its last read lands, whatever the
#   schedule.
# * **A schedule only changes what the compute thread does meanwhile:**
#   * `serial` waits for every read, then computes everything in one fused pass;
#   * `matrix` does the in-memory gates, then waits at the barrier;
#   * `cluster` runs the in-memory work (fused) while the reads fly, then each cluster as it
#     lands. On the course VM most clusters of a burst land together near its end (notebook
#     12's burst profile, and the Gantt chart above), so in practice the overlap is mostly the
#     in-memory work.
# * **Overlap can save at most the smaller lane**, the compute. Its share of the token is the
#   last line printed.
#
# **Is the gap between schedules real?** The schedules take turns token by token, so they see
# the same machine load. The line before last compares the gap between their medians with the
# tokens' own spread (the widest quartile range). On the course VM, both quiet and beside a
# CPU-bound process, the gap stayed within the spread. Which schedule comes out lowest in one
# run is then noise in the reads (compare the "reads in flight" column).
#
# **Reading the columns:**
#
# * Compute, waiting and submitting do not add up to the token: the rest is the predictor, the
#   cache lookup and Python.
# * The fused work here is small, so it runs on the compute thread alone: a second thread
#   would cost more to wake than it saves (see `kernels.SERIAL_BELOW_BYTES`). Its wall time
#   still stretches when the I/O thread needs the same core.
#
# **The start of each layer is idle for the disk.** No read is in flight while the predictor
# runs (and, in a full model, attention), because nothing is known to be missing before the
# prediction. Predicting the next layer's neurons early (a *look-ahead*) would let reads start
# sooner. The engine can do it (`EngineConfig(lookahead=True)`); notebook 14 measures whether
# it pays.
#
# **When the cluster pipeline does pay off:** when compute and I/O take similar time, e.g. a
# big model with a high hit rate. Then a layer's *makespan* (the time until its last piece of
# work ends) is about `max(compute, I/O)` instead of `compute + I/O`. The exercise below
# computes this makespan; notebook 14 measures the whole ladder of ideas on a larger model.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### When the cluster pipeline wins: the same layer on a phone-like machine
#
# With compute as long as I/O and reads landing one by one, the cluster schedule clearly beats
# the matrix one. We show it with a model, not a measurement.
#
# We cannot make this machine's compute slower or its disk return reads one by one. Instead we
# feed a model (`teachkit.sparse.planner.tradeoffs.pipeline_makespans`) the stage times of the
# layer above and change one thing at a time. The model has two lanes:
#
# * one **I/O lane** that delivers the clusters in the order they landed;
# * one **compute lane** for the in-memory work and each read cluster's gate and up/down.
#
# It schedules them three ways:
#
# * serial: all reads, then all compute;
# * matrix: the in-memory gates overlap the reads; a barrier at the end of the gate matrix;
#   then the read clusters' gates and every up/down, the in-memory ones included (what the
#   engine's `matrix` schedule does; the gate is taken as a third of a neuron's work);
# * cluster: the in-memory work overlaps the reads; each read cluster is computed as soon as it
#   has landed and the compute lane is free.
#
# Two things decide how much overlap pays:
#
# * **how long the compute is next to the I/O;**
# * **how the reads *land*.** Here most of a burst lands near its end, though the first read
#   may land much earlier (the next cell prints when). A phone's UFS storage serves a queue of
#   requests in turn, so there they land one by one.
#
# PowerInfer-2 (Xue et al., arXiv:2406.06282v1, §4.3) was built for phones, where compute and
# I/O are of the same order.

# %%
from teachkit.sparse.planner.tradeoffs import makespan_over_ratios, pipeline_makespans, pipeline_schedule, stage_times

# the busiest layer's stage times in each timed token; the token with the median compute (a thread
# switch in the middle of one kernel call would otherwise pass for compute)
per_token = [stage_times(events, busiest) for events in traces["cluster"]]
st = sorted(per_token, key=lambda t: t["in_memory_ms"] + sum(t["compute_ms"]))[len(per_token) // 2]
n_reads, io_ms = len(st["read_ms"]), sum(st["read_ms"])
total_compute = st["in_memory_ms"] + sum(st["compute_ms"])
measured_ratio = total_compute / io_ms
landings = {"as measured": st["read_ms"], "one by one (the same burst, evenly spread)": [io_ms / n_reads] * n_reads}
print(f"layer {busiest}, the timed token with the median compute: {n_reads} read clusters, the burst {io_ms:.3f} ms "
      f"from the first submit to the last landing (the first read landed at {st['read_ms'][0] / io_ms:.2f} of it)")
print(f"compute {st['in_memory_ms']:.3f} ms on neurons in memory ({st['in_memory_ms'] / total_compute:.0%} of it) "
      f"+ {sum(st['compute_ms']):.3f} ms on the read clusters: compute / I/O = {measured_ratio:.2f}")
gain = {}
for label, reads in landings.items():
    sweep = makespan_over_ratios(reads, st["compute_ms"], st["in_memory_ms"], [measured_ratio, 1.0])
    for k, ratio in enumerate((measured_ratio, 1.0)):     # every compute stage scaled together
        gain[label, ratio] = sweep["matrix"][k] / sweep["cluster"][k]
        print(f"  reads land {label:42s} compute/I-O {ratio:4.2f}: matrix / cluster makespan "
              f"{gain[label, ratio]:.2f}x")
spread = "one by one (the same burst, evenly spread)"
assert gain[spread, 1.0] > 1.3 and gain[spread, 1.0] >= gain[spread, measured_ratio]
assert all(g >= 1.0 - 1e-9 for g in gain.values())     # the cluster schedule never loses in the model

# %% [markdown]
# The gain needs a compute as long as the I/O; how the reads land matters much less at this hit
# rate. Read the table from the bottom up:
#
# * **Compute as long as the I/O, reads landing one by one** (the regime PowerInfer-2 was built
#   for). The cluster schedule computes the in-memory work, then each cluster while the next one
#   is still on its way, so the layer takes little more than its I/O. The matrix schedule takes
#   the I/O, then everything but the gates after the barrier.
# * **This machine's measured ratio** (the rows with the small compute). The gain shrinks to
#   what the in-memory up/down can hide, a fraction of a small compute.
# * **How the reads land** can only matter through the compute that waits on them: each read
#   cluster's own gate and up/down, i.e. the share of the compute *not* on neurons in memory
#   (100% minus the printed share). At this hit rate that is little next to the in-memory work:
#   compare the two rows of each ratio, and the landing pattern moves the makespans little.
#   With a lower hit rate most of the compute would wait on reads, and reads landing one by one
#   would be what lets the cluster schedule start early.
#
# **The phone-like case, drawn.** This is the bottom row as the model schedules it:
#
# * this layer's measured stage times, every compute stage slowed by the same factor so that
#   compute equals I/O (a phone's CPU against its UFS disk);
# * the reads landing one by one, one at a time on the I/O lane.
#
# The two charts are SIMULATED from the model, not measured: each block of compute sits where
# the model puts it.

# %%
slow = io_ms / total_compute                           # every compute stage this many times slower
phone = {"read_ms": landings[spread], "compute_ms": [slow * c for c in st["compute_ms"]],
         "in_memory_ms": slow * st["in_memory_ms"]}
m = pipeline_makespans(**phone)
print(f"phone-like layer: compute {slow:.1f}x slower than measured here (compute / I/O = "
      f"{m['compute_ms'] / m['io_ms']:.2f}), {n_reads} reads landing one by one")
print(f"  makespan: serial {m['serial']:.3f} ms, matrix {m['matrix']:.3f} ms, cluster {m['cluster']:.3f} ms; "
      f"no schedule beats {m['bound']:.3f} ms")
print(f"  cluster beats matrix by {m['matrix'] - m['cluster']:.3f} ms, {m['matrix'] / m['cluster']:.2f}x "
      f"(matrix {m['matrix'] / m['bound']:.2f}x the bound, cluster {m['cluster'] / m['bound']:.2f}x)")
assert m["matrix"] / m["cluster"] > 1.3                 # a clear margin, in the model
viz.plot_gantt_pair(pipeline_schedule(**phone, schedule="matrix", layer=busiest),
                    pipeline_schedule(**phone, schedule="cluster", layer=busiest),
                    titles=("SIMULATED matrix-level pipeline, phone-like (model, not a measurement)",
                            "SIMULATED cluster-level pipeline, phone-like (model, not a measurement)"))

# %% [markdown]
# In the simulated charts the matrix schedule idles from the end of its in-memory gates to the
# barrier, then does all the rest; the cluster schedule keeps its compute lane busy while the
# reads arrive and ends shortly after the last one lands. Compare the section 3 charts, measured
# on this machine: there the compute bars are thin slivers under long reads, which is why the
# same two schedules end at nearly the same time here.
#
# The slider below moves the compute/I-O ratio over the measured stage times, reads landing one
# by one (a static figure when no front end is attached).

# %%
# NBVAL_IGNORE_OUTPUT
from teachkit import widgets

widgets.makespan_widget(landings[spread], st["compute_ms"], st["in_memory_ms"])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Reading in two phases: gate first, up/down only if it fired
#
# A real predictor is not exact: it also selects neurons that will not fire (false
# positives). With `read_unit="split"` the pipeline first reads only the gate row of each
# missing neuron; after the gate compute, up and down are read only for the neurons whose gate
# fired (PowerInfer-2's two-phase loading). We add 30% random false positives to the oracle.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
class NoisyPredictor:
    oracle = True                                      # it wraps the oracle: outside the budget too

    def __init__(self, base, extra=0.3, seed=0):
        self.base, self.extra, self.rng = base, extra, np.random.default_rng(seed)
        self.nbytes = base.nbytes

    def __call__(self, layer, x):
        idx = self.base(layer, x)
        fake = self.rng.choice(2048, int(self.extra * len(idx)), replace=False)
        return np.union1d(idx, fake).astype(np.int64)


read = {}
for unit in ("bundle", "split"):
    cfg = EngineConfig(budget=budget, hot_neurons=128, cluster_size=16, read_unit=unit, prefill_chunk=64)
    with SparseFFN(path, cfg, NoisyPredictor(oracle), gated=True, freq=stack.firing_prob) as eng:
        for t in range(16):
            for l in range(4):
                y = eng(l, X[l][t])
                assert np.allclose(y, dense_ffn_ref(stack.bundles[l], X[l][t], True), atol=1e-4)
            eng.end_token()
        read[unit] = (eng.pipe.bytes_read, eng.pipe.n_reads)
for unit, (b, n) in read.items():
    print(f"{unit:6s}: {b / 2**20:6.2f} MiB in {n} reads")
print("split reads fewer bytes:", read["split"][0] < read["bundle"][0], "| but more reads:", read["split"][1] > read["bundle"][1])

# %% [markdown]
# Fewer bytes, more (smaller) reads: whether that pays depends on the I/O profile of
# notebook 12, which is why the planner (notebook 14) chooses the read unit per machine. (Part
# of the saving here is padding: a whole-bundle read takes the 4 KiB stride, while the two
# phases read 1 KiB of gate and 2 KiB of up/down. And the second phase is a second round trip
# to the disk, which the planner charges as a second burst.)
# The outputs stay exact: a false positive only costs I/O, never accuracy.
#
# ## 5. A failed read stops the pipeline, with an error, in bounded time
#
# A disk can fail, and a thread can get stuck. The compute thread never waits forever: a failed
# read (or any exception in the I/O thread) is handed over and re-raised, and a read that does
# not complete within `timeout` seconds raises `PipelineTimeout`. Here a test hook, `fault`,
# plays the broken disk: the I/O thread calls it for every completed read.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
def broken_disk(n_reads):
    if n_reads >= 2:
        raise OSError(5, "Input/output error (injected)")


cfg = EngineConfig(budget=budget, hot_neurons=128, cluster_size=16, timeout=2.0, prefill_chunk=64)
eng = SparseFFN(path, cfg, oracle, gated=True, freq=stack.firing_prob, fault=broken_disk)
t0 = time.perf_counter()
try:
    for l in range(4):
        eng(l, X[l][0])
except FlashReadError as err:
    print("stopped with FlashReadError:", type(err).__name__, "| within 2 s:", time.perf_counter() - t0 < 2.0)
eng.close()

release = threading.Event()
cfg = EngineConfig(budget=budget, hot_neurons=128, cluster_size=16, timeout=0.5, prefill_chunk=64)
eng = SparseFFN(path, cfg, oracle, gated=True, freq=stack.firing_prob, fault=lambda n: release.wait(30))
t0 = time.perf_counter()
try:
    eng(0, X[0][0])
except PipelineTimeout as err:
    print("stuck read ->", type(err).__name__, "| raised within 2 s:", time.perf_counter() - t0 < 2.0)
release.set()
eng.close()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# If a check fails, its hint is the idea; `check.hint(name, 2)` and `check.hint(name, 3)` give the
# formula and the code's shape, and `check.solution(name)` prints the reference.
#
# **The pipeline's makespan.** A simplified pipeline (the engine keeps several reads in
# flight; here they take turns). One I/O lane reads clusters one after another (`read_ms[i]`,
# 0 for a cluster already in memory); one compute lane computes them in order (`compute_ms[i]`),
# each only after its own read *and* the previous compute. Return the time at which the last
# compute ends. Compare with no overlap (`sum(read) + sum(compute)`).

# %%
def my_pipelined_makespan(read_ms, compute_ms):
    raise NotImplementedError  # YOUR CODE HERE


_ = check.pipelined_makespan(my_pipelined_makespan)

# %%
import shutil

shutil.rmtree(workdir, ignore_errors=True)
