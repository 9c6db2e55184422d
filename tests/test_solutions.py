"""Every exercise has hints in steps and a self-contained solution that its own checker accepts."""

import ast

import pytest

import teachkit.check as check

EXERCISES = check.registry()
PUBLIC_LIBRARIES = {"torch", "numpy", "math", "random", "numba"}


def _printed_solution(name, capsys) -> str:
    check.solution(name)
    out = capsys.readouterr().out
    header, _, code = out.partition("\n")
    assert header == f"# reference solution of check.{name}"
    return code


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_printed_solution_passes_its_checker(name, capsys):
    namespace: dict = {}
    exec(compile(_printed_solution(name, capsys), f"<solution of {name}>", "exec"), namespace)
    assert callable(namespace.get(name)), f"the solution of {name} must define a function called {name}"
    result = EXERCISES[name](namespace[name], quiet=True)
    assert result.passed, f"{name}: the printed solution failed '{result.failed_property}': {result.message}"


def foreign_imports(code: str) -> set[str]:
    """Top-level packages a piece of code imports, other than the public libraries."""
    roots = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    return roots - PUBLIC_LIBRARIES


def private_names(code: str) -> set[str]:
    """Names and attributes that start with one underscore (``_helper``, ``mod._ref``)."""
    found = set()
    for node in ast.walk(ast.parse(code)):
        for n in (getattr(node, "id", None), getattr(node, "attr", None), getattr(node, "name", None),
                  getattr(node, "asname", None)):
            if isinstance(n, str) and n.startswith("_") and not n.startswith("__") and n != "_":
                found.add(n)
    return found


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_solution_is_self_contained(name, capsys):
    code = _printed_solution(name, capsys)
    assert not foreign_imports(code), f"{name}: the solution imports {sorted(foreign_imports(code))}"
    assert not private_names(code), f"{name}: the solution uses private names {sorted(private_names(code))}"
    assert "teachkit" not in code, f"{name}: a solution stands alone, without teachkit"


def test_a_wrapper_solution_would_be_caught():
    wrapper = "from teachkit.rlhf.dpo import dpo_loss as _dpo_ref\n\ndef dpo_loss(*a):\n    return _dpo_ref(*a)\n"
    assert foreign_imports(wrapper) == {"teachkit"}
    assert private_names(wrapper) == {"_dpo_ref"}
    assert private_names("import torch\nf = lambda x: torch._foo(x)\n") == {"_foo"}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_hints_come_in_steps_and_the_first_failure_shows_only_level_one(name, capsys):
    ex = EXERCISES[name]
    assert len(ex.hints) >= 1, f"{name}: give at least one hint"
    label, wrong = next(iter(ex.wrong_answers.items()))
    ex(wrong)
    out = capsys.readouterr().out
    assert ex.hints[0] in out
    for later in ex.hints[1:]:
        assert later not in out, f"{name}: a failure must show hint 1 only, not '{later}'"
    assert f"check.solution({name!r})" in out


def test_exercises_give_three_hint_levels():
    for name, ex in EXERCISES.items():
        assert len(ex.hints) == 3, f"{name}: hints in three steps (idea, formula, code)"


def test_hint_prints_the_level_asked_for_and_points_on(capsys):
    ex = EXERCISES["dpo_loss"]
    check.hint("dpo_loss", 2)
    out = capsys.readouterr().out
    assert f"hint 2 of {len(ex.hints)}" in out and ex.hints[1] in out
    assert 'check.hint(\'dpo_loss\', 3)' in out
    check.hint("dpo_loss", 9)
    out = capsys.readouterr().out
    assert ex.hints[-1] in out and "check.solution('dpo_loss')" in out
    with pytest.raises(ValueError, match="start at 1"):
        check.hint("dpo_loss", 0)
    with pytest.raises(KeyError, match="dpo_loss"):
        check.hint("no_such_exercise", 1)


def test_the_formula_is_not_shown_on_the_first_failure(capsys):
    check.dpo_loss(check.dpo_loss.wrong_answers["ignores β"])
    assert "logsigmoid" not in capsys.readouterr().out


def test_the_failure_says_how_many_checks_ran(capsys):
    ex = EXERCISES["dpo_loss"]
    result = ex(ex.wrong_answers["prefers the rejected completion (sign flipped)"])
    out = capsys.readouterr().out
    n = len(ex.properties)
    i = result.n_passed
    assert f"check {i + 1} of {n} failed ({i} passed before it; {n - i - 1} not run)" in out
    assert "checks passed" not in out
