def optimal_baseline(rewards, score_sq):
    """The constant baseline that minimises the variance of the REINFORCE gradient estimate.

    With g_i = ∇_θ log π(y_i) and s_i = ‖g_i‖², the estimate (r_i − b)·g_i has a mean that does
    not depend on b (E[g] = 0), so only E[(r − b)²·s] matters. Its derivative in b,
    −2·E[(r − b)·s], is zero at b* = E[r·s] / E[s]: a mean of rewards weighted by s.
    """
    return (score_sq * rewards).sum() / score_sq.sum()
