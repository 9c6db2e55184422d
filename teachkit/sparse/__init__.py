"""A PowerInfer-2-style sparse inference engine, accelerated with numba."""

from .. import numba_setup  # noqa: F401  (how numba's threads wait: chosen before any pool starts)
