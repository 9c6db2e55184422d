"""Print teachkit's layers as the code actually imports them, and check that no import cycle exists.

    python -m teachkit.devtools.layers          # the map, then "no cycle" (exit 0) or the cycles (exit 1)

For each ``layers`` contract in ``pyproject.toml`` (``[tool.importlinter]``) it lists the layers top
to bottom, the modules in each, and which layers each one imports. Then it looks for cycles among
the modules of every package: a strongly connected group of siblings (Tarjan's algorithm on the
import graph, each sibling standing for itself and everything below it). ``lint-imports`` holds the
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
        inside = {child} | set(graph.find_descendants(child)) if graph.find_children(child) else {child}
        for module in inside:
            for imported in graph.find_modules_directly_imported_by(module):
                if imported.startswith(package + ".") and owner(imported, package) != child:
                    edges[child].add(owner(imported, package))
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member (or a self-loop): the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def cycles(graph: grimp.ImportGraph, package: str = PACKAGE) -> list[list[str]]:
    """Import cycles among siblings, in ``package`` and every package below it."""
    found = strongly_connected(imports_between_children(graph, package))
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
        for group in found:
            print("import cycle among: " + ", ".join(group))
        return 1
    print(f"no import cycle among the {len(graph.modules)} modules of {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
