"""The RLHF family from scratch: losses, advantages and KL estimators.

Conventions (the course text and the tests rely on them):
- inputs are torch tensors; ``logp``, ``old_logp``, ``ref_logp`` are (B, T) per-token log-probs
  of the sampled completion tokens; ``*_logps`` are (B,) summed completion log-probs;
- ``mask`` is (B, T) with 1 on completion tokens up to and including the first EOS;
- every loss returns a 0-dim tensor;
- values under mask 0 never affect a result, not even NaN;
- mismatched shapes raise ValueError with a readable message.
"""

from .masking import check_mask, check_same_shape, masked_mean, masked_sum, masked_var
from .reward import bradley_terry_loss

__all__ = [
    "check_mask", "check_same_shape", "masked_mean", "masked_sum", "masked_var",
    "bradley_terry_loss",
]
