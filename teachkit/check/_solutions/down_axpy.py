def down_axpy(WdT, idx, h, out):
    """out + Σ_j h[j] · WdT[idx[j]]: add each active neuron's down row, scaled by its activation.

    Returns a new array (the caller's `out` is left as it was); repeated indices add twice.
    """
    out = out.copy()
    for j, i in enumerate(idx):
        out += h[j] * WdT[i]
    return out
