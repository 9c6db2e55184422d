import numpy as np


def sparse_ffn(bundles, idx, x):
    """FFN over the neurons in idx; bundles[i] = (gate row, up row, down row) of neuron i.

    h_i = relu(gate_i · x) · (up_i · x); the output is Σ_i h_i · down_i.
    """
    b = bundles[idx]                                  # (k, 3, d)
    h = np.maximum(b[:, 0] @ x, 0.0) * (b[:, 1] @ x)  # the ReLU is on the gate only
    return h @ b[:, 2]
