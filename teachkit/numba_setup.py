"""How numba's worker threads wait between parallel kernels: chosen once, before any pool starts.

A ``prange`` loop runs on numba's thread pool (its *threading layer*, see
https://numba.readthedocs.io/en/stable/user/threading-layer.html). Here that layer is OpenMP,
GNU's libgomp. When a parallel loop ends, libgomp's idle threads, and the thread that waits at
the end of the loop for the others, do not sleep at once: they **spin** for ``GOMP_SPINCOUNT``
iterations first (300,000 by default; ``OMP_WAIT_POLICY=PASSIVE`` makes it 0; https://gcc.gnu.org/onlinedocs/libgomp/GOMP_005fSPINCOUNT.html). On a quiet machine the spin
saves a wake-up (some microseconds) per kernel. On a shared one it is a disaster: a thread
spinning for its partner holds the core that partner needs, and an engine that calls a dozen
small kernels per layer loses most of its time there (``python -m teachkit.sparse.bench.load
--quick`` measures it).

teachkit therefore sets ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once), unless the user has chosen
how threads wait: any of :data:`USER_CHOICES` in the environment leaves everything as it is.
The other half of the fix is in :mod:`teachkit.sparse.compute.kernels`: a kernel too small to gain
from a second thread runs on the calling thread, so it pays no wake-up at all.

libgomp reads these variables once, when it is loaded. torch loads the same library
(``libgomp.so.1``, which numba's OpenMP layer then shares), so this module must run before
``import torch``: ``import teachkit`` runs it first. :func:`status` says whether it could.
"""

from __future__ import annotations

import os
import sys

__all__ = ["CHOICE", "USER_CHOICES", "apply", "status"]

CHOICE = {"OMP_WAIT_POLICY": "PASSIVE"}
# variables by which a user says how threads should wait; if any is set, teachkit sets nothing
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "NUMBA_THREADING_LAYER")

_state: dict = {}


def _openmp_loaded() -> bool | None:
    """Is an OpenMP runtime mapped into this process already (Linux: ``/proc/self/maps``)?"""
    try:
        with open("/proc/self/maps") as f:
            return any("libgomp" in line or "libiomp" in line or "libomp" in line for line in f)
    except OSError:
        return None


def apply(environ=None) -> dict:
    """Set :data:`CHOICE` in ``environ`` (default ``os.environ``) unless the user chose already.

    Returns what happened: ``applied`` (the variables set), ``user_set`` (the user's own
    choices, left alone) and ``openmp_loaded_before`` (True: an OpenMP runtime had read its
    settings already, so the choice cannot reach it).
    """
    env = os.environ if environ is None else environ
    user = {k: env[k] for k in USER_CHOICES if k in env}
    applied = {}
    if not user:
        for k, v in CHOICE.items():
            env[k] = v
            applied[k] = v
    out = {"applied": applied, "user_set": user,
           "openmp_loaded_before": _openmp_loaded() if environ is None else None}
    if environ is None:
        _state.clear()
        _state.update(out)
    return out


def status() -> dict:
    """What :func:`apply` did at import, and what numba runs with now (for benchmark records)."""
    out = dict(_state)
    out["environment"] = {k: os.environ.get(k) for k in USER_CHOICES}
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            out["threading_layer"] = numba.threading_layer()
        except ValueError:                      # no parallel kernel has run yet
            out["threading_layer"] = None
        out["numba_threads"] = numba.get_num_threads()
    return out


if not _state:
    apply()
