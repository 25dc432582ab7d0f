"""A lesson's run: its profile, device and seed, its headline numbers and the checks on them.

Every notebook starts with ``lesson = start_lesson("02_ae_vs_vae", profile=PROFILE, seed=SEED)``
and ends with ``lesson.finish()``, which writes ``<results>/<notebook>.<profile>.json`` (the folder is
``config.results_home()``: the checkout's ``results/``, or ``results/`` under the working directory for a
pip install). The file is written only when the run completes with every check passed, and records the
parameters that differ from the profile's. A missed check raises at once, so a wrong loss sign fails the
notebook (and CI) even in the smoke profile; it writes ``<notebook>.<profile>.failed.json`` and never
touches the passing file. Re-running a cell replaces its checks and reproduction rows (keyed by name).
"""

from __future__ import annotations

import json
import linecache
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from .checkpoints import readable_by_others
from .config import (
    NotWritableError,
    by_profile,
    describe_machine,
    pick_device,
    resolve_profile,
    results_home,
    seed_everything,
    set_cpu_threads,
    shown_path,
    writable_folder,
)
from .data import LOADED
from .train import whole_number

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# The full profile's minutes on the 2-core CPU this course is built on: measured (results/*.full.json, one
# torch thread), or the cpu run scaled by the full profile's epochs and images; None: not estimated.
FULL_ON_CPU_MINUTES: dict[str, tuple[float | None, str]] = {
    "01_elbo": (1.5, "measured"), "02_ae_vs_vae": (1.7, "measured, on the 4k MNIST subset"),
    "04b_fixed_points": (0.9, "measured"),
    "03_c_and_beta": (45.0, "estimated: the cpu run × 30 epochs"),
    "04_geco": (150.0, "estimated: the cpu run (2.4 min, with the warm-up control at 3 seeds) × 10 epochs × 6 images"),
}
FULL_ON_CPU_LIMIT = 5.0  # minutes: longer runs of the full profile on a CPU need VAECOURSE_PROFILE=full


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
    """Where results files go (``config.results_home``): ``VAECOURSE_RESULTS``, ``$VAECOURSE_HOME/results``,
    the checkout's ``results/``, or ``results/`` under the working directory."""
    return results_home()


def results_path(notebook: str, profile: str, folder: str | Path | None = None, failed: bool = False,
                 variant: str | None = None) -> Path:
    """``<folder>/<notebook>.<profile>.json``, or its ``.failed.json`` twin; a ``variant`` of the lesson (a run
    on another data subset, say) gets its own file, ``<notebook>.<profile>.<variant>.json``."""
    name = f"{notebook}.{profile}" + (f".{check_variant(variant)}" if variant else "")
    return Path(folder or results_dir()) / f"{name}{'.failed' if failed else ''}.json"


def check_variant(variant: str | None) -> str | None:
    """A variant name as it goes into a file name: lower-case letters, digits and '_' (or None)."""
    if variant is not None and not re.fullmatch(r"[a-z0-9_]+", str(variant)):
        raise ValueError(f"a lesson variant names a results file: use lower-case letters, digits and '_', "
                         f"got {variant!r}")
    return variant


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


def _parameter_name(frame: Any, value: Any) -> str | None:
    """The name of the notebook parameter passed to ``lesson.pick`` in the calling line (``pick(EPOCHS, ...)``)."""
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    m = re.search(r"\.pick\(\s*([A-Za-z_]\w*)\s*[,)]", line)
    if m:
        return m.group(1)
    same = [k for k, v in frame.f_globals.items() if k.isupper() and v is value]
    return same[0] if len(same) == 1 else None


def _notebook_parameters(frame: Any) -> dict[str, Any]:
    """The caller's upper-case globals of plain types: in a notebook, its parameters cell as run (papermill's too)."""
    g = frame.f_globals
    if "get_ipython" not in g or "In" not in g:  # only in a notebook or IPython session
        return {}
    plain = (int, float, str, bool, type(None), list, tuple, dict)
    return {k: _plain(v) for k, v in g.items() if k.isupper() and not k.startswith("_") and isinstance(v, plain)}


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
    overrides: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    completed: bool = False
    variant: str | None = None

    def pick(self, override: T | None = None, **values: T) -> T:
        """``override`` if set (a papermill parameter), else the value for this profile.

        An override that differs from the profile's value is recorded under the parameter's name in the
        results file (``overrides``), so a customised run says how it differs. Where every profile's value is
        a count (a whole number ≥ 1), the override must be one too: ``-p EPOCHS -3`` fails here, by name.
        """
        chosen = by_profile(self.profile, override, **values)
        if override is not None:
            frame = sys._getframe(1)
            name = _parameter_name(frame, override) or f"the parameter on line {frame.f_lineno}"
            given = [v for v in values.values() if v is not None]
            if given and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in given):
                chosen = whole_number(name, override)  # a count (epochs, images): -3 or 2.5 named here, not later
            default = values.get(self.profile)
            if _plain(override) != _plain(default):
                self.overrides[name] = {"value": _plain(override), "profile": _plain(default)}
        return chosen

    def record(self, **numbers: Any) -> None:
        """Store headline numbers (floats, lists, small dicts) for the results file."""
        self.numbers.update({k: _plain(v) for k, v in numbers.items()})

    def note(self, **info: Any) -> None:
        """Store facts about the run that are not numbers to check (data source, subset...)."""
        self.notes.update({k: _plain(v) for k, v in info.items()})

    def reproduce(self, what: str, ours: float, source_value: float | str | None, source: str,
                  setting: str = "") -> None:
        """Put one of our numbers next to the number a source reports (the reproduction table, docs/reproduction.md).

        A row with the same ``what``, source and source value (a cell run again) is replaced, not repeated.
        """
        row = {"what": what, "ours": _plain(ours), "source_value": _plain(source_value), "source": source,
               "setting": setting}
        key = (what, source, json.dumps(row["source_value"]))
        for i, old in enumerate(self.reproduction):
            if (old["what"], old["source"], json.dumps(old["source_value"])) == key:
                self.reproduction[i] = row
                return
        self.reproduction.append(row)

    def check(self, name: str, value: float, *, above: float | None = None, below: float | None = None,
              near: float | None = None, tol: float | None = None) -> None:
        """Check ``value`` against a threshold and record the outcome; raise CheckFailed if it misses.

        Returns nothing, and prints nothing when the check passes: the lesson's text is not interleaved with
        bookkeeping, and ``finish`` lists every check with its value and bound in one table at the end. A miss
        prints a ``[FAIL]`` line where it happens. A check of the same name (a cell run again) replaces the
        earlier outcome. A miss writes ``<notebook>.<profile>.failed.json`` (never the passing file).

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
            rule.append(f"within {tol:.3g} of {near:.3g}")  # a tolerance from standard errors has many digits
        if not rule:
            raise ValueError("check needs above=, below= or near= with tol=")
        entry = {"name": name, "value": value, "rule": " and ".join(rule), "passed": bool(ok)}
        same = [i for i, c in enumerate(self.checks) if c["name"] == name]
        if same:
            self.checks[same[0]] = entry
        else:
            self.checks.append(entry)
        if ok:
            return
        print(f"[FAIL] {name}: {value:.4g} (want {entry['rule']}, profile {self.profile})")
        if checks_are_reported_only():
            print("       (VAECOURSE_CHECKS=report: a rehearsal run goes on past a missed check)")
        else:
            try:
                saved = f"this run's results: {shown_path(self.save())}"
            except NotWritableError as err:  # the miss is the news; where to write comes second
                saved = f"not saved: {err}"
            raise CheckFailed(f"{self.notebook}: {name} = {value:.6g}, wanted {' and '.join(rule)} "
                              f"in the {self.profile} profile ({saved})")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def passed(self) -> bool:
        """True when every check so far passed."""
        return all(c["passed"] for c in self.checks)

    def save(self) -> Path:
        """Write this run's results atomically and return the path.

        The results file ``<notebook>.<profile>.json`` only for a completed run (``finish``) whose checks all
        passed; otherwise ``<notebook>.<profile>.failed.json``, so a failed or unfinished run never replaces
        a passing file.
        """
        loaded = list(dict.fromkeys(LOADED[self.first_loaded:]))
        if loaded:
            # a lesson may describe its data in its own words (notes["data"]); the source column is always filled
            self.notes.setdefault("data", loaded)
            names = sorted({entry.split(" ")[0] + (" (subset)" if ", subset)" in entry else "") for entry in loaded})
            self.notes.setdefault("data_source", ", ".join(names))
        good = self.completed and self.passed
        out = writable_folder(results_dir(), "VAECOURSE_RESULTS (or VAECOURSE_HOME)")
        path = results_path(self.notebook, self.profile, out, failed=not good, variant=self.variant)
        payload = {
            "notebook": self.notebook, "profile": self.profile, "seed": self.seed, "completed": self.completed,
            "seconds": round(self.seconds, 2), "machine": {**describe_machine(self.device),
                                                            "python": platform.python_version()},
            "numbers": self.numbers, "checks": self.checks, "notes": self.notes,
            "reproduction": self.reproduction, "overrides": self.overrides,
        }
        if self.parameters:
            payload["parameters"] = self.parameters
        if self.variant:
            payload["variant"] = self.variant
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=out)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh, indent=1, sort_keys=True)
            readable_by_others(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        if good:  # an earlier failed attempt is superseded
            results_path(self.notebook, self.profile, out, failed=True, variant=self.variant).unlink(missing_ok=True)
        return path

    def finish(self) -> None:
        """Mark the run complete, save its results and print a summary with where the results file is, then
        every check of the run, one line each (✓ or ✗, the value, the bound it had to meet).

        Returns nothing, so the notebook's last cell shows that summary and no machine-specific path after it.
        """
        self.completed = True
        path = self.save()
        passed = sum(c["passed"] for c in self.checks)
        changed = ", ".join(f"{k}={v['value']!r}" for k, v in self.overrides.items())
        custom = f"; overrides {changed}" if changed else ""
        print(f"{self.notebook}: {passed}/{len(self.checks)} checks passed, profile {self.profile}, "
              f"device {self.device}, {self.seconds:.0f} s{custom}; results in {shown_path(path)}")
        for c in self.checks:
            print(f"  {'✓' if c['passed'] else '✗'} {c['name']}: {c['value']:.4g} (want {c['rule']})")


def _figure_defaults() -> None:
    """Small PNG figures so executed notebooks stay light."""
    import matplotlib as mpl

    mpl.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "figure.max_open_warning": 0,
                         "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7})


def full_profile_here(notebook: str, device: torch.device) -> tuple[str, str]:
    """The profile to run when ``full`` was asked for on ``device``, and a line saying what to expect.

    On a GPU: full, the sources' scale. On a CPU: full when it was measured to take minutes or when
    ``VAECOURSE_PROFILE=full`` asks for it explicitly; otherwise cpu, saying how long full would take.
    """
    minutes, how = FULL_ON_CPU_MINUTES.get(notebook, (None, "not measured on a CPU"))
    if device.type == "cuda":
        return "full", (f"full profile: the sources' scale, meant for this GPU ({torch.cuda.get_device_name(device)}); "
                        f"not yet timed on a GPU (on a 2-core CPU: {f'{minutes:g} min, {how}' if minutes else how})")
    estimate = (f"about {minutes:g} min on a 2-core CPU ({how})" if minutes
                else f"hours on a CPU ({how}; sized for a GPU)")
    if minutes is not None and minutes <= FULL_ON_CPU_LIMIT:
        return "full", f"full profile on {device}: {estimate}"
    if os.environ.get("VAECOURSE_PROFILE", "").strip().lower() == "full":
        return "full", f"full profile on {device} (VAECOURSE_PROFILE=full): {estimate}"
    return "cpu", (f"the full profile is the sources' scale, meant for a GPU: on this {device.type.upper()} it "
                   f"would take {estimate}. Running the cpu profile instead; set the environment variable "
                   "VAECOURSE_PROFILE=full to run full here anyway")


def start_lesson(notebook: str, profile: str | None = None, seed: int = 0, device: str | None = None,
                 variant: str | None = None) -> Lesson:
    """Resolve profile and device, seed everything, and print what this run is.

    ``variant`` names a run of the lesson that measures something else than its default (lesson 06 on
    another faces subset): its results go to a file of their own, next to the default run's.
    """
    check_variant(variant)
    try:
        seed = whole_number("seed", seed, minimum=0)
    except ValueError as err:
        raise ValueError(f"SEED: {err} (any whole number from 0 to 2**32 - 1)") from None
    if seed >= 2**32:
        raise ValueError(f"SEED must be below 2**32 (NumPy's limit), got {seed}")
    prof = resolve_profile(profile)
    dev = pick_device(device)
    if prof == "full":
        prof, message = full_profile_here(notebook, dev)
        print(message)
    if dev.type == "cpu":
        set_cpu_threads()
    gen = seed_everything(seed)
    _figure_defaults()
    lesson = Lesson(notebook=notebook, profile=prof, device=dev, seed=seed, generator=gen,
                    parameters=_notebook_parameters(sys._getframe(1)), variant=variant)
    print(f"{notebook}{f' ({variant})' if variant else ''}: profile={prof}, device={dev}, seed={seed}, "
          f"torch {torch.__version__}")
    return lesson


def load_results(notebook: str, profile: str, folder: str | Path | None = None, failed: bool = False,
                 variant: str | None = None) -> dict:
    """Read a results file written by ``Lesson.save`` (``failed=True``: its ``.failed.json`` twin)."""
    return json.loads(results_path(notebook, profile, folder, failed, variant).read_text())
