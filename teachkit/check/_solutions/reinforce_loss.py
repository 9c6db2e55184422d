import torch


def reinforce_loss(logp, advantages, mask):
    """−Σ_{b,t} A_b · logp_{b,t} / (number of tokens): one advantage per sequence, spread over its tokens."""
    keep = mask.bool()
    logp = torch.where(keep, logp, torch.zeros((), dtype=logp.dtype))
    return -(advantages[:, None] * logp).sum() / keep.sum()
