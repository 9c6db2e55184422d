import numba
import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True)
def sparse_ffn_parallel(B, idx, x):
    """Σ_{i in idx} relu(gate_i · x) · (up_i · x) · down_i over [gate | up | down] bundles, race-free.

    Each prange iteration c owns one chunk of idx and one private row partial[c]; no two threads
    ever write the same place. The rows are added once, after the parallel loop.
    """
    n, d = idx.shape[0], x.shape[0]
    nchunks = numba.get_num_threads()
    per = (n + nchunks - 1) // nchunks
    partial = np.zeros((nchunks, d), dtype=np.float32)
    for c in prange(nchunks):
        for j in range(c * per, min(n, (c + 1) * per)):
            i = idx[j]
            g = np.float32(0.0)
            u = np.float32(0.0)
            for k in range(d):
                g += B[i, 0, k] * x[k]
                u += B[i, 1, k] * x[k]
            h = max(g, np.float32(0.0)) * u
            if h != 0.0:                            # h = 0: its down row is not even read
                for k in range(d):
                    partial[c, k] += h * B[i, 2, k]
    out = np.zeros(d, dtype=np.float32)
    for c in range(nchunks):
        out += partial[c]
    return out
