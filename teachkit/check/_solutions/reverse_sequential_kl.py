import torch
import torch.nn.functional as F


def reverse_sequential_kl(policy_logits, ref_logits, mask):
    """Σ_t KL(π_θ(·|t) ‖ π_ref(·|t)) over the unmasked positions; logits (B, T, V), mask (B, T) -> (B,).

    The reverse direction: at each position the average is under the policy's own next-token
    distribution, so a token the policy never writes costs nothing there (mode-seeking).
    """
    keep = mask.bool()[..., None]
    zero = torch.zeros((), dtype=policy_logits.dtype)
    pol_logp = F.log_softmax(torch.where(keep, policy_logits, zero), dim=-1)   # select before any maths
    ref_logp = F.log_softmax(torch.where(keep, ref_logits, zero), dim=-1)
    per_position = (pol_logp.exp() * (pol_logp - ref_logp)).sum(dim=-1)        # (B, T)
    return torch.where(keep[..., 0], per_position, zero).sum(dim=-1)
