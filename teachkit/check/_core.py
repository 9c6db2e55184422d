"""The machinery behind ``teachkit.check``: exercises, properties and friendly reports."""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..rlhf.validate import check_floating

Property = Callable[[Callable], None]
"""A property takes the learner's function and raises AssertionError (with a hint) if it fails."""

_REGISTRY: dict[str, "Exercise"] = {}


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
    hint:          one sentence shown on failure
    """

    name: str
    reference: Callable
    properties: list[tuple[str, Property]]
    wrong_answers: dict[str, Callable] = field(default_factory=dict)
    hint: str = ""

    def __post_init__(self) -> None:
        _REGISTRY[self.name] = self

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
                    print(f"❌ {self.name}: {i}/{n_total} checks passed.")
                    print(f"   failed: {description}")
                    print(f"   why:    {detail}")
                    if self.hint:
                        print(f"   hint:   {self.hint}")
                if strict:
                    raise ExerciseFailed(self.name, description, detail) from err
                return result
        if not quiet:
            print(f"✅ {self.name}: all {n_total} checks passed.")
        return CheckResult(self.name, True, True, None, "", n_total, n_total)


def registry() -> dict[str, Exercise]:
    """All registered exercises, by name."""
    return dict(_REGISTRY)


def solution(name: str) -> None:
    """Print the reference solution of exercise ``name`` (for the stuck, and for lecturers)."""
    import inspect
    import textwrap

    if name not in _REGISTRY:
        raise KeyError(f"no exercise called {name!r}; the exercises are: {', '.join(sorted(_REGISTRY))}")
    ref = _REGISTRY[name].reference
    print(f"# reference solution of check.{name} ({ref.__module__}.{ref.__qualname__})")
    print(textwrap.dedent(inspect.getsource(ref)).rstrip())


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


def isclose(a: float, b: float, tol: float = 1e-6) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
