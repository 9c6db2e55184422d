import numpy as np


def frontier_mask(kl, reward):
    """True for each run that no other run dominates (KL ≤ and reward ≥, at least one strictly)."""
    kl, reward = np.asarray(kl, dtype=float), np.asarray(reward, dtype=float)
    keep = np.ones(len(kl), dtype=bool)
    for i in range(len(kl)):
        no_worse = (kl <= kl[i]) & (reward >= reward[i])
        strictly_better = (kl < kl[i]) | (reward > reward[i])
        keep[i] = not (no_worse & strictly_better).any()
    return keep
