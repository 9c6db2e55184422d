"""The code's shape, checked: no private names crossing modules, no long functions.

Layer contracts (import-linter) and lint (ruff) run in `make test` as their own tools; these are the
two rules neither tool states directly.
"""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "teachkit"
MAX_FUNCTION_LINES = 80
# A function may run longer only with a reason on its `def` line: `# long: <why>`.
LONG_REASON = "# long:"


def python_files(*roots: pathlib.Path):
    for root in roots:
        yield from sorted(p for p in root.rglob("*.py") if ".ipynb_checkpoints" not in p.parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_path(file: pathlib.Path, root: pathlib.Path) -> str:
    return ".".join(file.relative_to(root).with_suffix("").parts)


def resolve(file: pathlib.Path, node: ast.ImportFrom, root: pathlib.Path) -> str:
    """The absolute module an ImportFrom reads from."""
    if node.level == 0:
        return node.module or ""
    parts = module_path(file, root).split(".")
    if file.name != "__init__.py":
        parts = parts[:-1]
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_module(dotted: str, root: pathlib.Path) -> bool:
    rel = pathlib.Path(*dotted.split("."))
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def private_imports(file: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """`from other import _name` (a private function, class or constant of another module), and
    `other._name` read through an imported teachkit module."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    found, imported_modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            source = resolve(file, node, root)
            for alias in node.names:
                if is_module(f"{source}.{alias.name}", root):
                    imported_modules[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif is_private(alias.name):
                    found.append(f"{file.relative_to(root)}:{node.lineno} imports {alias.name} from {source}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("teachkit") and alias.asname:
                    imported_modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules and is_private(node.attr)):
            found.append(f"{file.relative_to(root)}:{node.lineno} reads "
                         f"{imported_modules[node.value.id]}.{node.attr}")
    return found


def long_functions(file: pathlib.Path) -> list[str]:
    lines = file.read_text(encoding="utf-8").splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and LONG_REASON not in lines[node.lineno - 1]:
                found.append(f"{file.relative_to(ROOT)}:{node.lineno} {node.name} is {length} lines")
    return found


def test_no_module_imports_a_private_name_from_another():
    found = [hit for f in python_files(PACKAGE, ROOT / "tests") for hit in private_imports(f)]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_no_function_is_longer_than_80_lines_without_a_reason():
    found = [hit for f in python_files(PACKAGE) for hit in long_functions(f)]
    assert not found, (f"functions over {MAX_FUNCTION_LINES} lines (split them, or give a reason "
                       f"on the def line as `{LONG_REASON} ...`):\n" + "\n".join(found))


def test_the_private_import_check_catches_both_forms(tmp_path):
    """The rule itself can fail: a from-import of `_x` and a read of `module._x` are both caught."""
    pkg = tmp_path / "teachkit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _hidden():\n    return 1\n")
    (pkg / "b.py").write_text("from .a import _hidden\nfrom . import a\nx = a._hidden()\n")
    (pkg / "c.py").write_text("from .a import _hidden as ok_alias_is_still_private\n")
    assert len(private_imports(pkg / "b.py", tmp_path)) == 2
    assert len(private_imports(pkg / "c.py", tmp_path)) == 1


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    import grimp
    from teachkit.devtools.layers import cycles

    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.c.x", "p.c.y"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c.x")
    graph.add_import(importer="p.c.x", imported="p.c.y")
    assert cycles(graph, "p") == []
    graph.add_import(importer="p.c.y", imported="p.a")            # p.a -> p.b -> p.c -> p.a
    graph.add_import(importer="p.c.y", imported="p.c.x")          # and one inside p.c
    found = cycles(graph, "p")
    assert {pkg for pkg, _, _ in found} == {"p", "p.c"}


def test_the_layer_map_shows_no_cycle(capsys):
    from teachkit.devtools.layers import main

    assert main() == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "no import cycle" in out and "compute" in out and "runtime" in out
