"""The exercises of the lessons, their checks, and the student edition (vaecourse.exercises).

The committed notebooks are the teacher's: they carry the solutions and run green in CI (nbval). Here: the
tool finds the exercise cells; the student edition keeps no solution line and stubs each with a
NotImplementedError naming the exercise; a student notebook of 01, 02, 03 or 04, executed, stops at its first exercise;
and the notebooks' own check cells reject wrong answers with a message that says what is wrong.
"""

from __future__ import annotations

import json
import math
import os

import nbformat
import numpy as np
import pytest
import torch

from vaecourse import checks
from vaecourse import exercises as ex
from vaecourse import kernel_toy as kt
from vaecourse.run_course import course_notebooks, notebooks_folder

NOTEBOOKS = notebooks_folder()
LESSONS = {"01_elbo": ["1", "2"], "02_ae_vs_vae": ["1", "2", "3"], "03_c_and_beta": ["1", "2", "3"],
           "04_geco": ["1", "2", "3"], "04b_fixed_points": ["1", "2"], "05_ccvae": ["1", "2", "3"],
           "06_vac_introvac": ["1", "2", "3"], "07_csvae": ["1", "2", "3"]}


def teacher(stem: str) -> dict:
    return ex.read(NOTEBOOKS / f"{stem}.ipynb")


@pytest.mark.parametrize("stem", LESSONS)
def test_the_tool_finds_the_exercise_cells(stem):
    nb = teacher(stem)
    found = ex.exercises(nb, stem)
    assert [e.number for e in found] == LESSONS[stem]
    for e in found:
        cell = nb["cells"][e.cell]
        assert "exercise" in cell["metadata"]["tags"] and e.title
        check = nb["cells"][e.cell + 1]
        assert check["cell_type"] == "code" and "checks.check_" in ex._source(check), \
            f"{stem} exercise {e.number}: the cell after an exercise must be its check"


def test_every_notebook_has_well_formed_markers():
    for path in course_notebooks(folder=NOTEBOOKS):
        ex.exercises(ex.read(path), path.stem)   # raises ExerciseError on a stray or unpaired marker


def test_student_edition_has_no_solutions_and_stubs_name_the_exercise(tmp_path):
    paths = ex.write_student_edition(tmp_path / "student", NOTEBOOKS)
    assert [p.name for p in paths] == [p.name for p in course_notebooks(folder=NOTEBOOKS)]
    for path in paths:
        nb, original = ex.read(path), ex.read(NOTEBOOKS / path.name)
        nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
        text = "\n".join(ex._source(c) for c in nb["cells"])
        assert ex.BEGIN not in text and ex.END not in text
        for e in ex.exercises(original, path.stem):
            lines = ex._source(original["cells"][e.cell]).splitlines()
            solution = [ln for b, end in ex.solution_blocks(lines, "") for ln in lines[b + 1:end] if ln.strip()]
            student = ex._source(nb["cells"][e.cell])
            assert not [ln for ln in solution if ln in student.splitlines()], f"{path.stem}: a solution line is left"
            assert f"raise NotImplementedError({e.message!r})" in student and f"exercise {e.number}:" in e.message


def test_a_stub_raises_naming_its_exercise(tmp_path):
    nb = ex.student_notebook(teacher("01_elbo"), "01_elbo")
    first = ex.exercises(teacher("01_elbo"), "01_elbo")[0]
    namespace: dict = {"torch": torch}
    exec(ex._source(nb["cells"][first.cell]), namespace)
    with pytest.raises(NotImplementedError, match=r"exercise 1: the closed-form KL"):
        namespace["kl_to_standard_normal"](torch.zeros(1, 2), torch.zeros(1, 2))


@pytest.mark.parametrize("stem", ["01_elbo", "02_ae_vs_vae", "03_c_and_beta", "04_geco", "06_vac_introvac",
                                  "07_csvae"])
def test_a_student_notebook_stops_at_its_first_exercise(tmp_path, stem):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    ex.write_student_edition(tmp_path / "student", NOTEBOOKS)
    nb = nbformat.read(tmp_path / "student" / f"{stem}.ipynb", as_version=4)
    first = ex.exercises(teacher(stem), stem)[0]
    env = {"VAECOURSE_PROFILE": "smoke", "VAECOURSE_RESULTS": str(tmp_path / "results"), "VAECOURSE_PROGRESS": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        with pytest.raises(CellExecutionError) as err:
            client.execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert "NotImplementedError" in str(err.value) and first.message in str(err.value)
    ran = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count")]
    assert ran[-1] == first.cell + 1, "the run must stop at the first exercise's check, not before or after"


def _run_check(stem: str, number: str, namespace: dict) -> None:
    """Run the notebook's own check cell of an exercise in ``namespace``."""
    nb = teacher(stem)
    e = next(e for e in ex.exercises(nb, stem) if e.number == number)
    exec(ex._source(nb["cells"][e.cell + 1]), namespace)


def _teacher_namespace(stem: str, number: str) -> dict:
    nb = teacher(stem)
    e = next(e for e in ex.exercises(nb, stem) if e.number == number)
    namespace = {"torch": torch, "np": np, "math": math, "checks": checks}
    exec(ex._source(nb["cells"][e.cell]), namespace)
    return namespace


def test_the_teacher_solutions_pass_their_checks(capsys):
    for stem, numbers in LESSONS.items():
        for number in numbers:
            _run_check(stem, number, _teacher_namespace(stem, number))
    assert capsys.readouterr().out.count("\n") == sum(len(numbers) for numbers in LESSONS.values())


WRONG = [  # (lesson, exercise, name, wrong answer, what the message must say); 05-07's are in test_objective_0N
    ("01_elbo", "1", "kl_to_standard_normal", lambda m, v: (m.pow(2) + v.exp() - 1 - v).sum(-1), "factor ½"),
    ("01_elbo", "1", "kl_to_standard_normal", lambda m, v: 0.5 * (m.pow(2) + v.exp() - 1 - v), "shape"),
    ("01_elbo", "1", "kl_to_standard_normal", lambda m, v: 0.5 * (m.pow(2) + v.exp() - 1 - v).sum(-1).detach(),
     "no gradient"),
    ("01_elbo", "2", "reparameterised_sample", lambda m, s, e: m + (e.unsqueeze(-2) @ s).squeeze(-2), "Lᵀ"),
    ("01_elbo", "2", "reparameterised_sample", lambda m, s, e: m.detach() + (s @ e.unsqueeze(-1)).squeeze(-1),
     "does not depend on mu"),
    ("04b_fixed_points", "1", "fixed_point_update", lambda x, psi, lp, b: kt.update(x, psi, 0 * lp, b), "prior"),
    ("04b_fixed_points", "1", "fixed_point_update", lambda x, psi, lp, b: kt.update(x, psi, lp, b / 2), "2β"),
    ("04b_fixed_points", "2", "predicted_beta_c", 2.5, "n − 1"),
    ("04b_fixed_points", "2", "predicted_beta_c", 5.0, "squared distance"),
    ("02_ae_vs_vae", "1", "reparameterised_sample", lambda m, v, e: m + v.exp() * e, "variance σ²"),
    ("02_ae_vs_vae", "1", "reparameterised_sample", lambda m, v, e: m + torch.exp(0.5 * v) * torch.randn_like(m),
     "the eps you are given"),
    ("02_ae_vs_vae", "2", "elbo_terms", lambda x, xh, m, v, c: ((x - xh).pow(2).flatten(1).mean(1) / (2 * c),
                                                               0.5 * (m.pow(2) + v.exp() - 1 - v).sum(1)),
     "averaged over the pixels"),
    ("02_ae_vs_vae", "2", "elbo_terms", lambda x, xh, m, v, c: ((x - xh).pow(2).flatten(1).sum(1) / (2 * c),
                                                               0.5 * (m.pow(2) + v.exp() - 1 - v)),
     "shape"),
    ("02_ae_vs_vae", "2", "elbo_terms", lambda x, xh, m, v, c: ((x - xh.detach()).pow(2).flatten(1).sum(1) / (2 * c),
                                                               0.5 * (m.pow(2) + v.exp() - 1 - v).sum(1)),
     "no gradient"),
    ("02_ae_vs_vae", "3", "gaussian_constant", lambda n, c: 0.5 * n * math.log(c), "not log c"),
    ("03_c_and_beta", "1", "mse_loss_as_beta_vae", lambda w, s: (w * s[-1] * s[-2], w * s[-1] * s[-2] / 2), "channels"),
    ("03_c_and_beta", "1", "mse_loss_as_beta_vae", lambda w, s: (w * math.prod(s), w * math.prod(s)), "c = β/2"),
    ("03_c_and_beta", "2", "calibrated_nll", lambda s, n: (s / (2 * s.mean() / n), s.mean() / n), "constant"),
    ("03_c_and_beta", "2", "calibrated_nll",
     lambda s, n: (s / (2 * s.mean()) + 0.5 * n * torch.log(2 * math.pi * s.mean()), s.mean()), "per pixel"),
    ("03_c_and_beta", "3", "predicted_active_units", lambda ev, b, k: min(int((ev > b).sum()), k), "not β"),
    ("03_c_and_beta", "3", "predicted_active_units", lambda ev, b, k: int((ev > b / 2).sum()), "cap the count"),
    ("04_geco", "1", "constraint_average", lambda c_ma, c, a: c if c_ma is None else (1 - a) * c_ma + a * c, "swapped"),
    ("04_geco", "1", "constraint_average", lambda c_ma, c, a: a * c_ma + (1 - a) * c, "first step"),
    ("04_geco", "1", "constraint_average", lambda c_ma, c, a: 0.0 if c_ma is None else a * c_ma + (1 - a) * c,
     "first batch value"),
    ("04_geco", "2", "lambda_step", lambda lam, c, eta: lam + eta * c, "stays positive"),
    ("04_geco", "2", "lambda_step", lambda lam, c, eta: lam * math.exp(-eta * c), "the sign"),
    ("04_geco", "2", "lambda_step", lambda lam, c, eta: lam * math.exp(eta * lam * c), "log λ by η·C_ma"),
    ("04_geco", "3", "predicted_directions", lambda sq, k: ("down", "down") if sq < k else ("up", "up"), "not κ"),
    ("04_geco", "3", "predicted_directions", lambda sq, k: ("down", "up") if sq < k * k else ("up", "down"),
     "the KL is not"),
    ("04_geco", "3", "predicted_directions", lambda sq, k: ("up", "up") if sq < k * k else ("down", "down"),
     "the other way round"),
]


@pytest.mark.parametrize("stem, number, name, wrong, says", WRONG, ids=[f"{w[0][:3]}-{w[1]}-{w[4]}" for w in WRONG])
def test_the_notebooks_checks_catch_a_wrong_answer(stem, number, name, wrong, says):
    namespace = _teacher_namespace(stem, number)
    namespace[name] = wrong
    with pytest.raises(checks.ExerciseFailed, match="hint:") as err:
        _run_check(stem, number, namespace)
    assert says in str(err.value)


FUNCTION_CHECKS = [name for name in dir(checks) if name.startswith("check_") and name != "check_predicted_beta_c"]


@pytest.mark.parametrize("name", FUNCTION_CHECKS)
def test_a_check_lets_the_stubs_error_through(name):
    """A student's unwritten exercise raises the stub's NotImplementedError, not a check's failure about it."""
    def stub(*args, **kwargs):
        raise NotImplementedError("exercise 1: not written yet")

    with pytest.raises(NotImplementedError, match="exercise 1"):
        getattr(checks, name)(stub)


def test_the_notebooks_update_iterates_like_the_package():
    update = _teacher_namespace("04b_fixed_points", "1")["fixed_point_update"]
    x, grid = kt.toy_points("three_pairs"), kt.latent_grid(15)
    ours = kt.fixed_point(x, grid, 0.8, noise=1e-3, max_iter=300, step=update)
    theirs = kt.fixed_point(x, grid, 0.8, noise=1e-3, max_iter=300)
    assert ours.iterations == theirs.iterations and np.allclose(ours.psi, theirs.psi, atol=1e-9)


# ----------------------------------------------------------------------------- the tool's errors
def _notebook(*cells: tuple[str, list[str]]) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in cells]
    return json.loads(nbformat.writes(nb))


@pytest.mark.parametrize("cells, says", [
    ([("# Exercise 1: x\n### BEGIN SOLUTION\nx = 1", ["exercise"])], "has no '### END SOLUTION'"),
    ([("# Exercise 1: x\nx = 1\n### END SOLUTION", ["exercise"])], "without a '### BEGIN SOLUTION'"),
    ([("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", [])], "no 'exercise' tag"),
    ([("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", ["exercise"])], "# Exercise N: what to write"),
    ([("# Exercise 1: x\nx = 1", ["exercise"])], "has no solution"),
    ([("# Exercise 1: a\n### BEGIN SOLUTION\n### END SOLUTION", ["exercise"]),
      ("# Exercise 1: b\n### BEGIN SOLUTION\n### END SOLUTION", ["exercise"])], "repeat"),
])
def test_malformed_exercises_are_named_with_the_fix(cells, says):
    with pytest.raises(ex.ExerciseError, match="cell|repeat") as err:
        ex.exercises(_notebook(*cells), "99_toy")
    assert says in str(err.value)


def test_stub_keeps_the_markers_indentation_and_the_code_around():
    nb = _notebook(("# Exercise 3: f\ndef f(a):\n    b = a\n    ### BEGIN SOLUTION\n    return b + 1\n"
                    "    ### END SOLUTION\nprint('after')", ["exercise"]))
    src = ex._source(ex.student_notebook(nb, "99_toy")["cells"][0])
    assert "    raise NotImplementedError('exercise 3: f" in src and "return b + 1" not in src
    assert src.startswith("# Exercise 3: f\ndef f(a):\n    b = a\n") and src.endswith("print('after')")
    namespace: dict = {}
    exec(src, namespace)
    with pytest.raises(NotImplementedError, match="exercise 3: f"):
        namespace["f"](1)


def test_the_target_folder_is_refused_inside_the_notebooks_or_over_student_work(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    ex.write(_notebook(("# Exercise 1: x\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", ["exercise"])),
             source / "01_toy.ipynb")
    for inside in (source, source / "student"):
        with pytest.raises(ex.ExerciseError, match="inside the teacher notebooks"):
            ex.write_student_edition(inside, source)
    ex.write_student_edition(tmp_path / "student", source)
    with pytest.raises(ex.ExerciseError, match="--force"):
        ex.write_student_edition(tmp_path / "student", source)
    ex.write_student_edition(tmp_path / "student", source, force=True)
    assert "raise NotImplementedError" in ex._source(ex.read(tmp_path / "student" / "01_toy.ipynb")["cells"][0])


def test_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        ex.main(["--help"])
    assert done.value.code == 0 and "student DIR" in capsys.readouterr().out
    assert ex.main(["student", str(tmp_path / "out")]) == 0
    assert "student notebooks" in capsys.readouterr().out and (tmp_path / "out" / "01_elbo.ipynb").exists()
    assert ex.main(["student", str(NOTEBOOKS / "student")]) == 2
    assert "inside the teacher notebooks" in capsys.readouterr().err
    assert not (NOTEBOOKS / "student").exists()
    assert ex.main(["list"]) == 0
    assert "01_elbo  cell" in capsys.readouterr().out

