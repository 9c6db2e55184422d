"""Build each notebook from its reviewed source in ``notebooks/src/`` through jupytext.

    python -m teachkit.devtools.sync_notebooks               # every source -> notebooks/NN_name.ipynb
    python -m teachkit.devtools.sync_notebooks 05 12         # sources whose name starts with 05 or 12
    python -m teachkit.devtools.sync_notebooks --execute 05  # build, then run in place (`make notebooks`)
    python -m teachkit.devtools.sync_notebooks --text-only 05  # prose edits: keep the stored outputs

A source is a Python script in jupytext's percent format (``# %%`` code cells, ``# %% [markdown]``
text cells, https://jupytext.readthedocs.io/en/latest/formats-scripts.html). Cell metadata is
written on the cell's marker line, e.g. ``# %% [markdown] slideshow={"slide_type": "fragment"}``;
of it the notebook keeps the keys in :data:`CELL_METADATA_KEYS`. Cell ids are ``c000, c001, ...``
and the notebook metadata is what ``run_notebooks.normalise`` writes, so a rebuild of an unchanged
source changes nothing but the outputs, which only executing makes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

from .run_notebooks import NOTEBOOK_DIR, execute, normalise

SOURCE_DIR = NOTEBOOK_DIR / "src"
SOURCE_FORMAT = "py:percent"
CELL_METADATA_KEYS = ("slideshow", "tags")


def read_source(text: str) -> nbformat.NotebookNode:
    """The notebook a percent-format source describes: cells, kept metadata, stable ids, no outputs."""
    nb = jupytext.reads(text, fmt=SOURCE_FORMAT)
    cells = []
    for i, cell in enumerate(nb.cells):
        metadata = {k: cell.metadata[k] for k in CELL_METADATA_KEYS if k in cell.metadata}
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source, metadata=metadata)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata)
        else:
            new = nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
        new["id"] = f"c{i:03d}"
        cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells)
    normalise(out)
    return out


def notebook_path(source: Path) -> Path:
    return NOTEBOOK_DIR / (source.stem + ".ipynb")


def build(source: Path) -> Path:
    """Write ``notebooks/<stem>.ipynb`` from ``source`` (inputs only; run it to make outputs)."""
    nb = read_source(Path(source).read_text(encoding="utf-8"))
    nbformat.validate(nb)
    out = notebook_path(Path(source))
    nbformat.write(nb, out)
    return out


def carry_outputs(new: nbformat.NotebookNode, old: nbformat.NotebookNode) -> None:
    """Give ``new`` the outputs of ``old`` when their code is identical, cell for cell.

    Only prose (markdown) may differ: a changed, added or removed code cell raises, since its
    stored outputs would no longer be what the code makes.
    """
    code_new = [c for c in new.cells if c.cell_type == "code"]
    code_old = [c for c in old.cells if c.cell_type == "code"]
    if [c.source for c in code_new] != [c.source for c in code_old]:
        raise ValueError("the code changed, not only the text: run it (make notebooks NB=...)")
    for fresh, stored in zip(code_new, code_old):
        fresh.outputs, fresh.execution_count = stored.outputs, stored.execution_count


def build_text_only(source: Path) -> Path:
    """Rebuild from ``source`` keeping the stored outputs (only the markdown may have changed)."""
    out = notebook_path(Path(source))
    nb = read_source(Path(source).read_text(encoding="utf-8"))
    carry_outputs(nb, nbformat.read(out, as_version=4))
    nbformat.validate(nb)
    nbformat.write(nb, out)
    return out


def sources(selectors: list[str]) -> list[Path]:
    """Sources named by path, or by the prefix of their name (``05``); all of them for none."""
    found = sorted(SOURCE_DIR.glob("[0-9][0-9]_*.py"))
    if not selectors:
        return found
    chosen = []
    for sel in selectors:
        path = Path(sel)
        if path.suffix == ".py":
            if not path.exists():
                raise FileNotFoundError(f"no source {sel}")
            chosen.append(path)
        else:
            matches = [p for p in found if p.name.startswith(sel)]
            if not matches:
                raise FileNotFoundError(f"no source in {SOURCE_DIR} starts with {sel!r}")
            chosen.extend(matches)
    return chosen


def main(argv: list[str]) -> int:
    run, text_only = "--execute" in argv, "--text-only" in argv
    selectors = [a for a in argv if a not in ("--execute", "--text-only")]
    try:
        paths = sources(selectors)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    total = 0.0
    for i, src in enumerate(paths, 1):
        try:
            out = build_text_only(src) if text_only else build(src)
        except ValueError as err:
            print(f"{src.name}: {err}", file=sys.stderr)
            return 1
        line = f"[{i}/{len(paths)}] {src.name} -> {out.name}"
        if run:
            print(line + " ... running", end=" ", flush=True)
            seconds = execute(out)
            total += seconds
            print(f"{seconds:.1f} s", flush=True)
        else:
            print(line)
    if run:
        print(f"done: {len(paths)} notebook(s) in {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
