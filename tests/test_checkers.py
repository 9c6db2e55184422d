"""Every exercise checker passes its reference and rejects each deliberately wrong answer."""

import pytest

import teachkit.check as check

EXERCISES = check.registry()
WRONG = [(name, label) for name, ex in EXERCISES.items() for label in ex.wrong_answers]


def test_every_exercise_has_properties_and_wrong_answers():
    for name, ex in EXERCISES.items():
        assert len(ex.properties) >= 2, f"{name}: an exercise needs at least two named properties"
        assert len(ex.wrong_answers) >= 2, f"{name}: prove the checker with at least two wrong answers"
        assert getattr(check, name) is ex, f"check.{name} is not reachable as teachkit.check.{name}"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_passes(name):
    result = EXERCISES[name](EXERCISES[name].reference, quiet=True)
    assert result.passed, f"{name}: reference failed '{result.failed_property}': {result.message}"


@pytest.mark.parametrize("name,label", WRONG)
def test_wrong_answer_is_rejected_and_the_property_is_named(name, label):
    ex = EXERCISES[name]
    result = ex(ex.wrong_answers[label], quiet=True)
    assert not result.passed, f"{name}: the wrong answer '{label}' was accepted"
    assert result.attempted
    assert result.failed_property in [desc for desc, _ in ex.properties]


def test_stub_is_reported_as_not_attempted(capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    result = check.masked_mean(stub)
    assert not result.passed and not result.attempted
    assert "not attempted" in capsys.readouterr().out


def test_strict_mode_raises_with_the_property_name():
    wrong = check.masked_mean.wrong_answers["multiplies by the mask"]
    with pytest.raises(check.ExerciseFailed) as info:
        check.masked_mean(wrong, strict=True, quiet=True)
    assert "NaN" in info.value.property


def test_success_message_is_friendly(capsys):
    check.masked_mean(check.masked_mean.reference)
    assert "all 3 checks passed" in capsys.readouterr().out


def test_non_callable_is_a_clear_error():
    with pytest.raises(TypeError, match="expects a function"):
        check.masked_mean(42)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_every_exercise_can_show_its_reference_solution(name, capsys):
    check.solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"# reference solution of check.{name}")
    assert "def " in out or "lambda" in out


def test_solution_of_an_unknown_exercise_names_the_real_ones():
    with pytest.raises(KeyError, match="bundle_offset"):
        check.solution("no_such_exercise")


def test_a_learner_returning_an_integer_tensor_reads_the_library_message():
    from teachkit.rlhf import gae

    def int_gae(r, v, m, gamma, lam):
        return tuple(x.long() for x in gae(r, v, m, gamma, lam))

    result = check.gae(int_gae, quiet=True)
    assert not result.passed and result.attempted
    assert "your result must be a floating-point tensor, got dtype torch.int64" in result.message
    assert "your function raised" not in result.message


@pytest.mark.parametrize("name,label,says", [
    ("decode_bound", "min instead of max: satisfies one lane only", "1/min(t_mem, t_io)"),
    ("sparse_ffn_parallel", "reads the down row even when h = 0", "the NaN reached the output"),
    ("bundle_offset", "stride off by one: (payload + align) // align * align", "expected 4480, got 4672"),
    ("lru_step", "mutates the caller's list", "changed its input list"),
])
def test_sparse_checkers_name_the_real_bug(name, label, says):
    ex = EXERCISES[name]
    result = ex(ex.wrong_answers[label], quiet=True)
    assert not result.passed and result.attempted
    assert says in result.message, result.message
    assert "your function raised" not in result.message
