"""The README and docs/: short enough to read, the command CI runs written where a reader finds it, no dead links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '#' comment in a code block is no heading
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_slug_matches_github():
    assert slug("Live widgets: how they are tested and how fast they redraw") == \
        "live-widgets-how-they-are-tested-and-how-fast-they-redraw"
    assert slug("The full profile on a GPU") == "the-full-profile-on-a-gpu"


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"the README has {len(lines)} lines: move detail into docs/ (at most 150)"


def test_the_readme_states_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if re.match(r"^(\w+=\S+ )*python -m pytest ", line)]
    assert len(commands) == 1, ".ci/run should run exactly one pytest command"
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1].split("\n## ", 1)[0]
    assert f"```bash\n{commands[0]}\n```" in section, \
        "the README's 'Run the tests' must show the command .ci/run runs, verbatim"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path):
    dead = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(target)
    assert not dead, f"{page.name} links to what does not exist: {dead}"
