import torch


def group_advantages(rewards, group_size):
    """GRPO: (r_i − mean_g) / (std_g + 1e-4) within each group of group_size consecutive rewards.

    std is Bessel-corrected (torch's default); a group whose rewards are all equal gets exactly 0.
    """
    g = rewards.view(-1, group_size)
    adv = (g - g.mean(dim=1, keepdim=True)) / (g.std(dim=1, keepdim=True) + 1e-4)
    equal = (g.amax(dim=1) == g.amin(dim=1)).unsqueeze(1)
    return torch.where(equal, torch.zeros_like(adv), adv).reshape(-1)
