"""pyproject.toml and environment.yml must agree on what the project needs."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAME = {"torch": "pytorch"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower(), m.group(2).replace(" ", "")


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def env():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_specs(env) -> dict[str, str]:
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, spec = _split(dep.split("#")[0])
            out[name] = spec
    return out


def test_python_requirement(pyproject, env):
    assert pyproject["project"]["requires-python"] == ">=3.10"
    assert conda_specs(env)["python"] == ">=3.10"


def test_every_runtime_dependency_is_on_the_conda_side_with_the_same_range(pyproject, env):
    conda = conda_specs(env)
    for req in pyproject["project"]["dependencies"]:
        name, spec = _split(req)
        conda_name = CONDA_NAME.get(name, name)
        assert conda_name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[conda_name] == spec, f"{name}: pyproject says {spec!r}, environment.yml {conda[conda_name]!r}"


def test_conda_side_needs_nothing_pyproject_does_not_declare(pyproject, env):
    declared = {CONDA_NAME.get(_split(r)[0], _split(r)[0]) for r in pyproject["project"]["dependencies"]}
    extra = set(conda_specs(env)) - declared - {"python", "pip"}
    assert not extra, f"environment.yml needs {sorted(extra)}, which pyproject.toml does not declare"


def test_channel_and_editable_install(env):
    assert env["channels"] == ["conda-forge"]
    pip_section = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_section == [{"pip": ["-e .[test,trl]"]}]  # the extras make test installs


def test_ranges_not_pins_and_torch_admits_the_cpu_wheel(pyproject):
    from packaging.specifiers import SpecifierSet

    for req in pyproject["project"]["dependencies"]:
        name, spec = _split(req)
        assert "==" not in spec, f"{name} is pinned exactly ({spec}); use a range"
        assert spec, f"{name} has no version range"
    torch_spec = dict(_split(r) for r in pyproject["project"]["dependencies"])["torch"]
    assert "2.13.0" in SpecifierSet(torch_spec)
    test_extra = dict(_split(r) for r in pyproject["project"]["optional-dependencies"]["test"])
    assert test_extra["nbval"] == "==0.11.*"
    assert "10" not in SpecifierSet(test_extra["pytest"])


def test_trl_extra_has_ranges_and_every_setup_installs_it(pyproject):
    trl = dict(_split(r) for r in pyproject["project"]["optional-dependencies"]["trl"])
    assert set(trl) == {"trl", "transformers", "accelerate", "datasets"}
    assert all(spec and "==" not in spec and "<" in spec for spec in trl.values()), trl
    assert '-e ".[test,trl]"' in (ROOT / "Makefile").read_text()
