def pipelined_makespan(read_ms, compute_ms):
    """One I/O lane and one compute lane: cluster i computes once its read has landed and
    cluster i − 1 has finished computing. Returns when the last compute ends."""
    io_end = 0.0
    compute_end = 0.0
    for read, compute in zip(read_ms, compute_ms):
        io_end += read                                      # reads go back to back
        compute_end = max(compute_end, io_end) + compute    # wait for the data and the lane
    return compute_end
