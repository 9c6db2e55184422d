import torch.nn.functional as F


def tdpo1_loss(m_w, m_l, kl_w, kl_l, beta):
    """TDPO1: −log σ(β·[(m_w − m_l) − (SeqKL_l − SeqKL_w)]), averaged over pairs.

    m_w, m_l: summed log-ratios log π_θ/π_ref of the chosen and rejected completions (DPO's);
    kl_w, kl_l: their sequential KLs. Unlike TDPO2 there is no α and no stop-gradient, so the
    update also moves the chosen side's KL.
    """
    z = (m_w - m_l) - (kl_l - kl_w)
    return -F.logsigmoid(beta * z).mean()
