import numpy as np


def hot_share(freq, share):
    """Smallest fraction of the neurons whose firing frequencies add up to `share` of all firings."""
    f = np.sort(np.asarray(freq, dtype=np.float64))[::-1]     # hottest neuron first
    running = np.cumsum(f) / f.sum()                          # share of all firings of the top 1, 2, ... neurons
    k = int(np.searchsorted(running, share)) + 1              # the first k with running[k - 1] >= share
    return min(k, len(f)) / len(f)
