"""A lesson's run: its profile, device and seed, its headline numbers and the checks on them.

Every notebook starts with ``lesson = start_lesson("02_ae_vs_vae", profile=PROFILE, seed=SEED)``
and ends with ``lesson.finish()``, which writes ``results/<notebook>.<profile>.json``. The checks
raise at once, so a wrong loss sign fails the notebook (and CI) even in the smoke profile.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from .config import by_profile, describe_machine, pick_device, resolve_profile, seed_everything, set_cpu_threads
from .data import LOADED

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class CheckFailed(AssertionError):
    """A lesson's number missed its threshold for the profile."""


def checks_are_reported_only() -> bool:
    """True under ``VAECOURSE_CHECKS=report``: missed checks are printed and recorded but do not stop the run.

    Only for rehearsals (``run_course --rehearse``: the full profile's code at a toy size, where the
    full profile's thresholds cannot hold); any other value, or none, raises as usual.
    """
    mode = os.environ.get("VAECOURSE_CHECKS", "raise")
    if mode not in ("raise", "report"):
        raise ValueError(f"VAECOURSE_CHECKS must be 'raise' or 'report', got {mode!r}")
    return mode == "report"


def results_dir() -> Path:
    """Where results files go: ``VAECOURSE_RESULTS`` or the repository's ``results/``."""
    return Path(os.environ.get("VAECOURSE_RESULTS", REPO_ROOT / "results"))


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a value (tensors and numpy scalars become floats or lists)."""
    if torch.is_tensor(value):
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist") and not isinstance(value, (list, dict, str)):
        return value.tolist()  # numpy arrays and scalars alike
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class Lesson:
    """The context of one notebook run; records numbers and checks them against thresholds."""

    notebook: str
    profile: str
    device: torch.device
    seed: int
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)
    numbers: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    reproduction: list[dict[str, Any]] = field(default_factory=list)
    first_loaded: int = field(default_factory=lambda: len(LOADED))

    def pick(self, override: T | None = None, **values: T) -> T:
        """``override`` if set (a papermill parameter), else the value for this profile."""
        return by_profile(self.profile, override, **values)

    def record(self, **numbers: Any) -> None:
        """Store headline numbers (floats, lists, small dicts) for the results file."""
        self.numbers.update({k: _plain(v) for k, v in numbers.items()})

    def note(self, **info: Any) -> None:
        """Store facts about the run that are not numbers to check (data source, subset...)."""
        self.notes.update({k: _plain(v) for k, v in info.items()})

    def reproduce(self, what: str, ours: float, source_value: float | str | None, source: str,
                  setting: str = "") -> None:
        """Put one of our numbers next to the number a source reports (the README's reproduction table)."""
        self.reproduction.append({"what": what, "ours": _plain(ours), "source_value": _plain(source_value),
                                  "source": source, "setting": setting})

    def check(self, name: str, value: float, *, above: float | None = None, below: float | None = None,
              near: float | None = None, tol: float | None = None) -> None:
        """Check ``value`` against a threshold and record the outcome; raise CheckFailed if it misses.

        Returns nothing: the printed line already names the value, so a notebook cell ending in a check
        shows no bare, unlabelled number after it.

        ``above``/``below`` are strict bounds; ``near`` with ``tol`` is |value − near| ≤ tol.
        """
        value = float(value)
        ok = math.isfinite(value)
        rule = []
        if above is not None:
            ok &= value > above
            rule.append(f"> {above:g}")
        if below is not None:
            ok &= value < below
            rule.append(f"< {below:g}")
        if near is not None:
            if tol is None:
                raise ValueError("near= needs tol=")
            ok &= abs(value - near) <= tol
            rule.append(f"within {tol:g} of {near:g}")
        if not rule:
            raise ValueError("check needs above=, below= or near= with tol=")
        self.checks.append({"name": name, "value": value, "rule": " and ".join(rule), "passed": bool(ok)})
        status = "ok  " if ok else "FAIL"
        print(f"[{status}] {name}: {value:.4g} (want {' and '.join(rule)}, profile {self.profile})")
        if not ok and checks_are_reported_only():
            print("       (VAECOURSE_CHECKS=report: a rehearsal run goes on past a missed check)")
        elif not ok:
            self.save()
            raise CheckFailed(f"{self.notebook}: {name} = {value:.6g}, wanted {' and '.join(rule)} "
                              f"in the {self.profile} profile")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def save(self) -> Path:
        """Write the results file atomically and return its path."""
        loaded = list(dict.fromkeys(LOADED[self.first_loaded:]))
        if loaded:
            # a lesson may describe its data in its own words (notes["data"]); the source column is always filled
            self.notes.setdefault("data", loaded)
            names = sorted({entry.split(" ")[0] + (" (subset)" if ", subset)" in entry else "") for entry in loaded})
            self.notes.setdefault("data_source", ", ".join(names))
        out = results_dir()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.notebook}.{self.profile}.json"
        payload = {
            "notebook": self.notebook, "profile": self.profile, "seed": self.seed,
            "seconds": round(self.seconds, 2), "machine": {**describe_machine(self.device),
                                                            "python": platform.python_version()},
            "numbers": self.numbers, "checks": self.checks, "notes": self.notes,
            "reproduction": self.reproduction,
        }
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=out)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return path

    def finish(self) -> None:
        """Save the results and print a summary of the run (with where the results file is).

        Returns nothing, so the notebook's last cell shows that summary and no machine-specific path after it.
        """
        path = self.save()
        passed = sum(c["passed"] for c in self.checks)
        print(f"{self.notebook}: {passed}/{len(self.checks)} checks passed, profile {self.profile}, "
              f"device {self.device}, {self.seconds:.0f} s; results in {path.relative_to(path.parent.parent)}")


def _figure_defaults() -> None:
    """Small PNG figures so executed notebooks stay light."""
    import matplotlib as mpl

    mpl.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "figure.max_open_warning": 0,
                         "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7})


def start_lesson(notebook: str, profile: str | None = None, seed: int = 0, device: str | None = None) -> Lesson:
    """Resolve profile and device, seed everything, and print what this run is."""
    prof = resolve_profile(profile)
    dev = pick_device(device)
    if dev.type == "cpu":
        set_cpu_threads()
    gen = seed_everything(seed)
    _figure_defaults()
    lesson = Lesson(notebook=notebook, profile=prof, device=dev, seed=seed, generator=gen)
    print(f"{notebook}: profile={prof}, device={dev}, seed={seed}, torch {torch.__version__}")
    return lesson


def load_results(notebook: str, profile: str, folder: str | Path | None = None) -> dict:
    """Read a results file written by ``Lesson.save``."""
    path = Path(folder or results_dir()) / f"{notebook}.{profile}.json"
    return json.loads(path.read_text())
