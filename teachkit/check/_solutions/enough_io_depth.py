import math


def enough_io_depth(x):
    """The smallest io_depth from which on the planner's t_layer no longer changes (s_read > 0).

    ``x`` holds section 2's named inputs; only n_act, h and c (the cluster size) matter: io_depth
    enters the cost model through QD = max(io_depth, c) alone, and QD through min(n_miss, QD) reads
    submitted at once and ceil(n_miss / QD) waves of the burst. Both stop changing once QD covers
    every miss.
    """
    n_miss = x["n_act"] * (1 - x["h"])                      # reads from flash, per layer
    need = max(1, math.ceil(n_miss))                        # a whole number of reads in flight covers them
    return 1 if need <= x["c"] else need                    # the staging rows alone give QD = c
