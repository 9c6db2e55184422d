import torch


def dpo_gradient_weight(margin, beta):
    """−dL/dh of L = −log σ(β h): β·σ(−β h), per pair (σ never overflows in torch)."""
    return beta * torch.sigmoid(-beta * margin)
