"""Print teachkit's layers as the code actually imports them, and check that no import cycle exists.

    python -m teachkit.devtools.layers          # the map, then "no cycle" (exit 0) or the cycles (exit 1)

For each ``layers`` contract in ``pyproject.toml`` (``[tool.importlinter]``) it lists the layers top
to bottom, the modules in each, and which layers each one imports. Then it looks for cycles among
the modules of every package, each sibling standing for itself and everything below it (grimp's
``nominate_cycle_breakers``, the check behind import-linter's ``acyclic_siblings``). ``lint-imports`` holds the
contracts in ``make test``; this is the view a reader uses to find their way around.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "teachkit"


def layer_contracts(pyproject: Path = ROOT / "pyproject.toml") -> list[dict]:
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return [c for c in config["contracts"] if c["type"] == "layers"]


def owner(module: str, container: str) -> str:
    """The direct child of ``container`` that ``module`` lives in (``a.b.c`` in ``a`` -> ``a.b``)."""
    return ".".join(module.split(".")[: container.count(".") + 2])


def imports_between_children(graph: grimp.ImportGraph, package: str) -> dict[str, set[str]]:
    """For each child of ``package``: the other children it imports (directly, from any depth)."""
    children = sorted(graph.find_children(package))
    edges: dict[str, set[str]] = {child: set() for child in children}
    for child in children:
        for module in {child, *graph.find_descendants(child)}:
            for imported in graph.find_modules_directly_imported_by(module):
                if imported.startswith(package + ".") and owner(imported, package) != child:
                    edges[child].add(owner(imported, package))
    return edges


def cycles(graph: grimp.ImportGraph, package: str = PACKAGE) -> list[tuple[str, str, str]]:
    """Import cycles among siblings, in ``package`` and every package below it, as
    ``(package, importer, imported)``: the imports grimp nominates to break them (none: acyclic)."""
    found = [(package, *edge) for edge in sorted(graph.nominate_cycle_breakers(package))]
    for child in sorted(graph.find_children(package)):
        if graph.find_children(child):
            found += cycles(graph, child)
    return found


def describe_layers(graph: grimp.ImportGraph, contract: dict) -> list[str]:
    lines = [contract["name"]]
    for container in contract["containers"]:
        edges = imports_between_children(graph, container)
        for layer in contract["layers"]:
            for name in (part.strip() for part in layer.split("|")):
                full = f"{container}.{name}"
                if full not in graph.modules:
                    continue
                below = sorted(m.rsplit(".", 1)[1] for m in edges.get(full, ()))
                members = sorted(m.rsplit(".", 1)[1] for m in graph.find_children(full))
                lines.append(f"  {name:<12} imports {', '.join(below) or '(nothing in ' + container + ')'}")
                if members:
                    lines.append(f"  {'':<12} holds   {', '.join(members)}")
    return lines


def main() -> int:
    graph = grimp.build_graph(PACKAGE)
    for contract in layer_contracts():
        print("\n".join(describe_layers(graph, contract)), end="\n\n")
    found = cycles(graph)
    if found:
        for package, importer, imported in found:
            print(f"import cycle in {package}: removing {importer} -> {imported} would break it")
        return 1
    print(f"no import cycle among the {len(graph.modules)} modules of {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
