"""The machinery behind ``teachkit.check``: exercises, properties and friendly reports."""

from __future__ import annotations

import textwrap
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..rlhf.validate import check_floating

Property = Callable[[Callable], None]
"""A property takes the learner's function and raises AssertionError (with a hint) if it fails."""

_REGISTRY: dict[str, "Exercise"] = {}
_SOLUTIONS = Path(__file__).with_name("_solutions")


class ExerciseFailed(AssertionError):
    """Raised by ``Exercise.__call__(fn, strict=True)``; ``.property`` names the failed check."""

    def __init__(self, exercise: str, prop: str, message: str):
        super().__init__(f"{exercise}: property '{prop}' failed: {message}")
        self.exercise = exercise
        self.property = prop


@dataclass
class CheckResult:
    exercise: str
    passed: bool
    attempted: bool
    failed_property: str | None = None
    message: str = ""
    n_passed: int = 0
    n_total: int = 0

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:  # keeps notebook outputs short and stable
        status = "passed" if self.passed else ("not attempted" if not self.attempted else "failed")
        return f"CheckResult({self.exercise!r}, {status})"


@dataclass
class Exercise:
    """One checked exercise.

    name:          what the learner calls, ``teachkit.check.<name>``
    reference:     the correct implementation (usually the library function)
    properties:    ordered ``(description, property)`` pairs; the description is what a
                   learner reads when that property fails, so phrase it as a fact
    wrong_answers: label -> deliberately wrong implementation; tests prove each is rejected
    hints:         hints in steps, shown one at a time: level 1 the idea or property, level 2 the
                   formula, level 3 the shape of the code. A failure shows level 1;
                   ``check.hint(name, level)`` shows the others.
    hint:          a single hint (kept for checkers that have only one); it becomes level 1
    solution:      readable, self-contained reference code that defines a function called
                   ``name``; when empty it is read from ``check/_solutions/<name>.py``
    """

    name: str
    reference: Callable
    properties: list[tuple[str, Property]]
    wrong_answers: dict[str, Callable] = field(default_factory=dict)
    hint: str = ""
    hints: tuple[str, ...] = ()
    solution: str = ""

    def __post_init__(self) -> None:
        if not self.hints and self.hint:
            self.hints = (self.hint,)
        self.hints = tuple(self.hints)
        _REGISTRY[self.name] = self

    def solution_source(self) -> str:
        """The reference solution as code (the ``solution`` field, else ``_solutions/<name>.py``)."""
        if self.solution:
            return textwrap.dedent(self.solution).strip("\n")
        path = _SOLUTIONS / f"{self.name}.py"
        if not path.is_file():
            raise LookupError(f"check.{self.name} has no solution: write {path}")
        return path.read_text(encoding="utf-8").strip("\n")

    def __call__(self, fn: Callable, *, strict: bool = False, quiet: bool = False) -> CheckResult:
        if not callable(fn):
            raise TypeError(f"check.{self.name} expects a function, got {type(fn).__name__}")
        n_total = len(self.properties)
        for i, (description, prop) in enumerate(self.properties):
            try:
                prop(fn)
            except NotImplementedError:
                result = CheckResult(self.name, False, False, None,
                                     "not attempted yet: replace `raise NotImplementedError` with your code",
                                     i, n_total)
                if not quiet:
                    print(f"⏳ {self.name}: {result.message}")
                return result
            except Exception as err:  # noqa: BLE001 - any failure is reported by property
                detail = _describe(err)
                result = CheckResult(self.name, False, True, description, detail, i, n_total)
                if not quiet:
                    print(f"❌ {self.name}: {failure_count(i, n_total)}.")
                    print(f"   failed: {description}")
                    print(f"   why:    {detail}")
                    if self.hints:
                        print(f"   hint:   {self.hints[0]}")
                    print(f"   more:   {self._more(1)}")
                if strict:
                    raise ExerciseFailed(self.name, description, detail) from err
                return result
        if not quiet:
            print(f"✅ {self.name}: all {n_total} checks passed.")
        return CheckResult(self.name, True, True, None, "", n_total, n_total)

    def _more(self, shown: int) -> str:
        if shown < len(self.hints):
            return f"check.hint({self.name!r}, {shown + 1}) for the next hint, check.solution({self.name!r}) for the code"
        return f"check.solution({self.name!r}) prints the reference code"


def failure_count(index: int, total: int) -> str:
    """'check 2 of 4 failed (1 passed before it; 2 not run)': the checker stops at the first failure."""
    not_run = total - index - 1
    return (f"check {index + 1} of {total} failed ({index} passed before it; "
            f"{not_run} not run)")


def registry() -> dict[str, Exercise]:
    """All registered exercises, by name."""
    return dict(_REGISTRY)


def _exercise(name: str) -> Exercise:
    if name not in _REGISTRY:
        raise KeyError(f"no exercise called {name!r}; the exercises are: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def hint(name: str, level: int = 1) -> None:
    """Print hint ``level`` of exercise ``name``: 1 the idea, 2 the formula, 3 the shape of the code."""
    ex = _exercise(name)
    if not ex.hints:
        print(f"check.{name} has no hints; check.solution({name!r}) prints the reference code")
        return
    if not isinstance(level, int) or level < 1:
        raise ValueError(f"hint levels start at 1; check.{name} has {len(ex.hints)}")
    shown = min(level, len(ex.hints))
    if level > len(ex.hints):
        print(f"check.{name} has {len(ex.hints)} hint(s); here is the last:")
    print(f"hint {shown} of {len(ex.hints)} for check.{name}: {ex.hints[shown - 1]}")
    print(f"more: {ex._more(shown)}")


def solution(name: str) -> None:
    """Print the reference solution of exercise ``name`` as self-contained code."""
    ex = _exercise(name)
    print(f"# reference solution of check.{name}")
    print(ex.solution_source())


def _describe(err: Exception) -> str:
    if isinstance(err, AssertionError) and str(err):
        return str(err)
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (line {frame.lineno} of {frame.name})" if frame else ""
    return f"your function raised {type(err).__name__}: {err}{where}"


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_output(got: Any, want: Any, what: str = "result") -> None:
    """The learner's output must be what the reference returns: a tuple of the same length, and a
    floating-point tensor where the reference returns one (int or bool would silently truncate).

    Uses ``teachkit.rlhf.validate``, so the learner reads the same message the library gives.
    """
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise AssertionError(f"{what}: expected {len(want)} return values, got {type(got).__name__}")
        for k, (g, w) in enumerate(zip(got, want)):
            check_output(g, w, f"{what}[{k}]")
        return
    if isinstance(want, torch.Tensor) and want.is_floating_point() and isinstance(got, torch.Tensor):
        try:
            check_floating("your result", got)
        except TypeError as err:
            raise AssertionError(f"{what}: {err}") from None


def assert_close(got: Any, want: Any, what: str = "result", rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Compare numbers, arrays, tensors, or tuples of them; raise AssertionError with a readable diff."""
    check_output(got, want, what)
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise AssertionError(f"{what}: expected {len(want)} return values, got {type(got).__name__}")
        for k, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{what}[{k}]", rtol, atol)
        return
    g, w = _to_numpy(got), _to_numpy(want)
    if g.shape != w.shape:
        raise AssertionError(f"{what}: expected shape {tuple(w.shape)}, got {tuple(g.shape)}")
    if not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=False):
        bad = ~np.isclose(g, w, rtol=rtol, atol=atol)
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if g.ndim else ()
        gv, wv = (g[idx], w[idx]) if g.ndim else (g, w)
        where = f" at index {idx}" if idx else ""
        raise AssertionError(f"{what}{where}: expected {float(wv):.6g}, got {float(gv):.6g}")


def matches_reference(reference: Callable, make_inputs: Callable[[int], tuple],
                      seeds: tuple[int, ...] = (0, 1, 2), **tol) -> Property:
    """Property: on inputs built by ``make_inputs(seed)``, ``fn`` returns what ``reference`` returns."""

    def prop(fn: Callable) -> None:
        for seed in seeds:
            args = make_inputs(seed)
            want = reference(*_copy(args))
            got = fn(*_copy(args))
            assert_close(got, want, f"on seeded input #{seed}", **tol)

    return prop


def _copy(args: tuple) -> tuple:
    out = []
    for a in args:
        if hasattr(a, "clone"):
            a = a.clone()
        elif isinstance(a, np.ndarray):
            a = a.copy()
        out.append(a)
    return tuple(out)
