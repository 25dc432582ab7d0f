"""Run the whole course (or some lessons) at one profile with papermill.

    python -m vaecourse.run_course --profile full --out executed/full
    python -m vaecourse.run_course --clean notebooks/02_ae_vs_vae.ipynb   # before committing one

writes each executed notebook and its results file (``results/<notebook>.<profile>.json``, or
``….failed.json`` for a run with a missed check) under ``--out``; this is what a GPU session runs for
docs/reproduction.md, the reproduction table (then copy ``<out>/results/*.full.json`` into ``results/`` and run
``python -m tools.reproduction``). From a pip install it finds the notebooks in ``./notebooks``
or the working directory (``--notebooks`` names another folder); they are not in the package.

    python -m vaecourse.run_course --rehearse

runs the ``full`` profile's code paths (its architectures, image sizes, data sets and oracle) at a
toy size on any machine: every notebook with the ``REHEARSAL`` parameters, checks reported rather
than raised (the full thresholds cannot hold after one epoch), into ``executed/rehearsal``. It
finds what would break before a GPU's time is spent on the real run. Any notebook
parameter can be set with ``-p NAME VALUE`` (values are parsed as Python literals when they can be).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import PROFILES, source_checkout
from .results import load_results, results_path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
PATTERN = "[0-9][0-9]*_*.ipynb"  # 04b_... too
WHERE_TO_GET = ("the notebooks are not part of the pip package: get them with `git clone "
                "https://github.com/vaecourse/vaecourse` (or download the repository's notebooks/ folder) and pass "
                "--notebooks PATH/notebooks, or run from the folder that holds them")


def notebooks_folder(given: Path | None = None) -> Path:
    """Where the course's notebooks are: ``given``, the checkout's notebooks/, else ./notebooks or the working
    directory when it holds them; otherwise a SystemExit saying where to get them."""
    if given is not None:
        if not any(Path(given).glob(PATTERN)):
            raise SystemExit(f"no course notebook (NN_topic.ipynb) in {given}; {WHERE_TO_GET}")
        return Path(given)
    checkout = source_checkout()
    candidates = ([checkout / "notebooks"] if checkout else []) + [Path.cwd() / "notebooks", Path.cwd()]
    for folder in candidates:
        if any(folder.glob(PATTERN)):
            return folder
    raise SystemExit(f"no course notebooks found (looked in {', '.join(map(str, candidates))}); {WHERE_TO_GET}")


def default_out(name: str) -> Path:
    """``executed/<name>`` in the checkout, or under the working directory for a pip install."""
    checkout = source_checkout()
    return (checkout or Path.cwd()) / "executed" / name


def course_notebooks(select: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The course's notebooks in order, optionally only those whose name contains one of ``select``."""
    books = sorted(p for p in notebooks_folder(folder).glob(PATTERN))
    if select:
        chosen = [p for p in books if any(s in p.stem for s in select)]
        if not chosen:
            raise SystemExit(f"no notebook matches {select}; the course has: {', '.join(p.stem for p in books)}")
        return chosen
    return books


# Per notebook: the parameters that shrink the full profile to minutes on a CPU, keeping its code paths
# (architectures, image sizes, data sets). Every name must be in that notebook's parameters cell (tested).
REHEARSAL: dict[str, dict[str, object]] = {
    "01_elbo": {"EPOCHS": 1, "N_TRAIN": 512, "MC_SAMPLES": 2000, "GRAD_REPEATS": 20, "DIGITS_EPOCHS": 1},
    "02_ae_vs_vae": {"EPOCHS": 1, "MNIST_LIMIT": 1000, "FASHION_LIMIT": 1000, "FASHION_EPOCHS": 1, "CNN_EPOCHS": 1,
                     "CNN_LIMIT": 500, "SWEEP_EPOCHS": 1},
    "03_c_and_beta": {"EPOCHS": 1, "AU_EPOCHS": 1, "N_TRAIN": 1000},
    "04_geco": {"EPOCHS": 1, "N_TRAIN": 1000, "N_TEST": 500},
    "04b_fixed_points": {"GRID": 21, "N_BETAS": 12, "MAX_ITER": 50, "TOY_EPOCHS": 1},
    "05_ccvae": {"EPOCHS": 1, "JUDGE_EPOCHS": 1, "FMNIST_TRAIN": 1000, "FMNIST_EPOCHS": 1, "FACES_TRAIN": 500,
                 "FACES_STEPS": 20},
    "06_vac_introvac": {"EPOCHS": 1, "INTRO_EPOCHS": 1, "TOY_EPOCHS": 1, "N_TRAIN": 256, "N_VAL": 128,
                        "N_TEST": 128, "PAPER_EPOCHS": 1, "LANGEVIN_STEPS": 20},
    "07_csvae": {"EPOCHS": 1, "TOY_EPOCHS": 1, "TOY_N": 500, "N_TRAIN": 256, "N_TEST": 128},
}


def clean_notebook(path: Path) -> bool:
    """Make an executed notebook fit to commit: drop papermill's injected-parameters cell (else nbval
    would rerun the injected profile in CI) and the saved widget state (large, and stale without a
    kernel). The outputs, which say which profile produced them, stay. Returns True if it changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    before = len(nb.cells), "widgets" in nb.metadata
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.pop("widgets", None)
    if (len(nb.cells), "widgets" in nb.metadata) == before:
        return False
    nbformat.write(nb, path)
    return True


@contextlib.contextmanager
def _environ(name: str, value: str):
    """Set an environment variable (which the notebook's kernel inherits) for the duration of a block."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_notebook(path: Path, out_dir: Path, profile: str, parameters: dict | None = None,
                 timeout: int | None = None) -> dict:
    """Execute one notebook with papermill at ``profile``; returns a summary with seconds and status."""
    import papermill

    out_dir = Path(out_dir).resolve()  # the kernel runs in notebooks/: a relative folder would land there
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile, **(parameters or {})}
    t0 = time.perf_counter()
    status = "ok"
    results_path(path.stem, profile, out_dir / "results", failed=True).unlink(missing_ok=True)  # not this run's
    # the profile asked for here is explicit: full runs as full on a CPU too (start_lesson would pick cpu otherwise)
    with _environ("VAECOURSE_RESULTS", str(out_dir / "results")), _environ("VAECOURSE_PROFILE", profile):
        try:
            papermill.execute_notebook(str(path), str(out_dir / path.name), parameters=params, kernel_name="python3",
                                       cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)
        except Exception as err:  # keep going: one failing lesson should not hide the others' numbers
            status = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    row = {"notebook": path.stem, "profile": profile, "seconds": round(time.perf_counter() - t0, 1), "status": status}
    for failed in (True, False):  # a missed check or an unfinished run writes only the .failed.json
        if results_path(path.stem, profile, out_dir / "results", failed=failed).is_file():
            checks = load_results(path.stem, profile, out_dir / "results", failed=failed)["checks"]
            row["checks_missed"] = [c["name"] for c in checks if not c["passed"]]
            break
    return row


def run_all(books: list[Path], out: Path, profile: str, parameters: Callable[[Path], dict],
            timeout: int | None = None) -> list[dict]:
    """Run ``books`` one after another (each with ``parameters(book)``), printing and saving a summary."""
    summary = []
    for nb in books:
        params = parameters(nb)
        print(f"running {nb.name} at profile {profile}{f' with {params}' if params else ''} ...", flush=True)
        row = run_notebook(nb, out, profile, params, timeout)
        print(f"  {row['status']} in {row['seconds']} s", flush=True)
        summary.append(row)
    # rows of earlier runs into the same folder stay (e.g. one lesson per call on a lent GPU)
    path = Path(out) / "summary.json"
    ran = {r["notebook"] for r in summary}
    earlier = [r for r in json.loads(path.read_text()) if r["notebook"] not in ran] if path.is_file() else []
    path.write_text(json.dumps(earlier + summary, indent=1))
    return summary


def rehearse(select: list[str] | None, out: Path, timeout: int | None = None, folder: Path | None = None) -> int:
    """Run the chosen notebooks at profile full with their REHEARSAL parameters; report checks instead of raising."""
    with _environ("VAECOURSE_CHECKS", "report"):
        summary = run_all(course_notebooks(select, folder), out, "full", lambda nb: REHEARSAL.get(nb.stem, {}),
                          timeout)
    failed = [r for r in summary if r["status"] != "ok"]
    print(f"{len(summary) - len(failed)}/{len(summary)} notebooks ran through at the full profile's code paths; "
          f"executed copies in {out} (missed checks are expected at this size)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, help="the size every notebook runs at")
    parser.add_argument("--clean", nargs="+", type=Path, metavar="NOTEBOOK",
                        help="only clean these executed notebooks for committing (no run)")
    parser.add_argument("--out", type=Path, default=None, help="folder for executed notebooks and results "
                        "(default: executed/<profile>)")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                        help="set a notebook parameter in every notebook")
    parser.add_argument("--timeout", type=int, default=None, help="seconds a cell may run")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder of the course's notebooks (default: "
                        "the checkout's notebooks/, else ./notebooks or the working directory)")
    parser.add_argument("--rehearse", action="store_true",
                        help="the full profile's code at a toy size, checks reported not raised (see above)")
    args = parser.parse_args(argv)
    if args.rehearse:
        return rehearse(args.only, args.out or default_out("rehearsal"), args.timeout, args.notebooks)
    if args.clean:
        for path in args.clean:
            print(f"{path}: {'cleaned' if clean_notebook(path) else 'already clean'}")
        return 0
    if args.profile is None:
        parser.error("--profile is required (smoke, cpu or full)")
    out = args.out or default_out(args.profile)
    params = {k: _literal(v) for k, v in args.param}
    summary = run_all(course_notebooks(args.only, args.notebooks), out, args.profile, lambda nb: params, args.timeout)
    failed = [r for r in summary if r["status"] != "ok"]
    print(f"{len(summary) - len(failed)}/{len(summary)} notebooks ran; executed copies and results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
