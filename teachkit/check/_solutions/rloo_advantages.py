def rloo_advantages(rewards, group_size):
    """RLOO: r_i minus the mean of the other G − 1 rewards of its group."""
    g = rewards.view(-1, group_size)
    others = (g.sum(dim=1, keepdim=True) - g) / (group_size - 1)
    return (g - others).reshape(-1)
