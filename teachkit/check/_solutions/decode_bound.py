def decode_bound(fixed_bytes, active_bytes, bw_mem, bw_io, target_tok_s):
    """The smallest hit rate h in [0, 1] at which the decode bound 1 / max(t_mem, t_io) reaches
    ``target_tok_s``; None if even h = 1 is too slow.

    A token touches the fixed bytes F and its active neurons' bytes A in RAM; the missed ones,
    A (1 - h), are read from flash and then cross RAM once more. Both lanes must fit in
    T = 1 / target: t_io = A (1 - h) / bw_io <= T and t_mem = (F + A + A (1 - h)) / bw_mem <= T.
    """
    T = 1.0 / target_tok_s
    h_io = 1.0 - T * bw_io / active_bytes                    # the reads fit
    h_mem = 2.0 - (T * bw_mem - fixed_bytes) / active_bytes  # the memory traffic fits
    h = max(0.0, h_io, h_mem)                                # both must: the slower lane sets the pace
    return None if h > 1.0 else h
