import torch


def k3(logp, ref_logp):
    """e^d − d − 1 with d = ref_logp − logp (see check.solution("kl_k3") for the float32-exact form)."""
    d = ref_logp - logp
    return torch.expm1(d) - d


def bias_corrected_k3(logp, old_logp, ref_logp):
    """TRL's GRPO KL term: each token's k3 times the importance ratio π/π_old = exp(logp − old_logp)."""
    return k3(logp, ref_logp) * torch.exp(logp - old_logp)
