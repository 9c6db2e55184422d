def burst_time(k, queue_depth, read_s):
    """k reads submitted at once, at most queue_depth in flight, each taking read_s seconds.

    They complete in waves of queue_depth: ceil(k / queue_depth) waves.
    """
    if k <= 0:
        return 0.0
    waves = (k + queue_depth - 1) // queue_depth
    return waves * read_s
