"""Versioned, checksummed data files in ``data/``.

A file written by :func:`save` is a torch ``.pt`` holding plain tensors and Python scalars only, so
it loads with ``weights_only=True``. Next to it sits nothing else: the header is inside the file:
``{"format": "teachkit-artifact", "kind", "version", "sha256", "payload"}``. The checksum covers
every tensor's bytes and every scalar, so a corrupt, truncated or stale file gives a clear error
that tells the learner to run ``make data``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from . import DATA_DIR

FORMAT = "teachkit-artifact"


class ArtifactError(RuntimeError):
    """A data file is missing, corrupt, truncated or from another version."""


def _digest(obj: Any, h) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"D")
        for k in sorted(obj):
            h.update(repr(k).encode())
            _digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(b"L" if isinstance(obj, list) else b"U")
        for v in obj:
            _digest(v, h)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(repr(obj).encode())
    else:
        raise TypeError(f"artifacts hold tensors, dicts, lists and scalars, not {type(obj).__name__}")


def checksum(payload: Any) -> str:
    h = hashlib.sha256()
    _digest(payload, h)
    return h.hexdigest()


def path_for(name: str) -> Path:
    return DATA_DIR / name


def save(payload: dict, path: str | Path, kind: str, version: int) -> Path:
    """Write ``payload`` with a header (kind, version, checksum). Deterministic bytes for equal payloads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "kind": kind, "version": int(version),
              "sha256": checksum(payload), "payload": payload}
    buf = io.BytesIO()
    torch.save(record, buf)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def load(path: str | Path, kind: str, version: int) -> dict:
    """Load and verify a file written by :func:`save`; raise :class:`ArtifactError` with a fix."""
    path = Path(path)
    fix = "Run `make data` from the repository root to rebuild the data files."
    if not path.exists():
        raise ArtifactError(f"{path} is missing. {fix}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise ArtifactError(f"{path} is corrupt or truncated ({type(err).__name__}). {fix}") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a teachkit data file. {fix}")
    if record.get("kind") != kind:
        raise ArtifactError(f"{path} holds a {record.get('kind')!r}, expected a {kind!r}. {fix}")
    if record.get("version") != version:
        raise ArtifactError(f"{path} is version {record.get('version')}, this code expects "
                            f"version {version}: the file is stale. {fix}")
    payload = record.get("payload")
    if checksum(payload) != record.get("sha256"):
        raise ArtifactError(f"{path} failed its checksum: the file is corrupt. {fix}")
    return payload
