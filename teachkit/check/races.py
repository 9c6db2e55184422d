"""Shared writes inside a ``prange`` loop, found in the kernel's source (no timing involved).

A data race loses an update only when two threads hit the same element at the same moment, so a
run can miss it, most often on a busy machine. The source shows the cause every time: inside

    for j in prange(n):
        ...
        out[k] += h * down[k]          # every iteration j may write out[k]

an array that lives outside the loop is written at an index that does not start with the loop
variable, so two iterations can write the same element. Writes that start with the loop
variable (``partial[c, k]``, ``partial[c][k]``, ``h[j]``) or go to an array bound inside the loop
body (``row = partial[c]``; ``row[k] += ...``) belong to one iteration. Scalar ``s += ...`` is a
reduction numba handles itself.

What this reads: the prange loops written in the function itself. A write made by a helper the
loop calls is not seen here; running the kernel on colliding input is the check for those.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

__all__ = ["shared_writes_in_prange"]


def shared_writes_in_prange(fn) -> list[str]:
    """Each write inside a prange loop of ``fn`` that other iterations may also make, as
    ``"line N: <statement>"`` (N counts from the ``def`` line, 1). Empty when the source is not
    available (a function built by ``exec``) or when there is none."""
    try:
        source = textwrap.dedent(inspect.getsource(getattr(fn, "py_func", fn)))
    except (OSError, TypeError):
        return []
    found = []
    for loop in ast.walk(ast.parse(source)):
        if not (isinstance(loop, ast.For) and _is_prange(loop.iter) and isinstance(loop.target, ast.Name)):
            continue
        private = _names_bound_in(loop)
        for node in ast.walk(loop):
            for target in _written(node):
                root, first = _root_and_first_index(target)
                if root not in private and not (isinstance(first, ast.Name) and first.id == loop.target.id):
                    line = f"line {node.lineno - _def_line(source) + 1}: {ast.unparse(node)}"
                    if line not in found:
                        found.append(line)
    return found


def _def_line(source: str) -> int:
    """Line of the ``def`` (decorators come before it)."""
    return next(n.lineno for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _is_prange(call) -> bool:
    if not isinstance(call, ast.Call):
        return False
    f = call.func
    return (isinstance(f, ast.Name) and f.id == "prange") or (isinstance(f, ast.Attribute) and f.attr == "prange")


def _names_bound_in(loop: ast.For) -> set[str]:
    """Names assigned inside the loop body: arrays made or sliced per iteration."""
    names = set()
    for node in ast.walk(loop):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.For)) and node is not loop else []
        for t in targets:
            names.update(_bound_names(t))
    return names


def _bound_names(target) -> list[str]:
    """``a`` and ``a, b`` bind names; ``a[k] = ...`` writes into ``a`` and binds nothing."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for t in target.elts for n in _bound_names(t)]
    return []


def _written(node) -> list[ast.Subscript]:
    """Subscripts a statement stores into."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
        if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
    return [s for t in targets for s in ast.walk(t) if isinstance(s, ast.Subscript) and isinstance(s.ctx, ast.Store)]


def _root_and_first_index(sub: ast.Subscript):
    """For ``a[i, k]`` or ``a[i][k]``: the name ``a`` (None if not a plain name) and the node ``i``."""
    while isinstance(sub.value, ast.Subscript):
        sub = sub.value
    first = sub.slice.elts[0] if isinstance(sub.slice, ast.Tuple) and sub.slice.elts else sub.slice
    return (sub.value.id if isinstance(sub.value, ast.Name) else None), first
