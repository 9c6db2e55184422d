"""Exercise checkers.

Every exercise is an :class:`Exercise`: a reference implementation plus a list of named
properties. ``teachkit.check.<name>(your_fn)`` runs each property against the learner's
function and reports, by name, the first one that fails. Each exercise also carries
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
    matches_reference,
    registry,
)
from .welcome import *  # noqa: F401,F403

__all__ = [
    "CheckResult",
    "Exercise",
    "ExerciseFailed",
    "assert_close",
    "matches_reference",
    "registry",
]


def _topic_modules() -> list[str]:
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name != "welcome")


def _load_optional_modules() -> None:
    import importlib

    for mod in _topic_modules():
        try:
            module = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{mod}":
                continue
            raise
        for name in getattr(module, "__all__", []):
            globals()[name] = getattr(module, name)
            __all__.append(name)


_load_optional_modules()
