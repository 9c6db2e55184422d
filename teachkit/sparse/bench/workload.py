"""The engine benchmark's workload, and how an engine's tokens are timed.

**Workload** (SYNTHETIC, labelled so): the LLaMA-shaped synthetic FFN stack (gated, power-law
firing, ~10% activity, drifting hidden states; with ``layer_coupling`` > 0 the layers share a
residual stream, so a look-ahead can guess layer l+1 from layer l's input), float32, plus a fixed
region of attention weights (Wqkv with 4x smaller K/V, Wo) and a rank-64 low-rank predictor
per layer, which every engine reads each token. The active sets are the oracle ones from the
generator (so every engine computes the same FFN outputs); the predictor's *cost* is real
(its matvecs run), its *choice* is the oracle's: every throughput here uses **oracle active
sets**; the quality cost of a real predictor is measured on the trained LM (notebook 14).
Each flash file is verified (crc32) once after writing, then opened with ``verify=False``;
the page cache is dropped after writing.

**Timing**: a token is every layer's attention, then the engine's FFN. :func:`run_backend`
times one engine alone; :func:`run_interleaved` has every engine decode token t before any
decodes t+1, so all see the same machine load. Both report the median over the timed tokens.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..compute import kernels as K
from ..flash import platform_io
from ..flash.format import FlashFile, FlashSpec, write_flash
from ..planner.plan import profile_model
from ..flash.reader import drop_cache
from ..model.synthetic import SyntheticConfig, SyntheticStack

__all__ = ["TracePredictor", "Workload", "time_token", "run_backend", "run_interleaved", "disk_read_bytes",
           "io_path_record", "fused_parallel_is_faster", "cold_hit_rate", "round_floats"]


def disk_read_bytes() -> int | None:
    """Bytes this process has made the kernel fetch from storage (``/proc/self/io``); None where the OS keeps no count."""
    return platform_io.process_read_bytes()


def io_path_record(io: dict) -> dict:
    """What ran under the benchmark's reads, for its JSON: platform, read method, how the file was
    opened (from a :func:`~teachkit.sparse.planner.io_profile.profile_reads` result ``io``), and so whether
    the I/O bound is a disk figure or may be a memory one (reads served by the page cache)."""
    from ..flash.aio import kernel_aio_available

    how = io.get("open", "O_DIRECT" if io.get("direct") else "buffered")
    rec = platform_io.io_path("kernel" if kernel_aio_available() else "threads", how)
    rec["bound_is"] = ("disk: reads bypass or drop the page cache" if rec["uncached"] else
                       "possibly memory: reads may come from the page cache, so t_io and the tok/s bound may be optimistic")
    rec["notes"] = platform_io.describe()
    return rec


class TracePredictor:
    """Oracle active sets from a trace, at the real cost of a low-rank predictor (A: r x d, B: n x r).

    ``ahead_sets[l][t]`` (optional): what layer l's predictor guesses from layer l-1's input at
    token t, returned by :meth:`lookahead` at the same cost (the engine's look-ahead).
    """

    def __init__(self, sets: list, d: int, n: int, rank: int = 64, seed: int = 0, ahead_sets: list | None = None):
        rng = np.random.default_rng(seed)
        L = len(sets)
        self.sets, self.ahead_sets, self.t = sets, ahead_sets, 0
        self.A = [rng.standard_normal((rank, d), dtype=np.float32) for _ in range(L)]
        self.B = [rng.standard_normal((n, rank), dtype=np.float32) for _ in range(L)]
        self.nbytes = sum(a.nbytes + b.nbytes for a, b in zip(self.A, self.B))
        self._rows_a, self._rows_b = np.arange(rank), np.arange(n)
        self._z, self._s = np.empty(rank, np.float32), np.empty(n, np.float32)

    def _cost(self, layer, x):
        """The predictor's two matvecs and threshold, on both cores (the kernels, without argument checks)."""
        K.gather_dot_unchecked(self.A[layer], self._rows_a, x, self._z)
        K.gather_dot_unchecked(self.B[layer], self._rows_b, self._z, self._s)
        return self._s > 0

    def __call__(self, layer, x):
        self._cost(layer, x)
        return self.sets[layer][self.t]

    def lookahead(self, layer, x_prev):
        if self.ahead_sets is None or layer == 0:
            raise ValueError("this trace has no look-ahead guesses (pass ahead_sets; layer 0 has none)")
        self._cost(layer, x_prev)
        return self.ahead_sets[layer][self.t]


class Workload:
    """The synthetic stack, its flash files, fixed weights and token streams."""

    def __init__(self, cfg: SyntheticConfig, n_tokens: int, n_profile: int, workdir: Path):
        self.stack = stack = SyntheticStack(cfg)
        self.cfg, L, d, n = cfg, cfg.n_layers, cfg.d, cfg.d_ff
        self.spec = FlashSpec(L, n, 3, d, align=4096)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = write_flash(workdir / "ffn_bundled.bin", self.spec, stack.bundles)
        self.matrix_path = write_flash(workdir / "ffn_matrix.bin",
                                       FlashSpec(L, n, 3, d, layout="matrix", align=4096), stack.bundles)
        self.dense_path = self.path                 # the dense stream wants no padding between bundles
        if self.spec.stride != self.spec.bundle_bytes:
            b = self.spec.bundle_bytes
            align = min(4096, b & -b)
            self.dense_path = write_flash(workdir / "ffn_dense.bin", FlashSpec(L, n, 3, d, align=align),
                                          stack.bundles)
        for p in {self.path, self.matrix_path, self.dense_path}:
            FlashFile(p, verify=True)               # checked once here; the engines skip it
            drop_cache(p)
        rng = np.random.default_rng(cfg.seed + 1)
        self.attn = [(rng.standard_normal((d + d // 2, d), dtype=np.float32),
                      rng.standard_normal((d, d), dtype=np.float32)) for _ in range(L)]
        self.X = [stack.hidden_states(l, n_tokens, seed=1) for l in range(L)]
        self.sets = [stack.active_sets(l, self.X[l]) for l in range(L)]
        # the look-ahead's guesses: layer l's active set as seen from layer l-1's input
        self.ahead_sets = [None] + [stack.active_sets(l, self.X[l - 1]) for l in range(1, L)]
        prof_X = [stack.hidden_states(l, n_profile, seed=2) for l in range(L)]   # held-out profiling run
        prof = [stack.active_sets(l, prof_X[l]) for l in range(L)]
        self.profile = profile_model([[prof[l][t] for l in range(L)] for t in range(n_profile)], n)
        self.predictor = TracePredictor(self.sets, d, n, ahead_sets=self.ahead_sets)
        self.fixed = {f"attn{l}_{i}": w for l, ws in enumerate(self.attn) for i, w in enumerate(ws)}
        self._rows_qkv, self._rows_o = np.arange(d + d // 2), np.arange(d)
        # what every engine holds and reads each token: attention + predictor (counted via its nbytes)
        self.fixed_bytes = sum(a.nbytes for a in self.fixed.values()) + self.predictor.nbytes

    def attention(self, layer, x):
        """The attention projections' cost (q, smaller k and v, o), as matvecs on both cores."""
        qkv, wo = self.attn[layer]
        h = K.gather_dot(qkv, self._rows_qkv, x, np.empty(qkv.shape[0], np.float32))
        return K.gather_dot(wo, self._rows_o, np.ascontiguousarray(h[: x.shape[0]]), np.empty(wo.shape[0], np.float32))


def time_token(w: Workload, backend, t: int, check=None) -> float:
    """Seconds to decode token ``t``: every layer's attention, then ``backend``'s FFN.

    ``check(layer, t, y)``, if given, sees each layer's FFN output.
    """
    w.predictor.t = t
    t0 = time.perf_counter()
    for l in range(w.cfg.n_layers):
        x = w.X[l][t]
        w.attention(l, x)
        y = backend(l, x)
        if check is not None:
            check(l, t, y)
    backend.end_token()
    return time.perf_counter() - t0


def _summary(lat, n_warm, bytes_read) -> dict:
    timed = np.array(lat[n_warm:])
    return {"tok_s": float(1 / np.median(timed)), "ms_median": float(np.median(timed) * 1e3),
            "ms_p25": float(np.percentile(timed, 25) * 1e3), "ms_p75": float(np.percentile(timed, 75) * 1e3),
            "ms_p90": float(np.percentile(timed, 90) * 1e3),
            "bytes_read_per_token": float(bytes_read / len(timed))}


def run_backend(w: Workload, backend, n_warm: int, n_time: int, check=None) -> dict:
    """Decode ``n_warm + n_time`` tokens with one backend; time the last ``n_time``."""
    lat, br0 = [], 0
    for t in range(n_warm + n_time):
        if t == n_warm:
            br0 = backend.bytes_read
        lat.append(time_token(w, backend, t, check if t == n_warm else None))
    return _summary(lat, n_warm, backend.bytes_read - br0)


def run_interleaved(w: Workload, backends: dict, n_warm: int, n_time: int, checks=None, log=print) -> dict:
    """Every backend decodes token t before any decodes t+1, so all see the same machine load.

    Bytes read come from each engine's own reader counters; the mmap engine has none, so its
    bytes are the kernel's ``/proc/self/io`` read_bytes during its own calls (nan where the OS
    keeps no such count: macOS, Windows).
    """
    lat = {k: [] for k in backends}
    disk = {k: 0 for k in backends}
    br0, nr0 = {}, {}
    for t in range(n_warm + n_time):
        if t == n_warm:
            br0 = {k: b.bytes_read for k, b in backends.items()}
            nr0 = {k: b.n_reads for k, b in backends.items()}
            disk = {k: 0 for k in backends}
        for name, b in backends.items():
            d0 = disk_read_bytes()
            chk = checks.get(name) if (checks and t == n_warm) else None
            lat[name].append(time_token(w, b, t, chk))
            d1 = disk_read_bytes()
            disk[name] += float("nan") if d0 is None or d1 is None else d1 - d0     # nan: the OS keeps no count
        if t == n_warm - 1 or t == n_warm + n_time - 1:
            log(f"    token {t + 1}/{n_warm + n_time} done")
    out = {}
    for name, b in backends.items():
        read = b.bytes_read - br0[name] if b.bytes_read or name != "dense_mmap" else disk[name]
        out[name] = _summary(lat[name], n_warm, read)
        out[name]["disk_read_bytes_per_token"] = disk[name] / n_time
        out[name]["reads_per_token"] = (b.n_reads - nr0[name]) / n_time
    return out


def fused_parallel_is_faster(w: Workload, repeats: int = 15) -> bool:
    """Is the fused sparse kernel (``kernels.sparse_ffn_bundled``) faster on both cores than on one, on this workload's sizes?

    The two are timed alternately (one call each, ``repeats`` times, on several layers'
    active sets), so a burst of load from elsewhere on the machine hits both alike.
    """
    out = np.zeros(w.cfg.d, np.float32)
    for par in (False, True):                                              # compile / warm up
        K.sparse_ffn_bundled(w.stack.bundles[0], np.asarray(w.sets[0][0], dtype=np.int64), w.X[0][0], out, True,
                             parallel=par)
    times = {False: [], True: []}
    for i in range(repeats):
        l = i % w.cfg.n_layers
        B, idx, x = w.stack.bundles[l], np.asarray(w.sets[l][0], dtype=np.int64), w.X[l][0]
        for par in ((False, True) if i % 2 else (True, False)):
            t0 = time.perf_counter()
            K.sparse_ffn_bundled(B, idx, x, out, True, parallel=par)
            times[par].append(time.perf_counter() - t0)
    return float(np.median(times[True])) < float(np.median(times[False]))


def cold_hit_rate(history) -> float:
    """The cold region's hit rate over a cache's ``history`` (nan if no neuron went to it)."""
    n = sum(x["cold_hits"] + x["cold_misses"] for x in history)
    return sum(x["cold_hits"] for x in history) / n if n else float("nan")


def round_floats(obj):
    """``obj`` with every float rounded to 4 significant digits (numpy scalars made Python ones), for JSON."""
    if isinstance(obj, dict):
        return {k: round_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(f"{float(obj):.4g}")
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
