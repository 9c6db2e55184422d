"""check.bandwidth_bound_ms (notebook 11): the bound of section 5, (2k + n_pos) rows of d weights
plus each row's scale, and the checker names the property each typical slip breaks."""

import math

import pytest

import teachkit.check as check

EX = check.bandwidth_bound_ms
PROPS = [desc for desc, _ in EX.properties]
ALL_FIRE, NONE_FIRE, INT8, RANDOM = PROPS


def test_the_reference_is_the_n_pos_aware_bound_with_row_scales():
    # 1000 listed neurons, 250 of them firing, d = 4096, fp32, 20 GB/s: 2250 rows of 16 KiB
    assert math.isclose(EX.reference(1000, 250, 4096, 4, 0, 20.0), 2250 * 4096 * 4 / 20e9 * 1e3)
    assert math.isclose(EX.reference(1000, 1000, 4096, 4, 0, 20.0), 2.4576)
    assert math.isclose(EX.reference(1000, 0, 4096, 4, 0, 20.0), 1.6384)
    assert math.isclose(EX.reference(1000, 500, 4096, 1, 4, 20.0), 0.5125)     # int8 + float32 scale


@pytest.mark.parametrize("label,prop,says", [
    ("ignores n_pos: all three rows of every listed neuron", NONE_FIRE, "not its down row"),
    ("only the firing neurons, three rows each", NONE_FIRE, "expected 1.6384 ms, got 0 ms"),
    ("the down row of every neuron, gate and up only where h > 0", NONE_FIRE, "h = 0 or not"),
    ("returns seconds, not milliseconds", ALL_FIRE, "that is seconds"),
    ("counts bits as bytes", ALL_FIRE, "not bits"),
    ("hard-codes fp32 (4 bytes per weight)", INT8, "read it from the argument"),
    ("GB/s taken as 2**30 bytes per second", ALL_FIRE, "not 2**30"),
    ("forgets the scales", INT8, "also brings its scale_bytes"),
    ("a scale per weight, not per row", INT8, "one per row, not one per weight"),
])
def test_each_slip_fails_the_property_that_names_it(label, prop, says):
    result = EX(EX.wrong_answers[label], quiet=True)
    assert not result.passed and result.attempted
    assert result.failed_property == prop, (label, result.failed_property)
    assert says in result.message, result.message
    assert "your function raised" not in result.message


def test_every_wrong_answer_is_covered_above():
    assert len(EX.wrong_answers) == 9


def test_the_microsecond_slip_is_named_too():
    result = EX(lambda k, p, d, b, s, bw: EX.reference(k, p, d, b, s, bw) * 1e3, quiet=True)
    assert result.failed_property == ALL_FIRE and "microseconds" in result.message


def test_a_solution_right_only_on_the_hand_made_sizes_fails_the_random_ones():
    def hand_only(k, p, d, b, s, bw):
        return EX.reference(k, p, d, b, s, bw) if d == 4096 else 1.0

    result = EX(hand_only, quiet=True)
    assert result.failed_property == RANDOM


def test_the_random_inputs_cover_every_activity_case_and_format():
    seen = []

    def spy(*args):
        seen.append(args)
        return EX.reference(*args)

    assert EX(spy, quiet=True).passed
    cases = [a for a in seen if a[2] != 4096]          # the seeded inputs, after the hand-made ones
    assert any(p == 0 for _, p, *_ in cases) and any(p == k for k, p, *_ in cases)
    assert any(0 < p < k for k, p, *_ in cases)
    assert {(b, s) for _, _, _, b, s, _ in cases} >= {(4, 0), (1, 4), (2, 2)}


def test_a_non_number_is_reported_not_raised():
    result = EX(lambda *a: "2.4576 ms", quiet=True)
    assert result.failed_property == ALL_FIRE and "expected one number" in result.message


def test_the_printed_solution_passes(capsys):
    check.solution("bandwidth_bound_ms")
    code = capsys.readouterr().out.partition("\n")[2]
    ns: dict = {}
    exec(code, ns)
    assert EX(ns["bandwidth_bound_ms"], quiet=True).passed
    assert "teachkit" not in code and "2 * k + n_pos" in code
