import torch.nn.functional as F


def tdpo2_loss(m_w, m_l, kl_w, kl_l, beta, alpha):
    """TDPO2: −log σ(β·[(m_w − m_l) − α·(kl_l − sg[kl_w])]), averaged over pairs (sg = stop-gradient)."""
    z = (m_w - m_l) - alpha * (kl_l - kl_w.detach())
    return -F.logsigmoid(beta * z).mean()
