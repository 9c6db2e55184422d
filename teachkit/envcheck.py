"""Is this Jupyter kernel running in an environment that can run the course?

``report()`` compares each installed package with the range teachkit declares (read from the
installed package metadata, or from ``pyproject.toml`` when run from a source tree) and says OK,
or what to do. The most common failure is a JupyterLab attached to a kernel from another
environment: the fix is printed too.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from . import REPO_DIR


@dataclass
class PackageStatus:
    name: str
    wanted: str
    installed: str | None
    ok: bool
    advice: str


def declared_requirements(extras: tuple[str, ...] = ("test",)) -> dict[str, str]:
    """Package name -> version range, as teachkit declares them."""
    try:
        reqs = metadata.requires("teachkit") or []
    except metadata.PackageNotFoundError:
        import tomllib

        project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
        reqs = list(project["dependencies"])
        for extra in extras:
            reqs += [f"{r}; extra == '{extra}'" for r in project["optional-dependencies"].get(extra, [])]
    out = {}
    for req in reqs:
        body, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*['\"](\w+)['\"]", marker)
        if extra and extra.group(1) not in extras:
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", body)
        out[m.group(1).lower()] = m.group(2).strip().strip("()")
    return out


def package_status(name: str, wanted: str) -> PackageStatus:
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return PackageStatus(name, wanted, None, False,
                             f"not installed in this kernel's environment ({sys.prefix}): "
                             "run `make lab` from the repository root, or pick the teachkit kernel")
    local = Version(installed).public
    if local in SpecifierSet(wanted):
        return PackageStatus(name, wanted, installed, True, "")
    return PackageStatus(name, wanted, installed, False,
                         f"version {installed} is outside {wanted}: run `make lab` (it reinstalls "
                         f"from pyproject.toml) or `pip install '{name}{wanted}'`")


def check_environment() -> list[PackageStatus]:
    return [package_status(name, wanted) for name, wanted in declared_requirements().items()]


def report() -> bool:
    """Print one line per package; return True when everything is OK."""
    statuses = check_environment()
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "OK  " if s.ok else "FAIL"
        line = f"[{mark}] {s.name:<{width}}  {s.installed or 'missing':<12} wants {s.wanted}"
        if not s.ok:
            line += f"\n        -> {s.advice}"
        print(line)
    ok = all(s.ok for s in statuses)
    print("Environment OK: every package is in range." if ok else
          "Some packages need attention; see the lines marked FAIL.")
    return ok
