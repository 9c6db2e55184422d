"""Each stored notebook equals its source read through jupytext: cell types, text and slide metadata."""

from pathlib import Path

import nbformat
import pytest

from teachkit.devtools import sync_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cell_view(cells) -> list[tuple]:
    return [(c.cell_type, c.source, c.metadata.get("slideshow", {}).get("slide_type")) for c in cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_equals_its_source_through_jupytext(path):
    src = ROOT / "notebooks" / "src" / f"{path.stem}.py"
    assert src.exists(), f"{path.name} has no source {src.relative_to(ROOT)}"
    want = cell_view(sync_notebooks.read_source(src.read_text(encoding="utf-8")).cells)
    got = cell_view(nbformat.read(path, as_version=4).cells)
    assert got == want, (f"{path.name} is out of date with {src.relative_to(ROOT)}: "
                         f"run `make notebooks NB={path.stem[:2]}`")


SOURCE = '''# %% [markdown] slideshow={"slide_type": "slide"}
# # Title
#
# Some text with $x^2$.

# %%
import math
print(math.pi)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Step 1.** more

# %% tags=["keep"] slideshow={"slide_type": "skip"} lines_to_next_cell=2
x = 1
'''


def test_read_source_keeps_slides_and_tags_drops_the_rest_and_numbers_cells():
    nb = sync_notebooks.read_source(SOURCE)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "code"]
    assert [c.id for c in nb.cells] == ["c000", "c001", "c002", "c003"]
    assert nb.cells[0].source == "# Title\n\nSome text with $x^2$."
    assert nb.cells[1].source == "import math\nprint(math.pi)"
    assert [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells] == \
        ["slide", None, "fragment", "skip"]
    assert nb.cells[3].metadata == {"slideshow": {"slide_type": "skip"}, "tags": ["keep"]}
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in nb.metadata
    nbformat.validate(nb)


def test_build_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(sync_notebooks, "NOTEBOOK_DIR", tmp_path)
    src = tmp_path / "src" / "99_demo.py"
    src.parent.mkdir()
    src.write_text(SOURCE)
    first = sync_notebooks.build(src).read_bytes()
    assert sync_notebooks.build(src).read_bytes() == first
    assert (tmp_path / "99_demo.ipynb").exists()


def test_unknown_selector_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="starts with '77'"):
        sync_notebooks.sources(["77"])
    assert sync_notebooks.sources([]) == sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))


def test_a_text_only_rebuild_keeps_outputs_and_refuses_changed_code():
    import nbformat
    from teachkit.devtools.sync_notebooks import carry_outputs, read_source

    old = read_source("# %% [markdown]\n# Old text\n\n# %%\nprint(1)\n")
    old.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    prose = read_source("# %% [markdown]\n# New text\n\n# %%\nprint(1)\n")
    carry_outputs(prose, old)
    assert prose.cells[1].outputs[0].text == "1\n" and prose.cells[0].source == "New text"
    with pytest.raises(ValueError, match="code changed"):
        carry_outputs(read_source("# %%\nprint(2)\n"), old)
