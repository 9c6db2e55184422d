"""Masked reductions select, never multiply: NaN under mask 0 never leaks."""

import pytest
import torch

from teachkit.rlhf import masked_mean, masked_sum, masked_var


def test_masked_mean_hand_computed():
    x = torch.tensor([[1.0, 2.0, float("nan")], [3.0, float("inf"), 5.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert masked_mean(x, m).item() == pytest.approx(11 / 4)
    assert masked_sum(x, m, dim=1).tolist() == [3.0, 8.0]


def test_nan_under_mask_does_not_reach_the_gradient():
    x = torch.tensor([1.0, float("nan"), 3.0], requires_grad=True)
    masked_mean(x, torch.tensor([1, 0, 1])).backward()
    assert torch.isfinite(x.grad).all()


def test_empty_selection_is_an_error_but_an_empty_row_gives_zero():
    with pytest.raises(ValueError, match="mask selects nothing"):
        masked_mean(torch.ones(2, 3), torch.zeros(2, 3))
    assert masked_mean(torch.ones(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]), dim=1).tolist() == [1.0, 0.0]


def test_masked_var_matches_torch():
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    m = torch.ones(5, 4)
    assert masked_var(x, m).item() == pytest.approx(x.var().item(), rel=1e-5)


def test_bad_mask_messages():
    with pytest.raises(ValueError, match="same shape"):
        masked_mean(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="only 0 and 1"):
        masked_mean(torch.ones(2), torch.tensor([0.5, 1.0]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        masked_mean(torch.ones(2), [1, 1])
