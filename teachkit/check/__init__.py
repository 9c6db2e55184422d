"""Exercise checkers.

Every exercise is an :class:`Exercise`: a reference implementation plus a list of named
properties. ``teachkit.check.<name>(your_fn)`` runs each property against the learner's
function and reports, by name, the first one that fails, with the first of its hints;
``hint(name, level)`` gives the next ones (the idea, the formula, the code's shape) and
``solution(name)`` prints self-contained reference code. Each exercise also carries
``wrong_answers``: deliberately broken versions that the test-suite proves it rejects.

Checker modules register their exercises here; see ``teachkit/check/welcome.py`` for the
smallest complete example.
"""

from __future__ import annotations

from ._core import (
    CheckResult,
    Exercise,
    ExerciseFailed,
    assert_close,
    hint,
    matches_reference,
    registry,
    solution,
)

__all__ = [
    "CheckResult",
    "Exercise",
    "ExerciseFailed",
    "assert_close",
    "hint",
    "matches_reference",
    "registry",
    "solution",
]


from .._topics import export_topic_modules  # noqa: E402

__all__ += export_topic_modules(__name__, __path__, globals())
