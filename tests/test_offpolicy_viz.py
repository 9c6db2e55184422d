"""The plots of notebooks 05–08 draw from plain histories, return nothing, and reject bad input."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from teachkit.viz import offpolicy as V  # noqa: E402

KEYS = ["dpo_loss", "train_loss", "reward_accuracy", "reward_margin", "chosen_logps", "rejected_logps",
        "chosen_logratio", "chosen_below_ref", "greedy_gold_reward", "gold_reward", "kl_to_ref",
        "seq_kl_chosen", "seq_kl_rejected"]


def history(scale=1.0):
    return {"step": [0, 10, 20], **{k: [0.0, 0.5 * scale, 1.0 * scale] for k in KEYS}}


def test_every_plot_draws_and_returns_none():
    runs = {"DPO": history(), "DPOP": history(0.5)}
    assert V.plot_preference_training(history()) is None
    assert V.plot_chosen_vs_reference(runs) is None
    assert V.plot_seq_kl(runs) is None
    assert V.plot_reward_kl(runs) is None
    assert V.plot_runs(runs, ["gold_reward", "kl_to_ref", "dpo_loss", "train_loss"], ncols=3) is None
    assert V.plot_odds() is None


def test_missing_keys_and_empty_runs_are_clear_errors():
    with pytest.raises(ValueError, match="seq_kl_rejected"):
        V.plot_seq_kl({"DPO": {"step": [0], "seq_kl_chosen": [0.0]}})
    with pytest.raises(ValueError, match="non-empty"):
        V.plot_reward_kl({})
