def bandwidth_bound_ms(n_active, d, n_mats, bytes_per_weight, bandwidth_GBps):
    """The least time (ms) to stream the active neurons' weights once: bytes / bandwidth."""
    n_bytes = n_active * n_mats * d * bytes_per_weight
    return n_bytes / (bandwidth_GBps * 1e9) * 1e3
