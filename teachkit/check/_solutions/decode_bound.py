def decode_bound(ram_bytes, miss_bytes, bw_mem, bw_io):
    """Tokens per second at most, when memory traffic and flash reads overlap perfectly.

    Missed bytes are read from flash and then cross RAM like the rest, so
    t_mem = (ram_bytes + miss_bytes) / bw_mem, t_io = miss_bytes / bw_io, and the slower one
    sets the pace: tok/s = 1 / max(t_mem, t_io).
    """
    t_mem = (ram_bytes + miss_bytes) / bw_mem
    t_io = miss_bytes / bw_io
    return 1.0 / max(t_mem, t_io)
