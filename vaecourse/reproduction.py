"""Build the README's reproduction table from the lessons' results files.

    python -m vaecourse.reproduction            # rewrite the table in README.md
    python -m vaecourse.reproduction --check    # exit 1 if README.md is out of date

It also keeps the minutes column of the README's notebook table equal to the committed ``cpu``
runs (``results/<notebook>.cpu.json``).

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

from .config import results_home

REPO_ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- reproduction:start -->", "<!-- reproduction:end -->"
PREFERENCE = ("full", "cpu", "smoke")


def usable(data: dict) -> bool:
    """True for a run that completed with every check passed (files written before ``completed`` existed count
    as completed: they were written by ``finish`` or by a failing check, which the checks show)."""
    return data.get("completed", True) is not False and all(c.get("passed") for c in data.get("checks", []))


def best_results(folder: Path) -> dict[str, dict]:
    """notebook → the results of its largest profile in ``folder`` among completed, passing runs."""
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


def readme_text(text: str, results_folder: Path) -> str:
    """The README with the reproduction table and the notebook minutes rebuilt from ``results_folder``."""
    if START not in text or END not in text:
        raise ValueError(f"the README has no {START} ... {END} markers for the table")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return with_cpu_minutes(f"{head}{START}\n{table(best_results(results_folder))}\n{END}{tail}", results_folder)


def update_readme(readme: Path, results_folder: Path) -> bool:
    """Rewrite the table between the markers and the notebook minutes; True if the file changed."""
    text = readme.read_text()
    try:
        new = readme_text(text, results_folder)
    except ValueError as err:
        raise ValueError(f"{readme}: {err}") from None
    if new != text:
        readme.write_text(new)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=None, help="default: the results folder of this "
                        "install (config.results_home)")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="only report whether the README is up to date")
    args = parser.parse_args(argv)
    args.results = args.results or results_home()
    if args.check:
        text = args.readme.read_text()
        ok = readme_text(text, args.results) == text
        print("README reproduction table and minutes are up to date" if ok else
              "README reproduction table or minutes are out of date: run python -m vaecourse.reproduction")
        return 0 if ok else 1
    changed = update_readme(args.readme, args.results)
    print("README.md updated" if changed else "README.md already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
