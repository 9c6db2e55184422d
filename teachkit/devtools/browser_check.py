"""Maintainers: run every notebook in a real JupyterLab in headless Chromium, and open the decks offline.

    make browser-check                      # every notebook, then every deck in notebooks/_slides/
    python -m teachkit.devtools.browser_check 00 09 --out /tmp/check
    python -m teachkit.devtools.browser_check path/to/a.ipynb path/to/a.slides.html   # given files

Needs the system Chromium (Debian/Ubuntu: ``apt-get install chromium``) and playwright's Python
client (``pip install -e .[browser]``; it drives /usr/bin/chromium, no browser download). Not part of
``make test``. JupyterLab runs from this environment on a free localhost port with a token, on a
copy of the notebooks (it saves what it runs). For each notebook it reports the code cells run,
errors, the widgets rendered (and "Error displaying widget"), whether a slider moved in the browser
redraws its output, and whether RISE's slideshow (command ``RISE:slideshow``,
https://github.com/jupyterlab-contrib/rise) opens on the first slide. For each deck it blocks every
request that is not a local file and checks the first slide and the typeset maths.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .run_notebooks import NOTEBOOK_DIR, notebooks

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "teachkit-browser-check"
LAB_SETTINGS = {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}

NOTEBOOK_STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.model) return null;
  const code = [...w.content.model.cells].filter(c => c.type === 'code' && c.sharedModel.getSource().trim());
  const errors = [];
  for (const c of code) for (let i = 0; i < c.outputs.length; i++) {
    const o = c.outputs.get(i).toJSON();
    if (o.output_type === 'error') errors.push(o.ename + ': ' + String(o.evalue).slice(0, 160));
  }
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const pending = w.content.widgets.filter(x => x.model.type === 'code' && x.promptNode
                                                && x.promptNode.textContent.includes('*')).length;
  return {code: code.length, ran: code.filter(c => c.executionCount !== null).length, pending, errors,
          kernel: k ? k.status : 'none'};
}"""
KERNEL_IDLE_JS = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget; "
                  "return !!(w && w.context && w.context.isReady && w.sessionContext.session && "
                  "w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'); }")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """JupyterLab from this environment on a free port; returns the process and its base URL."""
    settings = Path(tempfile.mkdtemp(prefix="lab-settings-"))
    (settings / "overrides.json").write_text(json.dumps(LAB_SETTINGS))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=tempfile.mkdtemp(prefix="lab-user-"),
               JUPYTERLAB_WORKSPACES_DIR=tempfile.mkdtemp(prefix="lab-ws-"))
    port = free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--allow-root",
           "--LabApp.expose_app_in_browser=True", f"--LabServerApp.app_settings_dir={settings}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    lab = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=1)
            return lab, base
        except OSError:
            if lab.poll() is not None:
                break
            time.sleep(0.5)
    lab.kill()
    raise RuntimeError(f"JupyterLab did not start; see {log}")


def run_all(page, timeout: float = 900) -> dict:
    """Clear the open notebook, run all its cells, wait until the kernel has been idle for 3 s."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline, calm, state = time.time() + timeout, 0, None
    while time.time() < deadline and calm < 3:
        time.sleep(1)
        state = page.evaluate(NOTEBOOK_STATE_JS)
        done = state and state["kernel"] == "idle" and state["pending"] == 0 and (
            state["ran"] == state["code"] or state["errors"])
        calm = calm + 1 if done else 0
    return state or {}


def widget_report(page) -> dict:
    """Widgets rendered in the notebook, errors shown instead of widgets, and one slider's round trip."""
    outputs = page.locator(".jp-OutputArea-output:has(.jupyter-widgets)")
    report = {"widget_outputs": outputs.count(),
              "widget_views": page.locator(".jp-OutputArea-output .jupyter-widgets:not(.jupyter-widgets-output-area)"
                                           ", .widget-slider, .widget-dropdown").count(),
              "widget_errors": page.locator("text=Error displaying widget").count(),
              "slider_redraws": None}
    host = page.locator(".jp-OutputArea-output:has(.widget-slider):has(img)").first
    if host.count():
        before = host.locator("img").first.get_attribute("src")
        host.scroll_into_view_if_needed()
        handle = host.locator(".widget-slider .noUi-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        for _ in range(20):
            time.sleep(0.5)
            imgs = host.locator("img")
            if imgs.count() and imgs.first.get_attribute("src") != before:
                report["slider_redraws"] = True
                break
        else:
            report["slider_redraws"] = False
    return report


FIRST_SLIDE_JS = """() => { const s = [...document.querySelectorAll('.reveal .slides > section')];
  return {slides: s.length, present: s.findIndex(x => x.classList.contains('present')),
          text: (s[0] ? s[0].innerText : '').trim().split('\\n')[0].slice(0, 80)}; }"""


def first_slide(frame) -> dict:
    frame.wait_for_selector(".reveal .slides > section.present", timeout=120000)
    time.sleep(2)
    return frame.evaluate(FIRST_SLIDE_JS)


def rise_report(page, context) -> dict:
    """Open RISE from the first cell, in a new tab (toolbar button, ``RISE:slideshow``) and beside the
    notebook (Alt+R, ``RISE:preview``): does each show the deck's first slide?"""
    report = {}
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
    try:
        with context.expect_page(timeout=60000) as popup:
            page.evaluate("() => window.jupyterapp.commands.execute('RISE:slideshow')")
        rise_console = []
        popup.value.on("console", lambda m: rise_console.append(m.text[:120]) if m.type == "error" else None)
        tab = first_slide(popup.value)
        # jupyterlab-rise's own app may fail to load the widget manager (jupyterlab-contrib/rise#119):
        # then a panel shows its static figure there, which these counts tell apart
        report.update(rise_slides=tab["slides"], rise_on_first_slide=tab["present"] == 0,
                      rise_first_line=tab["text"],
                      rise_widget_views=popup.value.locator(".jp-OutputArea-output .jupyter-widgets").count(),
                      rise_output_images=popup.value.locator(".jp-OutputArea-output img").count(),
                      rise_console_errors=sorted(set(rise_console))[:3])
        popup.value.close()
        page.evaluate("() => window.jupyterapp.commands.execute('RISE:preview', {activate: true})")
        iframe = page.locator('iframe[src*="/rise/"]').first
        iframe.wait_for(state="attached", timeout=60000)
        frame = iframe.element_handle().content_frame()
        if frame is None:
            raise RuntimeError("RISE:preview opened no slideshow beside the notebook")
        beside = first_slide(frame)
        report.update(rise_preview_on_first_slide=beside["present"] == 0)
    except Exception as err:  # noqa: BLE001 - reported, not raised: the other checks still count
        report["rise_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    return report


def check_notebook(browser, base: str, name: str, index: int, out: Path) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    start = time.time()
    page.goto(f"{base}/lab/workspaces/check{index}/tree/{name}?reset&token={TOKEN}")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=180000)
    state = run_all(page)
    row = {"notebook": name, "seconds": round(time.time() - start, 1), "code_cells": state.get("code"),
           "ran": state.get("ran"), "errors": state.get("errors", [])[:3]}
    row.update(widget_report(page))
    page.screenshot(path=str(out / name.replace(".ipynb", ".png")))
    row.update(rise_report(page, context))
    row["console_errors"] = [e[:160] for e in console if "favicon" not in e][:5]
    context.close()
    return row


def has_tex(html: str) -> bool:
    """Whether the page's text (scripts and styles left out) holds TeX between dollars."""
    text = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S | re.I)
    return bool(re.search(r"\$[^$\n<]+\$", text))


def check_deck(browser, deck: Path, out: Path | None = None) -> dict:
    """Open a deck from disk with every non-file request blocked; the first slide and its maths."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked = []

    def only_files(route):
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    page.goto(deck.resolve().as_uri())
    page.wait_for_selector(".reveal .slides > section.present", timeout=30000)
    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
                           "&& MathJax.Hub.queue.running === 0", timeout=60000)
    time.sleep(1)
    row = page.evaluate("""() => {
      const s = [...document.querySelectorAll('.reveal .slides > section')];
      return {slides: s.length, on_first_slide: s.length > 0 && s[0].classList.contains('present'),
              first_line: s.length ? s[0].innerText.trim().split('\\n')[0].slice(0, 80) : '',
              maths_typeset: document.querySelectorAll('.MathJax_CHTML, .MathJax, .MathJax_Display').length,
              maths_errors: document.querySelectorAll('.MathJax_Error, merror').length,
              raw_dollars_left: (document.body.innerText.match(/\\$\\$/g) || []).length};
    }""")
    if out is not None:
        page.screenshot(path=str(out / deck.name.replace(".html", ".png")))
    row.update(deck=deck.name, blocked_requests=blocked[:5],
               maths_expected=has_tex(deck.read_text(encoding="utf-8")))
    context.close()
    return row


def problems(row: dict) -> list[str]:
    """What is wrong with one report row (empty when it passed)."""
    found = [k for k in ("errors", "widget_errors", "rise_error", "blocked_requests", "maths_errors")
             if row.get(k)]
    if "notebook" in row:
        if row.get("ran") != row.get("code_cells"):
            found.append("not every code cell ran")
        if row.get("rise_on_first_slide") is False or row.get("rise_preview_on_first_slide") is False:
            found.append("the slideshow did not open on the first slide")
        if row.get("slider_redraws") is False:
            found.append("a slider moved in the browser did not redraw its figure")
    else:
        if not row.get("on_first_slide"):
            found.append("the deck did not open on its first slide")
        if row.get("maths_expected") and not row.get("maths_typeset"):
            found.append("the deck's maths was not typeset")
    return found


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else Path(tempfile.mkdtemp(prefix="browser-check-"))
    args = [a for i, a in enumerate(argv) if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
    prefixes = [a for a in args if not a.endswith((".ipynb", ".html"))]
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="browser-check-notebooks-"))
    explicit = len(prefixes) < len(args)          # files named: check those, nothing else
    paths = [Path(a) for a in args if a.endswith(".ipynb")] if explicit else notebooks(prefixes)
    decks = [Path(a) for a in args if a.endswith(".html")] if explicit else [
        d for d in sorted((NOTEBOOK_DIR / "_slides").glob("[0-9][0-9]_*.slides.html"))
        if not prefixes or any(d.name.startswith(p) for p in prefixes)]
    names = []
    for path in paths:
        shutil.copy(path, work / path.name)
        names.append(path.name)
    rows = []
    lab, base = start_lab(work, out / "lab.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for i, name in enumerate(names):
                rows.append(check_notebook(browser, base, name, i, out))
                print(json.dumps(rows[-1]), flush=True)
            for deck in decks:
                rows.append(check_deck(browser, deck, out))
                print(json.dumps(rows[-1]), flush=True)
            browser.close()
    finally:
        lab.terminate()
        try:
            lab.wait(10)
        except subprocess.TimeoutExpired:
            lab.kill()
    (out / "report.json").write_text(json.dumps(rows, indent=1))
    print(f"report: {out / 'report.json'} (screenshots beside it)")
    failed = [r for r in rows if problems(r)]
    for r in failed:
        print(f"PROBLEM {r.get('notebook') or r.get('deck')}: {problems(r)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
