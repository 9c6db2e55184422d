import torch


def masked_mean(x, mask):
    """Mean of x over the entries where mask == 1; whatever sits under mask 0 (even NaN) never counts."""
    keep = mask.bool()
    selected = torch.where(keep, x, torch.zeros((), dtype=x.dtype))   # select, don't multiply: NaN * 0 = NaN
    return selected.sum() / keep.sum()
