import numpy as np


def gather_dot(W, idx, x):
    """out[j] = W[idx[j]] · x: only the selected rows, in the order of idx."""
    out = np.empty(len(idx), dtype=np.result_type(W, x))
    for j, i in enumerate(idx):
        out[j] = W[i] @ x
    return out
