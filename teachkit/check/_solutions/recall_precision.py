import numpy as np


def recall_precision(pred, true):
    """(recall, precision) of a predicted activity mask against the true one."""
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    hits = (pred & true).sum()
    return float(hits / true.sum()), float(hits / pred.sum())
