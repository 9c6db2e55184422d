import torch.nn.functional as F


def bradley_terry(chosen_rewards, rejected_rewards):
    """Mean over pairs of −log σ(r_c − r_r): the negative log-likelihood of the Bradley–Terry model."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
