"""Write docs/reproduction.md, the reproduction table, from the lessons' results files.

    python -m tools.reproduction            # write docs/reproduction.md, update the README's minutes
    python -m tools.reproduction --check    # exit 1 if either is out of date

The whole of docs/reproduction.md is generated here (edit this module, never the file). The tool also
keeps the minutes column of the README's notebook table equal to the committed ``cpu`` runs
(``results/<notebook>.cpu.json``): only that column of the README is rewritten.

For each lesson it takes the largest profile that has a completed run with every check passed (full,
then cpu, then smoke; ``*.failed.json`` files and runs with a missed check are never used) and lists
each ``lesson.reproduce(...)`` row: the source's number next to ours, with the profile, device, data
source and minutes of that run. Rows from a profile below ``full`` are marked as such, and a run whose
parameters differ from its profile's names them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from vaecourse.config import results_home

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = Path("docs") / "reproduction.md"
PREFERENCE = ("full", "cpu", "smoke")


def usable(data: dict) -> bool:
    """True for a run that completed with every check passed (files written before ``completed`` existed count
    as completed: they were written by ``finish`` or by a failing check, which the checks show)."""
    return data.get("completed", True) is not False and all(c.get("passed") for c in data.get("checks", []))


def best_results(folder: Path) -> dict[str, dict]:
    """notebook → the results of its largest profile in ``folder`` among completed, passing runs; a lesson's
    variant (lesson 06 on another faces subset) is a notebook of its own here, ``"<notebook> (<variant>)"``."""
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".failed.json"):
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        nb, prof = data.get("notebook"), data.get("profile")
        if nb is None or prof not in PREFERENCE or not usable(data):
            continue
        if data.get("variant"):
            nb = f"{nb} ({data['variant']})"
        if nb not in found or PREFERENCE.index(prof) < PREFERENCE.index(found[nb]["profile"]):
            found[nb] = data
    return found


def _fmt(v) -> str:
    """A table cell: floats to 4 significant digits, None as a dash, '|' escaped for markdown."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v).replace("|", "\\|")


def table(results: dict[str, dict]) -> str:
    """The markdown table of every reproduction row."""
    lines = ["| lesson | quantity | source says | we get | setting | profile | device | data | minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for nb in sorted(results):
        r = results[nb]
        prof = r["profile"] if r["profile"] == "full" else f"{r['profile']} (not full scale)"
        if r.get("overrides"):
            prof += ", with " + ", ".join(f"{k}={v['value']}" for k, v in r["overrides"].items())
        data = r.get("notes", {}).get("data_source", "")
        device = r.get("machine", {}).get("gpu") or r.get("machine", {}).get("device", "")
        minutes = f"{r.get('seconds', 0) / 60:.1f}"
        for row in r.get("reproduction", []):
            lines.append(f"| {nb} | {_fmt(row['what'])} | {_fmt(row['source_value'])} ({_fmt(row['source'])}) | "
                         f"{_fmt(row['ours'])} | {_fmt(row.get('setting', ''))} | {prof} | {device} | {_fmt(data)} | "
                         f"{minutes} |")
    if len(lines) == 2:
        lines.append("| — | no results yet | | | | | | | |")
    return "\n".join(lines)


# a row of the notebook table: | 01 | [The ELBO](notebooks/01_elbo.ipynb) | what you learn | minutes | badge |
# (a cell's text may hold an escaped bar, "\|")
NOTEBOOK_ROW = re.compile(r"^(\| [0-9a-z]+ \| \[[^\]]+\]\(notebooks/(?P<nb>[^)]+)\.ipynb\) \|(?:[^|\\]|\\.)*\| )"
                          r"(?P<minutes>[^|]*?)( \|.*)$")


def with_cpu_minutes(text: str, results_folder: Path) -> str:
    """``text`` with each notebook row's minutes set from its ``cpu`` results file (rows without one are kept)."""
    lines = []
    for line in text.split("\n"):
        m = NOTEBOOK_ROW.match(line)
        path = results_folder / f"{m['nb']}.cpu.json" if m else None
        if m and path.is_file():
            data = json.loads(path.read_text())
            seconds = data.get("seconds") if usable(data) and not data.get("overrides") else None
            if seconds is not None:
                line = f"{m.group(1)}{seconds / 60:.1f}{m.group(4)}"
        lines.append(line)
    return "\n".join(lines)


HEADER = """# Reproduction: our numbers next to the sources'

<!-- Generated by `python -m tools.reproduction` from results/*.json: edit tools/reproduction.py, not this
file. `python -m tools.reproduction --check` (and tests/test_reproduction.py) fail when it is out of date. -->

Each row puts a number one of the sources reports next to ours. Rows come from the lessons' results files
(`results/<notebook>.<profile>.json`, written by `lesson.reproduce(...)` in each notebook). For each lesson the
largest profile with a completed run whose every check passed is used (`full`, then `cpu`, then `smoke`); a profile
other than `full` is marked, since a CPU run is smaller than the source's setting, and a run whose parameters differ
from its profile's names them. Sources named by author alone (Zhao 2023; Parnas & Shazman; Benyahia et al. 2024) are
the reference reports that the README's [References](../README.md#references) describe; "minutes" is the wall-clock
time of the whole notebook run (its results file's `machine.threads` says with how many torch threads, and
`machine.cpu_kernels` which of torch's CPU kernel sets ran: see `vaecourse.cpu_kernels`).

To fill the table at full scale on a GPU, see [development.md](development.md#the-full-profile-on-a-gpu).

"""


def document(results_folder: Path) -> str:
    """The whole text of docs/reproduction.md for the results in ``results_folder``."""
    return f"{HEADER}{table(best_results(results_folder))}\n"


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds it; True if the file changed."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def update(results_folder: Path, document_path: Path, readme: Path | None) -> list[Path]:
    """Write the reproduction document and the README's minutes; the files that changed."""
    changed = [document_path] if _write_if_changed(document_path, document(results_folder)) else []
    if readme is not None and _write_if_changed(readme, with_cpu_minutes(readme.read_text(), results_folder)):
        changed.append(readme)
    return changed


def out_of_date(results_folder: Path, document_path: Path, readme: Path | None) -> list[Path]:
    """The files that ``update`` would change (a missing document counts)."""
    stale = []
    if not document_path.is_file() or document_path.read_text() != document(results_folder):
        stale.append(document_path)
    if readme is not None:
        text = readme.read_text()
        if with_cpu_minutes(text, results_folder) != text:
            stale.append(readme)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None, help="default: the results folder of this "
                        "install (config.results_home)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / DOCUMENT, help="the reproduction document to write "
                        f"(default: {DOCUMENT} of this checkout)")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md",
                        help="the README whose notebook table's minutes to keep in step")
    parser.add_argument("--no-readme", action="store_true", help="write only the reproduction document")
    parser.add_argument("--check", action="store_true", help="only report whether both are up to date")
    args = parser.parse_args(argv)
    args.results = args.results or results_home()
    readme = None if args.no_readme else args.readme
    if args.check:
        stale = out_of_date(args.results, args.out, readme)
        print("the reproduction table and the README's minutes are up to date" if not stale else
              f"out of date: {', '.join(map(str, stale))}; run python -m tools.reproduction")
        return 1 if stale else 0
    changed = update(args.results, args.out, readme)
    print("updated " + ", ".join(map(str, changed)) if changed else "already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
