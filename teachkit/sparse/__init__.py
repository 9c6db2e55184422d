"""A PowerInfer-2-style sparse inference engine, accelerated with numba."""
