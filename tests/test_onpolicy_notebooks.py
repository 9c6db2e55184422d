"""The sources of notebooks 02–04 are well-formed percent scripts: every markdown line is a comment,
and no stray control character (a Python escape such as "\\n" in "\\nabla") broke the maths."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks" / "src").glob("0[234]_*.py"))


def _markdown_lines(path: Path):
    kind = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
        elif kind == "markdown":
            yield number, line


def test_the_three_sources_exist():
    assert [p.stem[:2] for p in SOURCES] == ["02", "03", "04"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_every_markdown_line_is_a_comment(path):
    bad = [n for n, line in _markdown_lines(path) if line and not line.startswith("#")]
    assert not bad, f"{path.name}: markdown lines without the '# ' prefix at {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_no_control_characters(path):
    text = path.read_text()
    bad = [m.start() for m in re.finditer(r"[\x00-\x08\x0b-\x1f\x7f]", text)]
    assert not bad, f"{path.name}: control characters at offsets {bad[:5]}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_latex_commands_are_whole(path):
    # a "\n" escape eats the backslash and the n of \nabla, \neq, \nu: the rest starts a line
    orphans = [n for n, line in _markdown_lines(path) if re.match(r"#?\s*(abla|eq|u)\\", line)]
    assert not orphans, f"{path.name}: broken LaTeX command at lines {orphans}"
