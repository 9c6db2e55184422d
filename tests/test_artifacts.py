"""Data files: round trip, and a clear `make data` error for missing, corrupt, truncated or stale files."""

import pytest
import torch

from teachkit import artifacts
from teachkit.artifacts import ArtifactError


@pytest.fixture
def saved(tmp_path):
    payload = {"weights": torch.arange(12, dtype=torch.float32).reshape(3, 4), "meta": {"seed": 3, "name": "x"}}
    path = artifacts.save(payload, tmp_path / "a.pt", kind="demo", version=2)
    return path, payload


def test_round_trip(saved):
    path, payload = saved
    got = artifacts.load(path, kind="demo", version=2)
    assert torch.equal(got["weights"], payload["weights"]) and got["meta"] == payload["meta"]


def test_same_payload_same_bytes(tmp_path, saved):
    path, payload = saved
    again = artifacts.save(payload, tmp_path / "b.pt", kind="demo", version=2)
    assert again.read_bytes() == path.read_bytes()


def test_missing(tmp_path):
    with pytest.raises(ArtifactError, match="missing.*make data"):
        artifacts.load(tmp_path / "nope.pt", kind="demo", version=2)


def test_truncated(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ArtifactError, match="corrupt or truncated.*make data"):
        artifacts.load(path, kind="demo", version=2)


def test_flipped_tensor_byte_fails_checksum(tmp_path):
    payload = {"w": torch.zeros(4096, dtype=torch.float32)}
    path = artifacts.save(payload, tmp_path / "c.pt", kind="demo", version=1)
    raw = bytearray(path.read_bytes())
    start = raw.find(b"\x00" * 4096)
    raw[start + 100] = 0x3F
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum.*make data"):
        artifacts.load(path, kind="demo", version=1)


def test_stale_version_and_wrong_kind(saved):
    path, _ = saved
    with pytest.raises(ArtifactError, match="stale.*make data"):
        artifacts.load(path, kind="demo", version=3)
    with pytest.raises(ArtifactError, match="expected a 'policy'"):
        artifacts.load(path, kind="policy", version=2)


def test_not_a_teachkit_file(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ArtifactError, match="not a teachkit data file"):
        artifacts.load(path, kind="demo", version=1)
