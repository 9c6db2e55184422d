import torch.nn.functional as F


def dpo_loss(pol_c, pol_r, ref_c, ref_r, beta):
    """Mean over pairs of −log σ(β·[(π_c − ref_c) − (π_r − ref_r)]); inputs are (B,) summed log-probs."""
    margin = (pol_c - ref_c) - (pol_r - ref_r)
    return -F.logsigmoid(beta * margin).mean()      # logsigmoid stays finite where log(sigmoid) overflows
