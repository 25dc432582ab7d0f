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


def test_a_pip_install_runs_lesson_01_from_another_folder_and_writes_its_results_there(tmp_path):
    """Not a source checkout (pip install, Colab): results go under the working folder, never site-packages."""
    import json
    import os
    import shutil
    import subprocess

    src, site, work = tmp_path / "src", tmp_path / "site", tmp_path / "work"
    src.mkdir()
    work.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vaecourse", src / "vaecourse", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(src)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VAECOURSE_RESULTS", "VAECOURSE_HOME")}
    env.update(PYTHONPATH=str(site), CI="true", VAECOURSE_PROGRESS="0", XDG_CACHE_HOME=str(tmp_path / "cache"))
    # without the notebooks, the runner says where to get them
    runner = subprocess.run([sys.executable, "-m", "vaecourse.run_course", "--profile", "smoke"], cwd=work, env=env,
                            capture_output=True, text=True)
    assert runner.returncode != 0 and "git clone" in runner.stderr
    shutil.copy(ROOT / "notebooks" / "01_elbo.ipynb", work)
    run = subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", "--no-progress-bar", "01_elbo.ipynb",
                          "out.ipynb"], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    results = work / "results" / "01_elbo.smoke.json"
    saved = json.loads(results.read_text())
    assert saved["completed"] and all(c["passed"] for c in saved["checks"])
    last = json.loads((work / "out.ipynb").read_text())["cells"][-1]["outputs"][0]["text"]
    assert f"results in {results}" in "".join(last)  # the printed path is where the file is
    assert not (site / "results").exists() and not (site / "data").exists()  # nothing beside the package
    assert not list((site / "vaecourse").glob("**/*.json"))
