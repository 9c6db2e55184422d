def bandwidth_bound_ms(k, n_pos, d, bytes_per_weight, bandwidth_GBps):
    """The least time (ms) a batch-1 fused sparse FFN can take when its weights come from RAM.

    k:     neurons listed for this token (by the predictor, or a top-k)
    n_pos: how many of them have h != 0 (0 <= n_pos <= k)
    The kernel reads the gate and up rows of every listed neuron (it needs them to compute h)
    and the down row only where h != 0: (2k + n_pos) rows of d weights.
    """
    n_bytes = (2 * k + n_pos) * d * bytes_per_weight
    return n_bytes / (bandwidth_GBps * 1e9) * 1e3     # 1 GB = 1e9 bytes; seconds -> ms
