"""The engine quiet and under CPU load: does it keep its speed, and its ablation order?

    python -m teachkit.sparse.bench.load --quick --json PATH
    python -m teachkit.sparse.bench.load --quick --compare-settings --json PATH

A learner's laptop is rarely idle, and the course VM shares its two cores. :func:`under_load`
builds the ablation ladder (``sparse_flash`` → ``+bundle`` → ``+cache`` →
``+pipeline(matrix)`` → ``+pipeline``) once, on the SYNTHETIC workload of
:mod:`teachkit.sparse.bench.workload` (oracle active sets), and decodes the same tokens with
every engine, interleaved token by token, in alternating passes: quiet, then with one
CPU-bound process of its own beside it (started here, always killed), quiet, loaded, ...
Each figure is the median over the passes of each pass's median token. The result holds

* ``quiet_tok_s`` / ``loaded_tok_s`` per engine, and ``loaded_over_quiet`` for ``+pipeline``;
* the ladder's order by speed, quiet and loaded, whether they agree, and each pair of rungs
  that swapped (with the ratio of their speeds, quiet and loaded: a swap of two rungs within a
  few percent of each other is noise, one across a wide quiet gap is a lesson turned over);
* the threading setting (:func:`teachkit.numba_setup.status`, the kernels' serial threshold)
  and the load average at each pass.

The engines use one fixed configuration (a tenth of the neurons hot, clusters of 16, 64 reads
in flight, budget = FFN / 2), not a planned one: what is measured is the effect of the load.

``compare_settings`` runs :func:`under_load` in a fresh process per threading setting (they
are read when a process starts), the settings taking turns, and reports the median of each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ... import numba_setup
from ..compute import kernels as K
from ..baselines.sparse import NoCacheSparse
from .workload import Workload, round_floats, run_interleaved
from ..flash import platform_io
from ..runtime.engine import EngineConfig, SparseFFN
from ..model.synthetic import SyntheticConfig

__all__ = ["LADDER", "SETTINGS", "cpu_hog", "under_load", "compare_settings", "main"]

LADDER = ("sparse_flash", "+bundle", "+cache", "+pipeline(matrix)", "+pipeline")

# threading settings compared by ``compare_settings``: environment, and the kernels' serial threshold
# (None: the library's own :data:`teachkit.sparse.compute.kernels.SERIAL_BELOW_BYTES`)
SETTINGS = {
    "teachkit (passive, small kernels on one thread)": ({}, None),
    "OpenMP default (spin), every kernel threaded": ({"GOMP_SPINCOUNT": "300000"}, 0),
    "passive, every kernel threaded": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "workqueue layer, every kernel threaded": ({"NUMBA_THREADING_LAYER": "workqueue"}, 0),
    "one numba thread": ({"NUMBA_NUM_THREADS": "1"}, None),
}
_THREAD_VARS = numba_setup.USER_CHOICES + ("NUMBA_NUM_THREADS",)


def _die_with_parent():
    """In the hog, before it runs: Linux kills it when its parent dies (``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)          # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class cpu_hog:
    """One CPU-bound process beside this one while the ``with`` block runs (always killed after,
    and on Linux also if this process dies first)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        time.sleep(0.2)                          # let it start spinning
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        return False


def _order(tok_s: dict) -> list:
    return sorted(LADDER, key=lambda k: tok_s[k])          # slowest first


def under_load(shape: dict | None = None, tokens: tuple = (4, 16), passes: int = 3, log=print,
               workdir=None, budget_over_ffn: float = 0.5) -> dict:
    """The ablation ladder, quiet and beside one CPU-bound process; ``passes`` of each, alternating."""
    shape = {"d": 512, "d_ff": 2048, "n_layers": 4, **(shape or {})}
    n_warm, n_time = tokens
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="teachkit_load_")) if own else Path(workdir)
    try:
        w = Workload(SyntheticConfig(activity=0.1, seed=0, **shape), n_warm + n_time, 32, workdir)
        spec = w.spec
        max_act = max(len(s) for ls in w.sets for s in ls)

        def engine(schedule):
            cfg = EngineConfig(budget=int(spec.ffn_bytes * budget_over_ffn), hot_neurons=spec.n_neurons // 10, cluster_size=16,
                               schedule=schedule, io_depth=64, prefill_chunk=64)
            return SparseFFN(w.path, cfg, w.predictor, gated=True, fixed=w.fixed, freq=w.profile.freq, verify=False)

        makers = {"sparse_flash": lambda: NoCacheSparse(w.matrix_path, w.predictor, True, max_act, io_depth=64),
                  "+bundle": lambda: NoCacheSparse(w.path, w.predictor, True, max_act, io_depth=64),
                  "+cache": lambda: engine("serial"),
                  "+pipeline(matrix)": lambda: engine("matrix"),
                  "+pipeline": lambda: engine("cluster")}
        backends = {k: make() for k, make in makers.items()}
        runs = {"quiet": [], "loaded": []}
        try:
            for p in range(passes):
                for phase in ("quiet", "loaded"):
                    load0 = platform_io.load_average()
                    if phase == "loaded":
                        with cpu_hog():
                            r = run_interleaved(w, backends, n_warm, n_time, log=lambda s: None)
                    else:
                        r = run_interleaved(w, backends, n_warm, n_time, log=lambda s: None)
                    runs[phase].append({"tok_s": {k: v["tok_s"] for k, v in r.items()},
                                        "load_avg_1min": [load0, platform_io.load_average()]})
                    log(f"  pass {p + 1}, {phase:6s}: " + ", ".join(f"{k} {v['tok_s']:.0f}" for k, v in r.items())
                        + f" tok/s (load average {load0:.1f})")
        finally:
            for b in backends.values():
                b.close()
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    med = {ph: {k: float(np.median([r["tok_s"][k] for r in rs])) for k in LADDER} for ph, rs in runs.items()}
    order = {ph: _order(m) for ph, m in med.items()}
    swaps = [{"pair": [a, b], "quiet_b_over_a": med["quiet"][b] / med["quiet"][a],
              "loaded_b_over_a": med["loaded"][b] / med["loaded"][a]}
             for i, a in enumerate(LADDER) for b in LADDER[i + 1:]
             if (med["quiet"][a] < med["quiet"][b]) != (med["loaded"][a] < med["loaded"][b])]
    return {"label": "SYNTHETIC ablation ladder, oracle active sets, quiet vs one CPU-bound process beside it",
            "shapes": shape, "budget_over_ffn": budget_over_ffn, "tokens": {"warmup": n_warm, "timed": n_time}, "passes": passes,
            "quiet_tok_s": med["quiet"], "loaded_tok_s": med["loaded"],
            "loaded_over_quiet": med["loaded"]["+pipeline"] / med["quiet"]["+pipeline"],
            "loaded_over_quiet_by_engine": {k: med["loaded"][k] / med["quiet"][k] for k in LADDER},
            "ladder_order_quiet": order["quiet"], "ladder_order_loaded": order["loaded"],
            "ladder_order_same": order["quiet"] == order["loaded"],
            "ladder_swaps": swaps,                 # rung pairs whose order differs, with their speed ratios
            "threading": {**numba_setup.status(), "serial_below_bytes": K.SERIAL_BELOW_BYTES},
            "runs": runs, "cpus": os.cpu_count()}


def compare_settings(rounds: int = 3, quick: bool = True, log=print, settings: dict | None = None,
                     child_args: tuple = (), timeout_s: float = 900) -> dict:
    """:func:`under_load` once per setting per round, each in a fresh process, settings taking turns."""
    settings = settings or SETTINGS
    got = {name: [] for name in settings}
    with tempfile.TemporaryDirectory(prefix="teachkit_settings_") as tmp:
        for r in range(rounds):
            for i, (name, (env_extra, serial_below)) in enumerate(settings.items()):
                env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
                env.update(env_extra)
                out = Path(tmp) / f"{r}_{i}.json"
                cmd = [sys.executable, "-m", "teachkit.sparse.bench.load", "--json", str(out),
                       *(["--quick"] if quick else []), *child_args]
                if serial_below is not None:
                    cmd += ["--serial-below", str(serial_below)]
                try:
                    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, timeout=timeout_s)
                except subprocess.TimeoutExpired:        # run() has killed the child; its hog dies with it
                    got[name].append(None)
                    log(f"round {r + 1}, {name}: no result within {timeout_s} s")
                    continue
                res = json.loads(out.read_text())
                got[name].append(res)
                log(f"round {r + 1}, {name}: +pipeline {res['quiet_tok_s']['+pipeline']:.0f} quiet, "
                    f"{res['loaded_tok_s']['+pipeline']:.0f} loaded tok/s; ladder order same: "
                    f"{res['ladder_order_same']}")
    table = {}
    for name, all_rs in got.items():
        rs = [x for x in all_rs if x is not None]
        row = {"timed_out_rounds": len(all_rs) - len(rs), "quiet_tok_s": None, "loaded_tok_s": None,
               "loaded_over_quiet": None}
        if rs:
            q = float(np.median([x["quiet_tok_s"]["+pipeline"] for x in rs]))
            lo = float(np.median([x["loaded_tok_s"]["+pipeline"] for x in rs]))
            row.update({"quiet_tok_s": q, "loaded_tok_s": lo, "loaded_over_quiet": lo / q,
                        "ladder_order_same_in_rounds": [x["ladder_order_same"] for x in rs],
                        "threading": rs[0]["threading"],
                        "rounds": [{"quiet": x["quiet_tok_s"], "loaded": x["loaded_tok_s"]} for x in rs]})
        table[name] = row
    best_quiet = max([t["quiet_tok_s"] for t in table.values() if t["quiet_tok_s"]] or [float("nan")])
    for t in table.values():
        t["quiet_over_best_quiet"] = t["quiet_tok_s"] / best_quiet if t["quiet_tok_s"] else None
    return {"label": "engine (+pipeline) tok/s by threading setting, each in its own process, settings taking turns",
            "rounds": rounds, "settings": table}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="the engine quiet and beside a CPU-bound process")
    ap.add_argument("--quick", action="store_true", help="notebook-size workload (d=512), 3 passes")
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--passes", type=int, default=None, help="quiet/loaded passes (3 quick, 5 full)")
    ap.add_argument("--compare-settings", action="store_true",
                    help="once per threading setting (SETTINGS), each in its own process, settings taking turns")
    ap.add_argument("--rounds", type=int, default=3, help="with --compare-settings: rounds over the settings")
    ap.add_argument("--serial-below", type=int, default=None,
                    help="kernels streaming fewer bytes run on one thread (default kernels.SERIAL_BELOW_BYTES)")
    ap.add_argument("--workdir", default=None, help="where the temporary weight files go (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.serial_below is not None:
        K.SERIAL_BELOW_BYTES = args.serial_below
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.compare_settings:
        res = compare_settings(rounds=args.rounds, quick=args.quick, log=log)
        for name, t in res["settings"].items():
            if t["quiet_tok_s"] is None:
                log(f"{name:>50}: no round finished ({t['timed_out_rounds']} timed out)")
                continue
            log(f"{name:>50}: quiet {t['quiet_tok_s']:6.1f}, loaded {t['loaded_tok_s']:6.1f} tok/s "
                f"(x{t['loaded_over_quiet']:.2f}); quiet / best quiet {t['quiet_over_best_quiet']:.2f}")
    else:
        shape, tokens = (None, (4, 16)) if args.quick else ({"d": 1024, "d_ff": 4096}, (6, 24))
        res = under_load(shape, tokens, passes=args.passes or (3 if args.quick else 5), log=log, workdir=args.workdir)
        log(f"+pipeline: quiet {res['quiet_tok_s']['+pipeline']:.1f} tok/s, loaded {res['loaded_tok_s']['+pipeline']:.1f}"
            f" (x{res['loaded_over_quiet']:.2f}); ladder order quiet {res['ladder_order_quiet']}, loaded "
            f"{res['ladder_order_loaded']} (same: {res['ladder_order_same']})")
        for sw in res["ladder_swaps"]:
            log(f"  swapped: {sw['pair'][1]} / {sw['pair'][0]} = {sw['quiet_b_over_a']:.2f} quiet, "
                f"{sw['loaded_b_over_a']:.2f} loaded")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(round_floats(res), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
