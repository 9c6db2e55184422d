"""Notebooks are stored with outputs (tests/test_notebook_sources.py: equal to their sources), end with exercises, and the README's
course map says truthfully which ones exist."""

import re
from pathlib import Path

import nbformat
import pytest


ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COURSE_MAP = ["00_welcome", "01_toy_world", "02_ppo", "03_remax", "04_grpo", "05_dpo", "06_dpop",
              "07_tdpo", "08_orpo", "09_on_vs_off_policy", "10_activation_sparsity",
              "11_neuron_clusters_and_kernels", "12_flash_and_cache", "13_pipeline",
              "14_planner_and_engine", "15_from_toy_to_trl"]


def test_only_course_map_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert names <= set(COURSE_MAP), f"notebooks outside the course map: {sorted(names - set(COURSE_MAP))}"
    assert "00_welcome" in names


@pytest.mark.parametrize("name", COURSE_MAP)
def test_readme_marks_coming_notebooks_truthfully(name):
    readme = (ROOT / "README.md").read_text()
    line = next((l for l in readme.splitlines() if l.startswith(f"- `{name}`")), None)
    assert line is not None, f"README's course map has no line for {name}"
    exists = (ROOT / "notebooks" / f"{name}.ipynb").exists()
    assert ("*(coming)*" in line) != exists, (
        f"README marks {name} as {'coming' if '*(coming)*' in line else 'present'}, "
        f"but the notebook {'exists' if exists else 'does not exist'}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_in_order(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert None not in counts, f"{path.name} has unexecuted cells: run `make notebooks NB={path.stem[:2]}`"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name} was not executed top to bottom"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name} stores an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_checked_exercises(path):
    nb = nbformat.read(path, as_version=4)
    headings = [i for i, c in enumerate(nb.cells)
                if c.cell_type == "markdown" and re.search(r"^#+ .*Exercises", c.source, re.M)]
    assert headings, f"{path.name} has no '## Exercises' section"
    tail = "\n".join(c.source for c in nb.cells[headings[-1]:] if c.cell_type == "code")
    assert re.search(r"\bcheck\.\w+\(", tail), f"{path.name}: the exercises are not checked by teachkit.check"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_marks_cells_for_nbval(path):
    nb = nbformat.read(path, as_version=4)
    marked = [c for c in nb.cells if c.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in c.source]
    assert marked, f"{path.name} marks no cell with # NBVAL_CHECK_OUTPUT, so nbval compares nothing"
