# %% [markdown] slideshow={"slide_type": "slide"}
# # 13 · The neuron-cluster pipeline
#
# With the cache of notebook 12, most of a token's active neurons are already in RAM and the
# rest must be read from flash. A read takes far longer than computing on a neuron, so this
# notebook asks one question: **what should the compute thread do while the reads are in
# flight?**
#
# PowerInfer-2's answer (Xue et al., arXiv:2406.06282v3, §4.3 "Neuron-Cluster-Level Pipeline"
# and Fig. 6): cut each layer's work into **clusters** of a few neurons, put the missing
# clusters' reads in flight at once, and meanwhile compute whatever is in memory, *without
# waiting at a matrix boundary*. Its Fig. 6-a, the matrix-level pipeline, waits until every
# neuron of a matrix is available before it moves on to the next matrix (gate, then up/down);
# Fig. 6-b, the neuron-cluster-level pipeline, breaks that barrier: once a cluster is done, the
# compute moves on to in-memory clusters of the next matrix while other clusters' reads are
# still in flight.
#
# **What you will do**
#
# 1. Cut the FFN into two stages per cluster (gate, then up/down) and check that together they
#    give what the fused kernel gives.
# 2. Run three schedules (serial, matrix-level, cluster-level) on the same tokens: same answers;
#    then time them.
# 3. Read one layer's Gantt chart: when the reads are submitted, in flight and landed, and what
#    the compute thread does meanwhile; then see why this machine shows little gain.
# 4. Model the same layer on a phone-like machine (SIMULATED), where the cluster-level pipeline
#    wins clearly, and find out what decides the gain.
# 5. Read in two phases: the gate first, up/down only if it fired.
# 6. See the pipeline stop cleanly, in bounded time, when a read fails.
#
# **The takeaway.** Overlap can hide at most the shorter of compute and I/O: a layer takes at
# least `max(compute, I/O)`, against `compute + I/O` with no overlap. Breaking the matrix barrier
# lets the up/down work on neurons already in memory run under the reads; that pays when compute
# and I/O take similar time, as on a phone (in section 4's model, asserted above 1.3×). On the
# course VM the reads take several times longer than the compute, so the three schedules
# measure about the same.
#
# The FFN layers are **SYNTHETIC**.

# %%
import sys
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
# In PowerInfer-2 (arXiv:2406.06282v3, §4.3) a cluster passes five stages: **predict → gate
# read → gate compute → up/down read → up/down compute**. The fused bundled kernel of notebook 11
# (`kernels.sparse_ffn_bundled`) computes `Σ h_i down_i` in one pass; the pipeline cuts it in
# two, so that the two compute stages can be scheduled separately:
#
# * `gate_compute`: `g_j = gate_{rows[j]} · x` for the cluster's rows;
# * `updown_compute`: for `g_j > 0`, `h_j = g_j (up_j · x)` and `out += h_j down_j`.
#
# Together they must give what the fused kernel gives (to float rounding). Work that is
# already in memory has nothing to wait for between the stages, so the cluster schedule runs it
# as one `fused_compute` (that fused kernel) and keeps the two stages for clusters that arrive
# from flash. Until section 5, a missing neuron's bundle (gate, up and down rows) is read in one
# go, so "gate read" and "up/down read" are one read (`bundle_read`).

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
# neurons, so a layer's misses form several clusters, and `io_depth=64` puts up to 64 reads (8
# clusters) in flight at once: usually all of a layer's. With the oracle predictor every
# schedule must reproduce the dense FFN. The cell also prints each run's cold hit rate: the
# share of the active neurons outside the hot region that were already in the cache.

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
# ## 3. The Gantt chart: where one layer's time goes
#
# **The take-away: this layer is I/O-bound.** The compute bars are tiny next to the reads, so
# the matrix-level and the cluster-level run end at about the same time: both wait for the
# last read.
#
# We draw one token and one layer of the run above, in both runs: the layer with the most reads
# over the timed tokens and a typical token for it (the cell prints which). Both engines hold
# the same neurons in their caches, so they read the same clusters; section 4's model uses the
# same token and layer. The engine runs two threads: the **compute thread** predicts, looks up
# the cache, submits the layer's reads (`io_submit`, Linux AIO, notebook 12), then computes; the
# **I/O thread** waits for reads to complete and hands each landed cluster over.
#
# **How to read the chart** (time from the start of the layer):
#
# * `io 1`, `io 2`, ... (bottom): one bar per read cluster, from the start of the layer's submit
#   to the landing of its last read; the dashed line is the layer's last landing.
# * `compute: predict, lookup, submit, wait`: the predictor (grey), the untraced cache lookup
#   (hatched), the **submit** (cyan), waiting for a read (light grey).
# * `compute: gate`, `compute: up/down`: work in two steps (section 1), every unit in the
#   matrix-level run, the read clusters in the cluster-level run; `compute: fused`: the
#   cluster-level run's in-memory work (one unit per cache region) in one pass.
# * Look for the barrier: no up/down before the dashed line in the matrix-level run; in the
#   cluster-level run the fused work comes right after the submit, while the reads fly.

# %%
from teachkit.sparse.planner.tradeoffs import (GATE_SHARE, makespan_over_ratios, pipeline_makespans,
                                               pipeline_schedule, stage_times)

COMPUTE = {"gate_compute", "updown_compute", "fused_compute"}
reads_per_layer = np.sum([[sum(TraceEvent._make(e).is_read and e[2] == l for e in events) for l in range(4)]
                          for events in traces["cluster"]], axis=0)
busiest = int(np.argmax(reads_per_layer))
# the timed tokens with the median number of reads in that layer (the same on every run: the caches
# decide it); of those, the one with the median compute (a thread switch in the middle of one kernel
# call would otherwise pass for compute)
per_token = [stage_times(events, busiest) for events in traces["cluster"]]
n_median = sorted(len(t["read_ms"]) for t in per_token)[len(per_token) // 2]
typical = sorted((t["in_memory_ms"] + sum(t["compute_ms"]), j) for j, t in enumerate(per_token)
                 if len(t["read_ms"]) == n_median)
k = typical[len(typical) // 2][1]
drawn = {sched: [e for e in map(TraceEvent._make, traces[sched][k]) if e.layer == busiest]
         for sched in ("matrix", "cluster")}
n_read = {sched: sum(e.is_read for e in ev) for sched, ev in drawn.items()}
print(f"token {4 + k} (timed token {k + 1} of {len(traces['cluster'])}), layer {busiest}: "
      f"{n_read['matrix']} read clusters in the matrix-level run, {n_read['cluster']} in the cluster-level run")
viz.plot_gantt_pair(traces["matrix"][k], traces["cluster"][k], layers={busiest}, rows="stage")


def busy_ms(events, stages):
    return 1e3 * sum(e.seconds for e in events if e.stage in stages)


parts = {}
for sched, ev in drawn.items():
    lookup = min(e.t0 for e in ev if e.stage == "submit") - max(e.t1 for e in ev if e.stage == "predict")
    parts[sched] = {"predict": busy_ms(ev, {"predict"}), "lookup": 1e3 * lookup, "submit": busy_ms(ev, {"submit"}),
                    "compute": busy_ms(ev, COMPUTE), "wait": busy_ms(ev, {"wait"})}
    print(f"{sched:8s} (ms)  " + "  ".join(f"{name} {v:.3f}" for name, v in parts[sched].items())
          + "   (compute: every gate, up/down and fused bar)")
submit_ratio = {sched: p["submit"] / p["compute"] for sched, p in parts.items()}
print("on this run, submitting the layer's reads took " + ", ".join(
    f"{submit_ratio[s]:.1f}x all its compute in the {s}-level run" for s in ("matrix", "cluster")) + ": submitting was "
    + ("longer than computing in both" if min(submit_ratio.values()) > 1 else
       "shorter than computing in both" if max(submit_ratio.values()) < 1 else "longer in one, shorter in the other"))

ev = drawn["cluster"]
start = min(e.t0 for e in ev if e.stage == "submit")
print("cluster-level: the clusters landed " + ", ".join(f"{1e3 * (e.t1 - start):.3f}" for e in sorted(
    (e for e in ev if e.is_read), key=lambda e: e.t1)) + f" ms after the submit began (it ended at "
      f"{1e3 * (max(e.t1 for e in ev if e.stage == 'submit') - start):.3f} ms)")
landed_at = {e.cluster: e.t1 for e in ev if e.is_read}
pickup_ms = sorted(1e3 * (e.t0 - landed_at[e.cluster]) for e in ev if e.stage == "gate_compute" and e.cluster in landed_at)
print(f"  each read cluster's gate started {pickup_ms[0]:.3f} to {pickup_ms[-1]:.3f} ms after the cluster landed; "
      f"the switch interval is {1e3 * sys.getswitchinterval():.1f} ms (Python's default: 5 ms)")
assert min(pickup_ms) >= 0                             # a cluster is computed only after it has landed
last_landing = max(e.t1 for e in ev if e.is_read)
read_ids = {e.cluster for e in ev if e.is_read}
early_reads = {e.cluster for e in ev if e.cluster in read_ids and e.stage == "updown_compute" and e.t0 < last_landing}
early_memory = [e for e in ev if e.stage == "fused_compute" and e.t0 < last_landing]
print(f"  in-memory batches started before the last landing: {len(early_memory)}; "
      f"read clusters whose up/down started before it: {len(early_reads)} of {len(read_ids)}")

# %% [markdown]
# **Notes on the chart.** A read cluster's gate starts a little after it lands (the printed
# delay): the I/O thread first copies it from a staging buffer into its cache row (3 KiB bundles
# in a 4 KiB stride cannot land there directly), then the compute thread must take the GIL,
# waiting up to one switch interval (the printed value; Python's default is 5 ms). `io 1` may
# land early: when a batch has more than `FIRST_BATCH_READS` reads, the first cluster goes to the
# kernel in an `io_submit` of its own, so the disk starts on it sooner.
#
# **Submitting the reads is not free.** The kernel does real work for each read inside
# `io_submit` (checking it, pinning the buffer's pages for `O_DIRECT`; on a VM, telling the
# hypervisor), while the layer's compute is small; the cell prints which was longer on this run.
# The submit sits on every schedule's critical path. The next cell checks, over every timed
# token, that only the cluster-level run started up/down (or fused) work while reads were in
# flight.

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
quartile_spread = max(float(np.percentile(v, 75) - np.percentile(v, 25)) for v in token_ms.values())
compute, io = np.median([row[:2] for rows in lanes.values() for row in rows], axis=0)
print(f"medians over {len(token_ms['cluster'])} tokens, the schedules taking turns; "
      f"reads in flight / compute: {io / compute:.1f}x ({'I/O' if io > compute else 'compute'}-bound)")
print(f"largest gap between the schedules' medians {gap:.2f} ms, the tokens' own spread (widest quartile range) "
      f"{quartile_spread:.2f} ms: " + (f"{min(medians, key=medians.get)} is fastest here" if gap > quartile_spread
                              else "no order between the schedules beyond the noise"))
print(f"so overlap can hide at most the compute, its median over all schedules' tokens {compute:.2f} ms, "
      f"of the serial schedule's median token {np.median(token_ms['serial']):.2f} ms")
per_token_submit = float(np.median([row[3] for rows in lanes.values() for row in rows]))
print(f"per token, submitting the reads took {per_token_submit / compute:.1f}x as long as computing, on this run")
kernel_calls = {sched: float(np.median([sum(e[1] in {"gate_compute", "updown_compute", "fused_compute"} for e in events)
                                        for events in traces[sched]])) for sched in schedules}
print("kernel calls per token (median): " + ", ".join(f"{sched} {n:.0f}" for sched, n in kernel_calls.items()))
assert kernel_calls["serial"] < min(kernel_calls["matrix"], kernel_calls["cluster"])
# per token and layer: matrix makes a gate and an up/down call per unit, cluster one fused call per in-memory
# unit and both for each read cluster, so matrix makes exactly one call more per in-memory unit
for ev_m, ev_c in zip(traces["matrix"], traces["cluster"]):
    for l in range(4):
        calls = {s: sum(e[1] in COMPUTE and e[2] == l for e in ev) for s, ev in (("matrix", ev_m), ("cluster", ev_c))}
        in_memory_units = sum(e[1] == "fused_compute" and e[2] == l for e in ev_c)
        assert calls["matrix"] - calls["cluster"] == in_memory_units, (l, calls, in_memory_units)
print("every timed token and layer: matrix calls - cluster calls = the in-memory units (one per cache region)")

# %% [markdown]
# **Why this machine shows little gain.** On the course VM the reads take far longer than the
# compute, so overlap has little to hide, and the three schedules take about the same time.
#
# * **The layers are I/O-bound** when reads are in flight longer than the compute takes (the
#   ratio printed above says which). A layer cannot end before its last read lands, whatever
#   the schedule.
# * **A schedule only changes what the compute thread does meanwhile:**
#   * `serial` waits for every read, then computes everything in one fused pass;
#   * `matrix` does the in-memory gates, then waits at the barrier;
#   * `cluster` runs the in-memory work (fused) while the reads fly, then each cluster as it
#     lands.
# * **Overlap can save at most the smaller lane**, here the compute (the line "so overlap can
#   hide at most ...").
# * **Every schedule pays the same fixed costs first:** the predictor, the lookup and the
#   submit (the last line compares the submit with the compute, per token).
#
# **Is the gap between schedules real?** The schedules take turns token by token, so they see
# the same machine load. The line "largest gap ..." compares the gap between their medians with
# the tokens' own spread (the widest quartile range) and says which held. When the gap is within
# the spread, which schedule comes out lowest is noise. (The *waiting* column can still differ:
# the cluster schedule spends part of the wait computing in-memory work.)
#
# **Reading the columns:**
#
# * Compute, waiting and submitting do not add up to the token: the rest is the predictor, the
#   cache lookup and Python.
# * The compute column differs between schedules that do the same arithmetic. The call counts
#   explain why `serial` is lowest: it makes one fused call per cache region, where `matrix`
#   makes a gate and an up/down call per unit and `cluster` one fused call per in-memory unit
#   and two per read cluster (so `matrix` makes one call more than `cluster` per in-memory unit,
#   asserted). They do not order `matrix` and `cluster`: there, calls this short mostly fetch
#   their weights into the CPU's caches, and `cluster`'s calls run while the I/O thread is busy,
#   so their time depends on what ran beside and before them. Read the column per schedule,
#   not as a ranking.
#
# **Reads could start sooner:** no read is in flight while the predictor and the lookup run;
# notebook 14 measures a look-ahead (`EngineConfig(lookahead=True)`) that predicts early.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. When the cluster pipeline wins: the same layer on a phone-like machine (SIMULATED)
#
# We cannot make this machine's compute slower or make its disk deliver reads one by one.
# Instead we feed a model (`teachkit.sparse.planner.tradeoffs.pipeline_makespans`) the stage
# times of the layer drawn in section 3 (same token, same layer) and change one thing at a
# time. The model's numbers are SIMULATED, not measured.
#
# The model has two lanes (the predictor, lookup and submit are left out: every schedule pays
# them alike): one **I/O lane** that delivers the read clusters one after another, and one
# **compute lane**. It gives each schedule's **makespan**, the time until the layer's last work
# ends:
#
# * serial: all reads, then all compute;
# * matrix: the in-memory gates overlap the reads; a barrier at the end of the gate matrix;
#   then the read clusters' gates and every up/down (the gate is taken as a third of a
#   neuron's work);
# * cluster: the in-memory work overlaps the reads; each read cluster is computed as soon as it
#   has landed and the compute lane is free.
#
# The next cell sets the compute as measured here, or slows every compute stage until
# compute = I/O, the regime PowerInfer-2 was built for (a phone's CPU against its flash). The
# reads land one by one, evenly over the measured burst.

# %%
st = per_token[k]                                      # the token and layer drawn above
n_reads, io_ms = len(st["read_ms"]), sum(st["read_ms"])
read_compute = sum(st["compute_ms"])                   # each read cluster's own gate and up/down
total_compute = st["in_memory_ms"] + read_compute
ratios = {"measured": total_compute / io_ms, "phone-like": 1.0}
ONE_BY_ONE = "one by one"                              # the other landing pattern
landings = {"as measured": st["read_ms"], ONE_BY_ONE: [io_ms / n_reads] * n_reads}
print(f"token {4 + k}, layer {busiest}: {n_reads} read clusters; the burst took {io_ms:.3f} ms from the first submit "
      f"to the last landing, the first cluster landed at {st['read_ms'][0] / io_ms:.2f} of it")
print(f"compute {st['in_memory_ms']:.3f} ms on neurons in memory ({st['in_memory_ms'] / total_compute:.0%} of it) "
      f"+ {read_compute:.3f} ms on the read clusters: compute / I/O = {ratios['measured']:.2f}")
makespan, gain = {}, {}
for landing, reads in landings.items():
    sweep = makespan_over_ratios(reads, st["compute_ms"], st["in_memory_ms"], list(ratios.values()))
    for j, name in enumerate(ratios):                   # every compute stage scaled together
        makespan[landing, name] = {s: float(sweep[s][j]) for s in ("matrix", "cluster")}
        gain[landing, name] = sweep["matrix"][j] / sweep["cluster"][j]
for name, ratio_ci in ratios.items():
    print(f"  compute/I-O {ratio_ci:4.2f} ({name}): matrix / cluster makespan {gain[ONE_BY_ONE, name]:.2f}x")
    a, b = makespan["as measured", name], makespan[ONE_BY_ONE, name]
    assert abs(a["matrix"] - b["matrix"]) < 1e-9        # the barrier waits for the last landing, however they land
    assert abs(a["cluster"] - b["cluster"]) <= ratio_ci * io_ms / total_compute * read_compute + 1e-9
print("  reads landing as measured instead: the same gains, to within "
      f"{max(abs(gain['as measured', n] - gain[ONE_BY_ONE, n]) for n in ratios):.2f}x")
assert gain[ONE_BY_ONE, "phone-like"] > 1.3 and gain[ONE_BY_ONE, "phone-like"] >= gain[ONE_BY_ONE, "measured"]
assert all(g >= 1.0 - 1e-9 for g in gain.values())     # the cluster schedule never loses in the model
saved = len(X) * (makespan[ONE_BY_ONE, "measured"]["matrix"] - makespan[ONE_BY_ONE, "measured"]["cluster"])
print(f"at this machine's ratio the model saves about {len(X)} layers x {saved / len(X):.3f} ms = {saved:.3f} ms per "
      f"token; the measured tokens' spread (widest quartile range, section 3) is {quartile_spread:.2f} ms: the saving is "
      + ("below" if saved < quartile_spread else "not below") + " the spread on this run")
# with nothing in memory (a cold cache), every compute waits on its read: then the landing pattern matters
cold = {landing: pipeline_makespans(reads, [io_ms / n_reads] * n_reads) for landing, reads in landings.items()}
print("cold cache (nothing in memory), compute = I/O: matrix / cluster " + ", ".join(
    f"{m['matrix'] / m['cluster']:.2f}x with reads landing {landing}" for landing, m in cold.items()))
assert n_reads >= 2 and cold[ONE_BY_ONE]["matrix"] / cold[ONE_BY_ONE]["cluster"] > 1.3   # 2n/(n+1) for n reads

# %% [markdown]
# **What the model shows.** The gain needs a compute as long as the I/O: at this machine's ratio
# the cluster schedule hides only the in-memory up/down, a fraction of a small compute, and per
# token that saving is compared with the measured tokens' spread in the printed line; at
# compute = I/O the matrix schedule must do the in-memory up/down after the barrier, the cluster
# schedule does it under the reads. How the reads land hardly matters here: the cluster schedule
# runs the in-memory work (most of the compute, the printed share) first, and the matrix barrier
# waits for the last landing either way. Landing matters with a cold cache (the last line),
# where every compute waits on its read and reads landing one by one let the cluster schedule
# compute each cluster while the next is in flight.
#
# **The phone-like case, drawn** (SIMULATED from the model, not measured): this layer's stage
# times with every compute stage slowed so that compute = I/O, the reads landing one by one.

# %%
slow = io_ms / total_compute                           # every compute stage this many times slower
phone = {"read_ms": landings[ONE_BY_ONE], "compute_ms": [slow * c for c in st["compute_ms"]],
         "in_memory_ms": slow * st["in_memory_ms"]}
m = pipeline_makespans(**phone)
print(f"phone-like layer: compute {slow:.1f}x slower than measured here (compute / I/O = "
      f"{m['compute_ms'] / m['io_ms']:.2f}), {n_reads} reads landing one by one")
print(f"  makespan: serial {m['serial']:.3f} ms, matrix {m['matrix']:.3f} ms, cluster {m['cluster']:.3f} ms; "
      f"no schedule beats {m['bound']:.3f} ms")
print(f"  cluster beats matrix by {m['matrix'] - m['cluster']:.3f} ms, {m['matrix'] / m['cluster']:.2f}x "
      f"(matrix {m['matrix'] / m['bound']:.2f}x the bound, cluster {m['cluster'] / m['bound']:.2f}x)")
updown_in_memory = (1 - GATE_SHARE) * phone["in_memory_ms"]
print(f"  after the last landing the matrix schedule still computes {m['matrix'] - m['io_ms']:.3f} ms (the in-memory "
      f"up/down {updown_in_memory:.3f} ms, then the read clusters'), the cluster schedule {m['cluster'] - m['io_ms']:.3f} ms")
assert m["matrix"] / m["cluster"] > 1.3                 # a clear margin, in the model
assert m["matrix"] - m["cluster"] >= updown_in_memory - 1e-9   # at least the in-memory up/down moved under the reads
viz.plot_gantt_pair(pipeline_schedule(**phone, schedule="matrix", layer=busiest),
                    pipeline_schedule(**phone, schedule="cluster", layer=busiest),
                    titles=("SIMULATED matrix-level pipeline, phone-like (model, not a measurement)",
                            "SIMULATED cluster-level pipeline, phone-like (model, not a measurement)"), rows="stage",
                    io_row="io (one lane)")          # the model's reads take turns on one I/O lane

# %% [markdown]
# In the simulated charts the matrix schedule idles from the end of its in-memory gates to the
# barrier, then does all the rest; the cluster schedule keeps its compute lane busy while the
# reads arrive.
#
# The slider below moves the compute/I-O ratio over this layer's stage times, reads landing one
# by one (a static figure without a front end; the grey line is the slider's value, starting
# at the measured ratio). The cluster curve lies on the bound `max(compute, I/O)` almost
# everywhere (the cell prints how far above it it gets). The matrix curve sits above it until
# the two meet where the in-memory gates alone outlast the reads (the printed ratio), so the
# matrix schedule no longer waits at its barrier.

# %%
# NBVAL_IGNORE_OUTPUT
from teachkit import widgets
from teachkit.widgets.sparse import RATIOS             # the slider's range

curves = makespan_over_ratios(landings[ONE_BY_ONE], st["compute_ms"], st["in_memory_ms"], RATIOS)
above = curves["cluster"] / curves["bound"] - 1
meet = total_compute / (GATE_SHARE * st["in_memory_ms"])   # the ratio where the in-memory gates take as long as the reads
same = np.isclose(curves["matrix"], curves["cluster"], rtol=1e-9, atol=0)
assert np.array_equal(same, RATIOS >= meet * (1 - 1e-9))   # the model's curves meet exactly there
print(f"cluster curve: at most {above.max():.0%} above the bound (at compute/I-O {RATIOS[above.argmax()]:.2f}), "
      f"within 5% of it at {np.mean(above < 0.05):.0%} of the slider's ratios")
print(f"matrix and cluster curves meet from compute/I-O {meet:.2f} up"
      + ("" if meet <= RATIOS[-1] else " (beyond the slider's range)"))
widgets.makespan_widget(landings[ONE_BY_ONE], st["compute_ms"], st["in_memory_ms"])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Reading in two phases: gate first, up/down only if it fired
#
# A real predictor is not exact: it also selects neurons that will not fire (false
# positives). With `read_unit="split"` the pipeline first reads only the gate row of each
# missing neuron; after the gate compute, up and down are read only for the neurons whose gate
# fired (PowerInfer-2's two-phase loading, arXiv:2406.06282v3, §4.4). We add 30% random false
# positives to the oracle. Clusters hold 16 neurons from here on: section 2 used 8 only so that
# one layer's reads would form several bars in the Gantt chart; nothing is drawn here.

# %% slideshow={"slide_type": "notes"}
# NBVAL_CHECK_OUTPUT
class NoisyPredictor:
    oracle = True    # like the oracle it wraps, the engine keeps its bytes outside the memory budget

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
        h = eng.cache.history                          # one record per token
        read[unit] = {"bytes": eng.pipe.bytes_read, "reads": eng.pipe.n_reads, "hot": sum(r["hot_bytes_in"] for r in h),
                      "cold": sum(r["cold_bytes_in"] for r in h), "misses": sum(r["cold_misses"] for r in h)}
MiB, payload, gate_b, updown_b = 2**20, spec.payload_bytes(), spec.d * 4, 2 * spec.d * 4   # 3 KiB, 1 KiB, 2 KiB
b, sp = read["bundle"], read["split"]
assert len(h) == 16 and b["hot"] == sp["hot"]          # hot clusters are read whole (4 KiB a neuron) in both modes
M, G = b["misses"], sp["misses"]                       # one 4 KiB read (bundle) or one gate read (split) per cold miss
U, rest = divmod(sp["cold"] - G * gate_b, updown_b)    # split: the rest of its cold bytes are up/down reads
assert b["cold"] == M * spec.stride and rest == 0 and sp["reads"] == sp["hot"] // spec.stride + G + U
print(f"both  : {b['hot'] / MiB:.2f} MiB of hot clusters, read whole")
print(f"bundle: {b['bytes'] / MiB:5.2f} MiB in {b['reads']} reads; cold: M = {M} misses, a 4 KiB read each")
print(f"split : {sp['bytes'] / MiB:5.2f} MiB in {sp['reads']} reads; cold: G = {G} gate reads (1 KiB), "
      f"U = {U} up/down reads (2 KiB)")
parts = {"padding (M x 1 KiB)": M * (spec.stride - payload), "skipped up/down ((G - U) x 2 KiB)": (G - U) * updown_b,
         "misses ((M - G) x 3 KiB)": (M - G) * payload}
assert sum(parts.values()) == b["bytes"] - sp["bytes"]
print(f"bundle - split = {(b['bytes'] - sp['bytes']) / MiB:.2f} MiB = "
      + " + ".join(f"{name} {v / MiB:.2f} MiB" for name, v in parts.items()))
print(f"split had {'fewer' if G < M else 'more' if G > M else 'as many'} cold misses than bundle | "
      f"split reads fewer bytes: {sp['bytes'] < b['bytes']} | but more reads: {sp['reads'] > b['reads']}")

# %% [markdown]
# Fewer bytes, more (smaller) reads: whether that pays depends on the I/O profile of
# notebook 12, which is why the planner (notebook 14) chooses the read unit per machine. The
# difference has three parts, printed apart:
#
# * **padding:** a bundle read takes the 4 KiB stride; split reads 1 KiB and 2 KiB pieces, so its
#   cold reads carry no padding by construction (counted, not measured);
# * **skipped up/down:** a neuron whose gate did not fire gets no up/down read;
# * **misses:** after the gate read, split mode drops the neurons whose gate did not fire from
#   the cache (`invalidate_cold`: a half-read bundle must not stay cached); bundle mode keeps
#   them. A kept false positive takes a slot from another neuron, but may fire in a later token
#   and hit; the part's sign says which won on this run (negative: split missed more).
#
# The second phase is a second round trip to the disk, which the planner charges as a second
# burst. The outputs stay exact: a false positive only costs I/O, never accuracy.
#
# ## 6. A failed read stops the pipeline, with an error, in bounded time
#
# A disk can fail, and a thread can get stuck. The compute thread never waits forever: a failed
# read (or any exception in the I/O thread) is handed over and re-raised there, an `OSError`
# as a `FlashReadError` that names the layer, and a read that does not complete within
# `timeout` seconds raises `PipelineTimeout`. Here a test hook, `fault`,
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
    stopped_s = time.perf_counter() - t0
    print(f"stopped with FlashReadError: {err} (after {1e3 * stopped_s:.1f} ms elapsed)")
    print("caused by an OSError:", isinstance(err.__cause__, OSError), "| within 2 s:", stopped_s < 2.0)
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
