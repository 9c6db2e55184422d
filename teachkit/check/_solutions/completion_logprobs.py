import torch


def completion_logprobs(logits, completions, mask):
    """Log-prob of each completion token; logits (B, P + T, V), completions and mask (B, T).

    The logits at position i predict token i + 1, so completion token j (at position P + j)
    is predicted by the logits at position P + j − 1.
    """
    P = logits.shape[1] - completions.shape[1]
    keep = mask.bool()
    ids = torch.where(keep, completions, torch.zeros_like(completions))   # padding ids may be anything
    logp = torch.log_softmax(logits[:, P - 1:-1], dim=-1)
    picked = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, picked, torch.zeros_like(picked))
