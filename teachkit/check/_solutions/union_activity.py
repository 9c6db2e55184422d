import numpy as np


def union_activity(H, window):
    """Mean fraction of neurons active anywhere in a block of `window` tokens (a partial last block is dropped)."""
    active = np.asarray(H) > 0
    n_tokens, n_neurons = active.shape
    n = (n_tokens // window) * window
    blocks = active[:n].reshape(-1, window, n_neurons)
    return float(blocks.any(axis=1).mean())
