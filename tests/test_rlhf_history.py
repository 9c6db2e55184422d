"""The one history every training loop logs: contract keys, means of statistics, measured columns."""

import math

import pytest

from teachkit.rlhf.history import HISTORY_KEYS, History


def test_a_row_holds_the_contract_the_means_and_what_was_measured_in_order():
    h = History("loss", "rare")
    h.log(0, lambda: {"gold_reward": 0.5, "proxy_reward": 0.1, "kl_to_ref": 0.0, "extra": 7})
    h.start_clock()
    h.add(loss=1.0)
    h.add(loss=3.0)
    h.samples, h.queries = 8, 8
    h.log(1, lambda: {"gold_reward": 0.6, "proxy_reward": 0.2, "kl_to_ref": 0.1, "extra": 8})
    assert list(h.data) == [*HISTORY_KEYS, "loss", "rare", "extra"]
    assert h.data["step"] == [0.0, 1.0] and h.data["extra"] == [7.0, 8.0]
    assert math.isnan(h.data["loss"][0]) and h.data["loss"][1] == 2.0      # NaN: nothing added yet
    assert all(math.isnan(v) for v in h.data["rare"])
    assert h.data["samples_generated"] == [0.0, 8.0] and h.data["pairs_seen"] == [0.0, 0.0]
    assert h.data["seconds"][0] == 0.0 and h.data["seconds"][1] >= 0.0     # no training before start_clock


def test_an_undeclared_statistic_is_an_error_not_a_silent_drop():
    with pytest.raises(KeyError, match="'typo'"):
        History("loss").add(typo=1.0)
