"""The course's exercises, and the student edition of its notebooks.

    python -m vaecourse.exercises list               # every exercise cell of every notebook
    python -m vaecourse.exercises student DIR        # write the student edition into DIR

An exercise is a code cell tagged ``exercise`` in its metadata whose first line names it
(``# Exercise 2: the reparameterised sample``). The lines between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` are the teacher's solution; the committed notebooks carry it, so they run green
in CI. The student edition replaces each such block by a stub, indented like the markers, that raises
``NotImplementedError("exercise 2: the reparameterised sample ...")``, and clears every output and
execution count. The cell after an exercise checks the student's code and says what is wrong.

Why not nbgrader or otter-grader: both do this (nbgrader uses these very markers, so a teacher who
knows it reads our cells as they are), but they are grading systems. nbgrader keeps a database of
students and submissions and runs as Jupyter server extensions; otter-grader brings its own
test-file format, autograder bundles and Docker-based grading. The course needs one step only, from
teacher to student notebook, with no server and no dependency beyond the standard library: this
module, under two hundred lines. A teacher who wants grading can still run nbgrader on these notebooks.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

TAG = "exercise"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
TITLE = re.compile(r"#\s*Exercise\s+(\w+)\s*[:·.-]\s*(.+)", re.IGNORECASE)


class ExerciseError(ValueError):
    """A notebook's exercise cells are malformed; the message names the notebook, the cell and the fix."""


@dataclass(frozen=True)
class Exercise:
    notebook: str   # the notebook's stem, e.g. "01_elbo"
    cell: int       # index of the exercise cell
    number: str     # as written in the cell's first line
    title: str

    @property
    def message(self) -> str:
        """The stub's NotImplementedError message (it names the exercise)."""
        return f"exercise {self.number}: {self.title} (write your solution here, then run the check below)"


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _is_exercise(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and TAG in cell.get("metadata", {}).get("tags", [])


def solution_blocks(lines: list[str], where: str) -> list[tuple[int, int]]:
    """(begin, end) line indices of each solution block; an ExerciseError for unpaired or nested markers."""
    blocks, begin = [], None
    for i, line in enumerate(lines):
        if line.strip() == BEGIN:
            if begin is not None:
                raise ExerciseError(f"{where}: line {i + 1} opens a solution inside another (line {begin + 1}); "
                                    f"close the first with '{END}'")
            begin = i
        elif line.strip() == END:
            if begin is None:
                raise ExerciseError(f"{where}: line {i + 1} has '{END}' without a '{BEGIN}' before it; add one")
            blocks.append((begin, i))
            begin = None
    if begin is not None:
        raise ExerciseError(f"{where}: '{BEGIN}' on line {begin + 1} has no '{END}'; add it after the solution")
    return blocks


def exercises(nb: dict, name: str) -> list[Exercise]:
    """The exercises of one notebook, checked: each names itself and holds a solution; no stray markers."""
    found = []
    for index, cell in enumerate(nb["cells"]):
        where = f"{name}, cell {index}"
        lines = _source(cell).splitlines()
        if not _is_exercise(cell):
            if cell.get("cell_type") == "code" and any(line.strip() in (BEGIN, END) for line in lines):
                raise ExerciseError(f"{where} has solution markers but no '{TAG}' tag: add the tag to the cell's "
                                    f"metadata (View > Cell toolbar > Tags) or remove the markers")
            continue
        title = TITLE.match(lines[0].strip()) if lines else None
        if not title:
            raise ExerciseError(f"{where} is tagged '{TAG}' but its first line does not name it: start the cell "
                                f"with '# Exercise N: what to write'")
        if not solution_blocks(lines, where):
            raise ExerciseError(f"{where} ({title.group(0)}) has no solution: put it between '{BEGIN}' and '{END}'")
        found.append(Exercise(name, index, title.group(1), title.group(2).strip()))
    numbers = [e.number for e in found]
    if len(set(numbers)) != len(numbers):
        raise ExerciseError(f"{name}: exercise numbers repeat ({', '.join(numbers)}); number them once each")
    return found


def stub(lines: list[str], exercise: Exercise) -> list[str]:
    """The cell's lines with every solution block replaced by a stub indented like its markers."""
    out, last = [], 0
    for begin, end in solution_blocks(lines, f"{exercise.notebook}, cell {exercise.cell}"):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        out += lines[last:begin]
        out += [f"{indent}# YOUR CODE HERE (exercise {exercise.number})",
                f"{indent}raise NotImplementedError({exercise.message!r})"]
        last = end + 1
    return out + lines[last:]


def student_notebook(nb: dict, name: str) -> dict:
    """A copy of ``nb`` with solutions stubbed and all outputs, execution counts and run metadata cleared."""
    student = copy.deepcopy(nb)
    for exercise in exercises(nb, name):
        cell = student["cells"][exercise.cell]
        cell["source"] = "\n".join(stub(_source(cell).splitlines(), exercise))
    for cell in student["cells"]:
        for key in ("execution", "papermill"):
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    student.get("metadata", {}).pop("widgets", None)
    student.get("metadata", {}).pop("papermill", None)
    return student


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write(nb: dict, path: Path) -> None:
    # nbformat's own layout (indent 1, sorted keys), so a student notebook diffs cleanly against another
    Path(path).write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def check_target(out: Path, source: Path, force: bool) -> None:
    """Refuse a DIR that would overwrite or mix with the teacher notebooks, or existing student work."""
    out, source = out.resolve(), source.resolve()
    if out == source or source in out.parents:
        raise ExerciseError(f"{out} is inside the teacher notebooks' folder {source}: the course runner and CI "
                            f"would pick the student notebooks up; choose a folder outside it, e.g. ./student")
    if out in source.parents:
        raise ExerciseError(f"{out} contains the teacher notebooks' folder {source}; choose a new folder, "
                            f"e.g. ./student")
    clash = [p.name for p in sorted(source.glob("*.ipynb")) if (out / p.name).exists()]
    if clash and not force:
        raise ExerciseError(f"{out} already holds {', '.join(clash)} (a student's work?); pass --force to "
                            f"overwrite them, or choose an empty folder")


def write_student_edition(out: Path, source: Path, force: bool = False) -> list[Path]:
    """Every notebook of ``source`` in its student edition, written into ``out``; returns the paths."""
    from .run_course import course_notebooks

    check_target(Path(out), Path(source), force)
    books = course_notebooks(folder=Path(source))
    editions = [(p, student_notebook(read(p), p.stem)) for p in books]   # all checked before any is written
    Path(out).mkdir(parents=True, exist_ok=True)
    for path, nb in editions:
        write(nb, Path(out) / path.name)
    return [Path(out) / p.name for p in books]


def main(argv: list[str] | None = None) -> int:
    from .run_course import course_notebooks, notebooks_folder

    parser = argparse.ArgumentParser(prog="python -m vaecourse.exercises", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", type=Path, help="the teacher notebooks' folder (default: the course's)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every exercise: notebook, cell, number and title")
    student = sub.add_parser("student", help="write every notebook with its solutions stubbed and outputs cleared")
    student.add_argument("dir", type=Path, help="the folder to write into (outside the teacher notebooks' folder)")
    student.add_argument("--force", action="store_true", help="overwrite notebooks already in DIR")
    args = parser.parse_args(argv)
    source = notebooks_folder(args.notebooks)
    try:
        if args.command == "list":
            for path in course_notebooks(folder=source):
                for e in exercises(read(path), path.stem):
                    print(f"{e.notebook}  cell {e.cell:>3}  exercise {e.number}: {e.title}")
            return 0
        paths = write_student_edition(args.dir, source, force=args.force)
    except ExerciseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    count = sum(len(exercises(read(p), p.stem)) for p in course_notebooks(folder=source))
    print(f"wrote {len(paths)} student notebooks ({count} exercises stubbed, outputs cleared) into {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
