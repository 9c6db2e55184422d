"""Build a notebook from its source script in ``notebooks/src/`` (the "percent" format).

    python -m teachkit.devtools.py2nb notebooks/src/05_dpo.py      # -> notebooks/05_dpo.ipynb

Cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown; each line starts with ``# ``).
Outputs are not produced here: run ``make notebooks NB=05`` afterwards. The source script is what
developers edit and review; the .ipynb with stored outputs is what learners open.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from .run_notebooks import KERNELSPEC, NOTEBOOK_DIR


def parse(text: str) -> list:
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body.strip():
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def convert(src: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:03d}"
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    out = NOTEBOOK_DIR / (src.stem + ".ipynb")
    nbformat.write(nb, out)
    return out


def main(argv: list[str]) -> int:
    srcs = [Path(a) for a in argv] or sorted((NOTEBOOK_DIR / "src").glob("[0-9][0-9]_*.py"))
    for src in srcs:
        print(f"{src} -> {convert(src)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
