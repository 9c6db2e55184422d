"""Static reveal.js decks of the notebooks that open offline: ``make slides``.

    python -m teachkit.devtools.decks            # every notebook -> notebooks/_slides/NN_name.slides.html
    python -m teachkit.devtools.decks 05 12      # notebooks whose name starts with 05 or 12

Each deck is nbconvert's reveal.js export (https://nbconvert.readthedocs.io/en/latest/usage.html#reveal-js-html-slideshow)
of the stored notebook, outputs included, cut into slides by the cells' ``slideshow`` metadata. The
template in ``deck_template/`` loads every script from files beside the decks, by relative URL:

- reveal.js from the ``sphinx-revealjs`` package, which ships reveal.js's ``dist/`` and plugins
  (https://sphinx-revealjs.readthedocs.io/); only those files are used, not Sphinx;
- MathJax 2.7 from ``jupyter-server-mathjax`` (nbconvert's maths configuration is MathJax 2's).

Both are installed by ``make setup`` (the ``test`` extra), so building and viewing need no network:
open ``notebooks/_slides/05_dpo.slides.html`` in a browser, or copy the folder anywhere.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter
from traitlets.config import Config

from .run_notebooks import NOTEBOOK_DIR, notebooks

SLIDES_DIR = NOTEBOOK_DIR / "_slides"
TEMPLATE_DIR = Path(__file__).with_name("deck_template")
ASSETS = "_assets"
REVEAL_PREFIX = f"{ASSETS}/reveal.js"
MATHJAX_URL = f"{ASSETS}/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
# Where a deck would load something from: src=, href= on <link>, CSS url(...) and @import, ES imports.
LOADS = re.compile(r"""<(?:script|img|iframe|source|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']"""
                   r"""|url\(\s*["']?([^"')]+)|@import\s+["']([^"']+)|\bimport\s[^;'"]*?from\s*["']([^"']+)""",
                   re.I)


def package_dir(package: str, inside: str) -> Path:
    """A folder shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {package!r} is missing: run `make setup` (it provides the "
                           f"offline slide assets)")
    folder = Path(next(iter(spec.submodule_search_locations))) / inside
    if not folder.is_dir():
        raise RuntimeError(f"{package} has no {inside}/ (version changed?); the decks need it")
    return folder


def copy_assets(out_dir: Path) -> Path:
    """reveal.js (``dist/`` and the notes plugin) and MathJax beside the decks; skipped when present."""
    assets = out_dir / ASSETS
    reveal = package_dir("sphinx_revealjs", "_static/revealjs")
    mathjax = package_dir("jupyter_server_mathjax", "static")
    wanted = {assets / "reveal.js" / "dist": reveal / "dist",
              assets / "reveal.js" / "plugin" / "notes": reveal / "plugin" / "notes",
              assets / "reveal.js" / "LICENSE": reveal / "LICENSE",
              assets / "mathjax": mathjax}
    for target, origin in wanted.items():
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("*.map", "*.esm.js"))
        else:
            shutil.copyfile(origin, target)
    return assets


def exporter() -> SlidesExporter:
    c = Config()
    c.SlidesExporter.reveal_url_prefix = REVEAL_PREFIX
    c.SlidesExporter.mathjax_url = MATHJAX_URL
    c.SlidesExporter.reveal_theme = "white"   # its fonts are local files ("simple" imports web fonts)
    c.SlidesExporter.reveal_number = "c/t"
    return SlidesExporter(config=c, template_name=TEMPLATE_DIR.name,
                          extra_template_basedirs=[str(TEMPLATE_DIR.parent)])


def deck_html(notebook: Path) -> str:
    """The deck of one notebook as HTML text (scripts referenced relative to the decks' folder)."""
    nb = nbformat.read(notebook, as_version=4)
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    return body


def remote_loads(html: str) -> list[str]:
    """Every http(s) or protocol-relative URL the page would load (hyperlinks in text are not loads)."""
    urls = [next(g for g in m.groups() if g) for m in LOADS.finditer(html)]
    return sorted({u for u in urls if re.match(r"^(https?:)?//", u.strip(), re.I)})


def local_stylesheets(html: str, folder: Path) -> list[Path]:
    """The style sheets beside the deck that it links (they may import more, checked too)."""
    urls = [next(g for g in m.groups() if g) for m in LOADS.finditer(html)]
    return [folder / u.split("?")[0] for u in urls if u.endswith(".css") and not re.match(r"^\w+:|//", u)]


def remote_loads_of_deck(html: str, folder: Path) -> list[str]:
    """What the deck in ``folder`` would load from the web: its own references and its style sheets'."""
    found = set(remote_loads(html))
    for sheet in local_stylesheets(html, folder):
        if not sheet.exists():
            raise RuntimeError(f"the deck links {sheet}, which is missing")
        found |= {f"{u} (from {sheet.name})" for u in remote_loads(sheet.read_text(encoding="utf-8"))}
    return sorted(found)


def build_deck(notebook: Path, out_dir: Path = SLIDES_DIR) -> Path:
    """Write ``<out_dir>/<stem>.slides.html`` and the assets it needs; refuse a deck that loads from the web."""
    html = deck_html(notebook)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_assets(out_dir)
    remote = remote_loads_of_deck(html, out_dir)
    if remote:
        raise RuntimeError(f"{notebook.name}: the deck would load {remote}, so it would not open offline")
    out = out_dir / f"{notebook.stem}.slides.html"
    out.write_text(html, encoding="utf-8")
    return out


def main(argv: list[str]) -> int:
    paths = notebooks(argv)
    if not paths:
        print(f"no notebooks match {argv}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path.name} -> {build_deck(path).relative_to(NOTEBOOK_DIR.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
