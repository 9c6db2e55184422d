import torch


def reinforce_loss(logp, advantages, mask):
    """−Σ_{i,t} A_i · logp_{i,t} / (number of tokens): one advantage per sequence, spread over its tokens."""
    keep = mask.bool()
    logp = torch.where(keep, logp, torch.zeros((), dtype=logp.dtype))
    return -(advantages[:, None] * logp).sum() / keep.sum()
