"""Re-execute notebooks in place, top to bottom, in this environment: the one way outputs are made.

    python -m teachkit.devtools.run_notebooks            # every notebook
    python -m teachkit.devtools.run_notebooks 05 12      # notebooks whose name starts with 05 or 12

Each notebook runs in a fresh ``python3`` kernel with its folder as working directory and
OMP_NUM_THREADS=1 (as under nbval). Metadata is normalised so a re-run changes only what it must.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .. import REPO_DIR

NOTEBOOK_DIR = REPO_DIR / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def notebooks(prefixes: list[str]) -> list[Path]:
    found = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        found = [p for p in found if any(p.name.startswith(x) for x in prefixes)]
    return found


def normalise(nb) -> None:
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                out.get("metadata", {}).pop("execution", None)


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    normalise(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    paths = notebooks(argv)
    if not paths:
        print(f"no notebooks match {argv}", file=sys.stderr)
        return 1
    total = 0.0
    for i, path in enumerate(paths, 1):
        print(f"[{i}/{len(paths)}] {path.name} ...", end=" ", flush=True)
        seconds = execute(path)
        total += seconds
        print(f"{seconds:.1f} s", flush=True)
    print(f"done: {len(paths)} notebook(s) in {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
