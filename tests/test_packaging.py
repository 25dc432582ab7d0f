"""The install files agree: requirements.txt, environment.yml, pyproject.toml and the CI lock."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(lines):
    reqs = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        if m and m.group(1) not in ("pip", "python", "conda-forge"):
            reqs[m.group(1).lower()] = m.group(2).replace(" ", "")
    return reqs


def requirements_txt():
    return requirement_lines((ROOT / "requirements.txt").read_text().splitlines())


def environment_yml_pip():
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("- pip:")[1]
    return requirement_lines(line for line in pip_block.splitlines() if line.strip().startswith("- "))


def test_environment_yml_and_requirements_agree():
    assert environment_yml_pip() == requirements_txt()


def test_pyproject_dependencies_are_in_requirements():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    deps = requirement_lines(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    reqs = requirements_txt()
    assert {k: reqs.get(k) for k in deps} == deps


def test_ci_lock_pins_every_requirement_and_torch():
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    missing = [r for r in requirements_txt() if r.replace("_", "-") not in pins]
    assert not missing, f"the CI lock does not pin {missing}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
