"""Lecture mode: the slide-metadata rules on a small source, and decks that need no network to open."""

import re

import nbformat
import pytest

from teachkit.devtools import decks, slides, sync_notebooks

SOURCE = '''# %% [markdown]
# # 99 · A tiny lecture
#
# What we will do.

# %%
import math
from pathlib import Path

# %% [markdown]
# ## 1. A derivation
#
# Some words first.
#
# **Step 1: start.** We have $a = b$.
#
# $$a + 1 = b + 1$$
#
# **Step 2: finish.** Hence the claim.

# %% [markdown]
# $$c = d$$

# %% [markdown]
# ### 1.1 A detail

# %%
x = 0
''' + "".join(f"x += {k}\n" for k in range(30)) + '''
# %%
for k in range(40):
    print(k)

# %%
print(math.pi)
'''


def slide_types(text):
    return [(c.cell_type, c.metadata.get("slideshow", {}).get("slide_type"))
            for c in sync_notebooks.read_source(text).cells]


def test_rules_give_slides_fragments_notes_and_skips():
    long_output = {"for k in range(40):\n    print(k)": [{"output_type": "stream", "name": "stdout",
                                                          "text": "".join(f"{k}\n" for k in range(40))}]}
    text = slides.annotate_text(SOURCE, long_output)
    assert slide_types(text) == [
        ("markdown", "slide"),      # the title
        ("code", "skip"),           # imports only
        ("markdown", "slide"),      # ## section, its text up to the first step
        ("markdown", "fragment"),   # **Step 1** (with its display maths)
        ("markdown", "fragment"),   # **Step 2**
        ("markdown", "fragment"),   # display maths after the slide's first cell
        ("markdown", "subslide"),   # ### heading
        ("code", "notes"),          # 31 lines of code
        ("code", "notes"),          # 40 lines of output
        ("code", None),             # a short cell stays on its slide
    ]
    steps = sync_notebooks.read_source(text).cells[2:5]
    assert steps[0].source.endswith("Some words first.")
    assert steps[1].source.startswith("**Step 1: start.**") and "$$a + 1 = b + 1$$" in steps[1].source
    assert steps[2].source == "**Step 2: finish.** Hence the claim."


def test_annotate_is_idempotent_and_changes_only_marker_lines_and_splits():
    once = slides.annotate_text(SOURCE)
    assert slides.annotate_text(once) == once
    body = [line for line in once.splitlines() if not line.startswith("# %%")]
    original = [line for line in SOURCE.splitlines() if not line.startswith("# %%")]
    # splitting a cell turns one "#" separator line into a blank line between two cells
    assert [line for line in body if line not in ("", "#")] == [line for line in original if line not in ("", "#")]


def test_a_lecturers_choice_is_kept_unless_reset():
    chosen = SOURCE.replace("# %%\nprint(math.pi)", '# %% slideshow={"slide_type": "slide"}\nprint(math.pi)')
    assert slide_types(slides.annotate_text(chosen))[-1] == ("code", "slide")
    assert slide_types(slides.annotate_text(chosen, reset=True))[-1] == ("code", None)


def test_annotate_file_reports_whether_it_changed(tmp_path):
    src = tmp_path / "99_tiny.py"
    src.write_text(SOURCE)
    assert slides.annotate(src) is True
    assert slides.annotate(src) is False


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decks")
    nb = sync_notebooks.read_source(slides.annotate_text(SOURCE))
    code = [c for c in nb.cells if c.cell_type == "code"][-1]
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="3.14159\n")]
    path = folder / "99_tiny.ipynb"
    nbformat.write(nb, path)
    return decks.build_deck(path, folder / "_slides")


def test_deck_loads_nothing_from_the_web_and_its_assets_are_beside_it(deck):
    html = deck.read_text()
    assert decks.remote_loads(html) == []
    assert decks.remote_loads_of_deck(html, deck.parent) == []
    for url in ("_assets/reveal.js/dist/reveal.js", "_assets/reveal.js/plugin/notes/notes.js",
                "_assets/reveal.js/dist/reveal.css", "_assets/mathjax/MathJax.js"):
        assert url in html
        assert (deck.parent / url).is_file(), url
    assert (deck.parent / "_assets/mathjax/config/TeX-AMS-MML_HTMLorMML-full.js").is_file()


def test_deck_has_one_section_per_slide_and_keeps_notes_and_fragments(deck):
    html = deck.read_text()
    assert html.count('class="fragment"') >= 3
    assert "<aside class=\"notes\">" in html
    assert "3.14159" in html and "A tiny lecture" in html
    slides_block = html[html.index('<div class="slides">'):]
    assert len(re.findall(r"<section\b", slides_block)) >= 3   # two slides, one holding a subslide


def test_the_detector_sees_every_kind_of_remote_load():
    page = ('<script src="https://cdn.example/x.js"></script><link rel="stylesheet" href="//cdn.example/y.css">'
            '<style>@import "http://fonts.example/f.css"; .a{background:url(https://img.example/i.png)}</style>'
            '<script type="module">import m from "https://cdn.example/m.mjs";</script>'
            '<a href="https://arxiv.org/abs/2305.18290">a reference</a><img src="data:image/png;base64,AAAA">')
    assert decks.remote_loads(page) == ["//cdn.example/y.css", "http://fonts.example/f.css",
                                        "https://cdn.example/m.mjs", "https://cdn.example/x.js",
                                        "https://img.example/i.png"]


def test_a_missing_asset_package_is_a_clear_error():
    with pytest.raises(RuntimeError, match="make setup"):
        decks.package_dir("no_such_package_teachkit", "static")


def test_browser_check_reads_its_report_rows_without_a_browser():
    from teachkit.devtools import browser_check as bc

    assert bc.has_tex("<p>the ratio $\\rho$</p>") and not bc.has_tex("<script>inlineMath: [['$','$']]</script><p>x</p>")
    good = {"notebook": "a.ipynb", "code_cells": 3, "ran": 3, "errors": [], "widget_errors": 0,
            "rise_on_first_slide": True, "slider_redraws": None}
    assert bc.problems(good) == []
    assert bc.problems(good | {"ran": 2}) == ["not every code cell ran"]
    assert bc.problems(good | {"widget_errors": 1}) == ["widget_errors"]
    assert bc.problems(good | {"rise_on_first_slide": False}) == ["the slideshow did not open on the first slide"]
    deck = {"deck": "a.slides.html", "on_first_slide": True, "maths_expected": True, "maths_typeset": 4,
            "blocked_requests": []}
    assert bc.problems(deck) == []
    assert bc.problems(deck | {"maths_typeset": 0}) == ["the deck's maths was not typeset"]
    assert bc.problems(deck | {"blocked_requests": ["https://cdn.example/x.js"]}) == ["blocked_requests"]
