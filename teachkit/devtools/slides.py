"""Lecture mode: slide metadata in the notebook sources, and static decks built from the notebooks.

    python -m teachkit.devtools.slides annotate notebooks/src/05_dpo.py   # write slide metadata
    python -m teachkit.devtools.slides annotate --reset notebooks/src/05_dpo.py
    python -m teachkit.devtools.slides build [05 ...]                       # decks (`make slides`)

``annotate`` gives each cell a reveal.js slide type, the ``slideshow`` cell metadata that RISE and
nbconvert's slides export read (https://nbconvert.readthedocs.io/en/latest/usage.html#reveal-js-html-slideshow):

- ``slide``: the first cell, and every markdown cell that opens with a ``#`` or ``##`` heading;
- ``subslide``: a markdown cell that opens with a ``###`` heading;
- ``fragment``: a derivation step inside a slide, i.e. a markdown cell that opens with ``**Step``
  or with display maths ``$$``. A markdown cell holding several ``**Step`` paragraphs is first split
  into one cell per step, so each step appears on its own;
- ``notes`` (speaker view only): a code cell longer than :data:`LONG_CODE_LINES` lines, or one whose
  stored output is text only and longer than :data:`LONG_OUTPUT_LINES` lines;
- ``skip``: a code cell that only imports.

Cells that already carry a slide type keep it (a lecturer's choice wins) unless ``--reset``. The rules
depend only on the cells, so a second run changes nothing. The source keeps jupytext's percent
format; only the cell marker lines gain ``slideshow={...}``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat

from .run_notebooks import NOTEBOOK_DIR
from .sync_notebooks import SOURCE_FORMAT

LONG_CODE_LINES = 25
LONG_OUTPUT_LINES = 25
STEP = re.compile(r"^\*\*Step\b")
HEADING = re.compile(r"^(#{1,3}) ")
IMPORT_ONLY = re.compile(r"^(import \S|from \S+ import |%|#|$)")


def first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")


def split_steps(source: str) -> list[str]:
    """A markdown text cut before every paragraph that opens with ``**Step`` (when there are two or more)."""
    paragraphs = source.split("\n\n")
    if sum(bool(STEP.match(p.lstrip())) for p in paragraphs) < 2:
        return [source]
    pieces: list[list[str]] = [[]]
    for p in paragraphs:
        if STEP.match(p.lstrip()) and pieces[-1]:
            pieces.append([])
        pieces[-1].append(p)
    return ["\n\n".join(piece) for piece in pieces]


def text_output_lines(outputs: list) -> int | None:
    """Lines of text the outputs show, or None when any output is an image or other rich display."""
    lines = 0
    for out in outputs:
        if out.get("output_type") == "stream":
            lines += len(out.get("text", "").splitlines())
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            if set(data) - {"text/plain"}:
                return None
            lines += len(data.get("text/plain", "").splitlines())
    return lines


def slide_type(cell_type: str, source: str, outputs: list | None, opens_slide: bool) -> str | None:
    """The slide type the rules give one cell; ``opens_slide`` is True for the first cell of the deck."""
    if opens_slide:
        return "slide"
    head = first_line(source)
    if cell_type == "markdown":
        heading = HEADING.match(head)
        if heading:
            return "subslide" if len(heading.group(1)) == 3 else "slide"
        if STEP.match(head) or head.startswith("$$"):
            return "fragment"
        return None
    if cell_type != "code":
        return None
    lines = [line.strip() for line in source.splitlines()]
    if all(IMPORT_ONLY.match(line) for line in lines) and any(lines):
        return "skip"
    if len(lines) > LONG_CODE_LINES:
        return "notes"
    shown = text_output_lines(outputs or [])
    if shown is not None and shown > LONG_OUTPUT_LINES:
        return "notes"
    return None


def stored_outputs(notebook: Path) -> dict[str, list]:
    """Outputs of the stored notebook's code cells, by cell source (empty when there is none)."""
    if not notebook.exists():
        return {}
    nb = nbformat.read(notebook, as_version=4)
    return {c.source: c.get("outputs", []) for c in nb.cells if c.cell_type == "code"}


def annotate_notebook(nb, outputs: dict[str, list] | None = None, reset: bool = False):
    """Split step-by-step markdown cells and set every cell's slide type (in place; returns ``nb``)."""
    cells = []
    for cell in nb.cells:
        pieces = split_steps(cell.source) if cell.cell_type == "markdown" else [cell.source]
        for k, piece in enumerate(pieces):
            new = nbformat.from_dict(dict(cell)) if k == 0 else nbformat.v4.new_markdown_cell(piece)
            new.source, new.metadata = piece, dict(new.metadata) if k == 0 else {}
            cells.append(new)
    for i, cell in enumerate(cells):
        if "slideshow" in cell.metadata and not reset:
            continue
        kind = slide_type(cell.cell_type, cell.source, (outputs or {}).get(cell.source), i == 0)
        cell.metadata.pop("slideshow", None)
        if kind is not None:
            cell.metadata["slideshow"] = {"slide_type": kind}
    nb.cells = cells
    return nb


def annotate_text(text: str, outputs: dict[str, list] | None = None, reset: bool = False) -> str:
    """The percent-format source with slide metadata written on its cell markers."""
    nb = jupytext.reads(text, fmt=SOURCE_FORMAT)
    annotate_notebook(nb, outputs, reset)
    nb.metadata.setdefault("jupytext", {})
    nb.metadata["jupytext"].update(notebook_metadata_filter="-all", cell_metadata_filter="slideshow,tags,-all")
    return jupytext.writes(nb, fmt=SOURCE_FORMAT)


def annotate(source: Path, reset: bool = False) -> bool:
    """Annotate one source file in place; True when it changed."""
    text = source.read_text(encoding="utf-8")
    new = annotate_text(text, stored_outputs(NOTEBOOK_DIR / (source.stem + ".ipynb")), reset)
    if new != text:
        source.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("annotate", "build"):
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "build":
        from .decks import main as build_main
        return build_main(args)
    reset = "--reset" in args
    paths = [Path(a) for a in args if a != "--reset"]
    if not paths:
        print("name the sources to annotate, e.g. notebooks/src/05_dpo.py", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{path}: {'annotated' if annotate(path, reset) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
