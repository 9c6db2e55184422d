def bandwidth_bound_ms(k, n_pos, d, bytes_per_weight, scale_bytes, bandwidth_GBps):
    """The least time (ms) a batch-1 fused sparse FFN can take when its weights come from RAM.

    k:           neurons listed for this token (by the predictor, or a top-k)
    n_pos:       how many of them have h != 0 (0 <= n_pos <= k)
    scale_bytes: bytes of scale stored with each row (4 for int8 with a float32 scale, 0 for fp32)
    The kernel reads the gate and up rows of every listed neuron (it needs them to compute h)
    and the down row only where h != 0: (2k + n_pos) rows, each d weights plus its scale.
    """
    n_bytes = (2 * k + n_pos) * (d * bytes_per_weight + scale_bytes)
    return n_bytes / (bandwidth_GBps * 1e9) * 1e3     # 1 GB = 1e9 bytes; seconds -> ms
