"""The notebooks as a reader and CI meet them.

nbval (``--nbval-lax``) executes every notebook in the smoke profile; these tests check what it
does not: the conventions of each committed notebook, the Colab install cell (with Colab
simulated), papermill parameter injection through the course runner, and that two runs with
the same seed record the same numbers.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import nbformat
import pytest

from vaecourse.run_course import course_notebooks
from vaecourse.run_course import main as run_course

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = course_notebooks()
REPO_URL = re.search(r'Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)


def read(path: Path):
    return nbformat.read(path, as_version=4)


# The course's lessons in order: a notebook added, renamed or lost fails here until this list, the README's table
# (below) and the runner agree (docs/development.md: adding a lesson).
LESSONS = ["01_elbo", "02_ae_vs_vae", "03_c_and_beta", "04_geco", "04b_fixed_points", "05_ccvae", "06_vac_introvac",
           "07_csvae"]


def test_the_course_has_its_notebooks():
    assert [p.stem for p in NOTEBOOKS] == LESSONS, "the course runner must find exactly the course's lessons, in order"
    table = (ROOT / "README.md").read_text().split("## The notebooks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"^\| [0-9]", line)]
    linked = [re.search(r"\]\(notebooks/([^)]+)\.ipynb\)", row).group(1) for row in rows]
    assert linked == LESSONS, "the README's notebook table must list every lesson once, in order"
    colab = [re.search(r"/blob/main/notebooks/([^)]+)\.ipynb\)", row).group(1) for row in rows]
    assert colab == LESSONS, "each row's Colab badge must open that row's notebook"
    assert [row.split(" | ")[0].strip("| ") for row in rows] == [nb.split("_")[0] for nb in LESSONS]
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in NOTEBOOKS] == on_disk, "the course runner must see every notebook nbval runs"
    assert [p.name[:2] for p in NOTEBOOKS] == sorted(p.name[:2] for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path: Path):
    nb = read(path)
    cells = nb.cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith(f"# {path.stem[:2]}")
    assert f"colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/main/notebooks/{path.name}" \
        in first.source, "the first cell needs the Colab badge pointing at this notebook"
    assert "google.colab" in cells[1].source and "%pip install" in cells[1].source
    params = [c for c in cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "PROFILE = None" in params[0].source and "SEED" in params[0].source
    code = [c for c in cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in code), "commit the notebook executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], "committed with an error output"
    assert "widgets" not in nb.metadata, "strip the widget state: python -m vaecourse.run_course --clean NOTEBOOK"
    assert not [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])], \
        "a papermill injected-parameters cell would make nbval rerun that profile in CI: run_course --clean"
    assert path.stat().st_size < 3_000_000
    text = "\n".join(c.source for c in code)
    assert "start_lesson(" in text and "lesson.finish()" in text
    outputs = "\n".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert re.search(r"profile=(smoke|cpu|full), device=", outputs), "outputs must say which profile/device ran"


def run_install_cell(source: str, colab: bool) -> list[tuple[str, str]]:
    """Execute the install cell's logic, with Colab present or not; returns the magics it would run."""
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(source)
    calls: list[tuple[str, str]] = []
    fake_ipython = types.SimpleNamespace(run_line_magic=lambda name, line: calls.append((name, line)))
    saved = sys.modules.get("google.colab")
    if colab:
        sys.modules["google.colab"] = types.ModuleType("google.colab")
    try:
        exec(compile(python, "<install cell>", "exec"), {"get_ipython": lambda: fake_ipython})
    finally:
        if colab and saved is None:
            sys.modules.pop("google.colab", None)
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_install_cell(path: Path):
    source = read(path).cells[1].source
    assert run_install_cell(source, colab=False) == [], "outside Colab the install cell must do nothing"
    calls = run_install_cell(source, colab=True)
    assert len(calls) == 1 and calls[0][0] == "pip"
    line = calls[0][1]
    assert f"git+{REPO_URL}" in line, "install the package from the repository named in pyproject.toml"
    assert "torch" not in line.replace("vaecourse", ""), "never force another torch on Colab"


def test_course_runner_injects_parameters(tmp_path, monkeypatch):
    first = NOTEBOOKS[0]
    # a relative --out, as a reader types it: the results must land there, not under notebooks/ (the kernel's cwd)
    monkeypatch.chdir(tmp_path.parent)
    code = run_course(["--profile", "smoke", "--only", first.stem, "--out", tmp_path.name, "-p", "SEED", "7"])
    assert code == 0
    results = json.loads((tmp_path / "results" / f"{first.stem}.smoke.json").read_text())
    assert results["seed"] == 7 and results["profile"] == "smoke"
    assert all(c["passed"] for c in results["checks"]) and results["checks"]
    executed = read(tmp_path / first.name)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "SEED = 7" in injected[0].source


def test_same_seed_same_numbers(tmp_path):
    """Two smoke runs of a training lesson with the same seed record identical numbers on the CPU."""
    lesson = next(p for p in NOTEBOOKS if p.stem.startswith("02"))
    numbers = []
    for run in ("a", "b"):
        assert run_course(["--profile", "smoke", "--only", lesson.stem, "--out", str(tmp_path / run)]) == 0
        numbers.append(json.loads((tmp_path / run / "results" / f"{lesson.stem}.smoke.json").read_text())["numbers"])
    assert without_timings(numbers[0]) == without_timings(numbers[1])


def without_timings(value):
    """Drop wall-clock entries (seconds, ms, rates): they differ between runs by nature."""
    timing = re.compile(r"second|time|_ms$|minutes|per_s$|rate_hz")
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not timing.search(k)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_clean_drops_injected_parameters_and_widget_state(tmp_path):
    from vaecourse.run_course import clean_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("PROFILE = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('PROFILE = "cpu"', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(PROFILE)")]
    nb.metadata["widgets"] = {"state": {}}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert clean_notebook(path) is True and clean_notebook(path) is False
    cleaned = read(path)
    assert [c.source for c in cleaned.cells] == ["PROFILE = None", "print(PROFILE)"]
    assert "widgets" not in cleaned.metadata


def test_course_runner_rejects_unknown_notebook():
    with pytest.raises(SystemExit, match="no notebook matches"):
        run_course(["--profile", "smoke", "--only", "99_nothing"])


def test_rehearsal_parameters_are_each_notebooks_own():
    from vaecourse.run_course import REHEARSAL

    assert set(REHEARSAL) == {p.stem for p in NOTEBOOKS}, "every notebook needs a rehearsal size in REHEARSAL"
    for path in NOTEBOOKS:
        params = next(c.source for c in read(path).cells if "parameters" in c.metadata.get("tags", []))
        names = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", params, flags=re.M))
        unknown = set(REHEARSAL[path.stem]) - names
        assert not unknown, f"{path.name} has no parameter(s) {sorted(unknown)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path: Path):
    # papermill cannot parse a parameter whose comment holds "=" and then warns "Passed unknown parameter"
    import papermill

    params = next(c.source for c in read(path).cells if "parameters" in c.metadata.get("tags", []))
    assigned = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", params, flags=re.M))
    assert set(papermill.inspect_notebook(str(path))) == assigned
