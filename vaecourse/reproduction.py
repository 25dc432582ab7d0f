"""Build the README's reproduction table from the lessons' results files.

    python -m vaecourse.reproduction            # rewrite the table in README.md
    python -m vaecourse.reproduction --check    # exit 1 if README.md is out of date

For each lesson it takes the largest profile that has a results file (full, then cpu, then smoke)
and lists each ``lesson.reproduce(...)`` row: the source's number next to ours, with the profile,
device, data source and minutes of that run. Rows from a profile below ``full`` are marked as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- reproduction:start -->", "<!-- reproduction:end -->"
PREFERENCE = ("full", "cpu", "smoke")


def best_results(folder: Path) -> dict[str, dict]:
    """notebook → the results of its largest profile present in ``folder``."""
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        nb, prof = data.get("notebook"), data.get("profile")
        if nb is None or prof not in PREFERENCE:
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


def update_readme(readme: Path, results_folder: Path) -> bool:
    """Rewrite the table between the markers; True if the file changed."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} markers for the table")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table(best_results(results_folder))}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="only report whether the README is up to date")
    args = parser.parse_args(argv)
    if args.check:
        text = args.readme.read_text()
        current = text.split(START, 1)[1].split(END, 1)[0].strip()
        ok = current == table(best_results(args.results)).strip()
        print("README reproduction table is up to date" if ok else "README reproduction table is out of date")
        return 0 if ok else 1
    changed = update_readme(args.readme, args.results)
    print("README.md updated" if changed else "README.md already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
