"""Re-export the public names of every topic module in a package (used by check/ and viz/)."""

from __future__ import annotations

import importlib
import pkgutil


def export_topic_modules(package_name: str, package_path, namespace: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """Import each non-private submodule and copy its ``__all__`` names into ``namespace``."""
    exported = []
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in skip:
            continue
        module = importlib.import_module(f"{package_name}.{info.name}")
        for name in getattr(module, "__all__", []):
            namespace[name] = getattr(module, name)
            exported.append(name)
    return exported
