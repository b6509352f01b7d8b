"""environment.yml (conda) must install the same dependencies as pyproject.toml (pip)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
CONDA_TO_PIP = {"pytorch": "torch", "ray-core": "ray"}  # conda-forge names


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return CONDA_TO_PIP.get(name.lower(), name.lower()), spec.replace(" ", "")


def test_conda_and_pip_dependencies_match():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(split(d) for d in env["dependencies"] if isinstance(d, str) and split(d)[0] not in {"python", "pip"})
    assert conda == pip
    assert {"pip": ["-e ."]} in env["dependencies"]
