import math


def layer_time(x):
    """One layer's time in the planner's pipelined cost model (read unit 'bundle'), in seconds.

    ``x`` holds the named inputs: n_act, h, c (cluster size), io_depth, bundle (bytes), a, b (burst
    fit, s and s per read), s_call, s_read (submit cost, s), bw_fused, bw_kernel (B/s), c_unit (s per
    work unit) and t_pre (attention + predictor + c_layer, s).
    """
    n_miss = x["n_act"] * (1 - x["h"])                      # reads from flash
    qd = max(x["io_depth"], x["c"])                         # the staging rows hold a whole cluster
    n_units = max(1, math.ceil(n_miss / x["c"]))            # landed clusters, one work unit each
    t_submit = x["s_call"] * min(1, n_miss) + x["s_read"] * min(n_miss, qd)
    t_io = x["a"] * math.ceil(n_miss / qd) + x["b"] * n_miss
    t_hits = x["n_act"] * x["h"] * x["bundle"] / x["bw_fused"] + 2 * x["c_unit"]
    t_tail = n_miss * x["bundle"] / x["bw_kernel"] + n_units * x["c_unit"]
    compute_lane = t_hits + t_tail                          # in-memory work, then each landed cluster
    io_lane = t_io + t_tail / n_units                       # the burst, then the last cluster's compute
    return x["t_pre"] + t_submit + max(compute_lane, io_lane)
