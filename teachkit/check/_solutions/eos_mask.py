def eos_mask(completions, eos_id):
    """(B, T) float mask: 1 up to and including the first eos_id in each row, 0 after it."""
    is_eos = (completions == eos_id).long()
    eos_before = is_eos.cumsum(dim=1) - is_eos     # EOS tokens seen strictly before each position
    return (eos_before == 0).float()
