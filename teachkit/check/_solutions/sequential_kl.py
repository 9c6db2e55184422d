import torch
import torch.nn.functional as F


def sequential_kl(policy_logits, ref_logits, mask):
    """Σ_t KL(π_ref(·|t) ‖ π_θ(·|t)) over the unmasked positions; logits (B, T, V), mask (B, T) -> (B,)."""
    keep = mask.bool()[..., None]
    zero = torch.zeros((), dtype=policy_logits.dtype)
    pol_logp = F.log_softmax(torch.where(keep, policy_logits, zero), dim=-1)   # select before any maths
    ref_logp = F.log_softmax(torch.where(keep, ref_logits, zero), dim=-1)
    per_position = (ref_logp.exp() * (ref_logp - pol_logp)).sum(dim=-1)        # (B, T)
    return torch.where(keep[..., 0], per_position, zero).sum(dim=-1)
