import numpy as np


def firing_frequency(H):
    """Fraction of tokens (rows) on which each neuron (column) fires, i.e. has activation > 0."""
    return (np.asarray(H) > 0).mean(axis=0)
