"""Where the code runs and how big it runs: device, seeds and the profile.

A profile sets every notebook's sizes at once: ``smoke`` (CI: seconds, proves the code runs and
the numbers move the right way), ``cpu`` (a laptop: minutes, the phenomenon clearly visible) and
``full`` (a GPU: the sources' scale). The default is ``smoke`` when the environment says CI,
``full`` on a CUDA GPU and ``cpu`` otherwise; ``VAECOURSE_PROFILE`` or a notebook parameter
overrides it.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .cpu_kernels import kernel_set

PROFILES = ("smoke", "cpu", "full")
T = TypeVar("T")


class ProfileError(ValueError):
    """An unknown profile name; the message lists the valid ones."""


def in_ci() -> bool:
    """True when the environment says a CI job runs us (``CI`` set to anything but false/0)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pick_device(prefer: str | None = None) -> torch.device:
    """The training device: CUDA, then Apple MPS, then CPU (``VAECOURSE_DEVICE`` or ``prefer`` override)."""
    choice = prefer or os.environ.get("VAECOURSE_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_profile(profile: str | None = None) -> str:
    """The profile to run: ``profile`` if given, else VAECOURSE_PROFILE, else smoke in CI, full on CUDA, cpu."""
    chosen = profile or os.environ.get("VAECOURSE_PROFILE")
    if chosen is None:
        if in_ci():
            chosen = "smoke"
        elif torch.cuda.is_available():
            chosen = "full"
        else:
            chosen = "cpu"
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ProfileError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)} "
                           "(or leave it as None to pick from the machine)")
    return chosen


def by_profile(profile: str, override: T | None = None, **values: T) -> T:
    """The value for ``profile`` among ``smoke=``, ``cpu=``, ``full=`` unless ``override`` is given.

    Notebooks keep every size as a papermill parameter defaulting to None, so that a parameter
    set by hand wins and the rest follow the profile.
    """
    if override is not None:
        return override
    missing = [p for p in PROFILES if p not in values]
    if missing:
        raise ValueError(f"by_profile needs a value for every profile; missing {missing}")
    return values[resolve_profile(profile)]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order so runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_cpu_threads() -> int:
    """Use every core (or ``VAECOURSE_THREADS``) for torch on the CPU; returns the count."""
    n = int(os.environ.get("VAECOURSE_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def describe_machine(device: torch.device) -> dict[str, Any]:
    """What produced a result: device name, torch version, threads, torch's CPU kernel set."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                            "cpu_kernels": kernel_set()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ----------------------------------------------------------------------------- where files go
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class NotWritableError(PermissionError):
    """A folder the course writes to (results, caches, data) cannot be written; the message names the variable."""


def source_checkout() -> Path | None:
    """The source checkout the package runs from (pyproject.toml and notebooks/ beside it), or None when installed."""
    root = PACKAGE_PARENT
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() and "site-packages" not in root.parts:
        return root
    return None


def shown_path(path: str | Path) -> str:
    """A path as printed: relative to the checkout inside one, ``~/...`` under the home folder, else in full.

    Printed paths end up in the committed notebooks' outputs; these forms read the same on every machine.
    """
    path = Path(path).expanduser().resolve()
    checkout = source_checkout()
    if checkout is not None:
        try:
            return str(path.relative_to(checkout))
        except ValueError:
            pass
    try:
        return str(Path("~") / path.relative_to(Path.home().resolve()))
    except (ValueError, RuntimeError):  # outside the home folder, or no home folder at all
        return str(path)


def user_cache_home() -> Path:
    """The machine's vaecourse cache: ``VAECOURSE_CACHE_HOME``, else ``$XDG_CACHE_HOME/vaecourse``, else
    ~/.cache/vaecourse."""
    home = os.environ.get("VAECOURSE_CACHE_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vaecourse"


def data_home() -> Path:
    """Where data sets are downloaded and the oracle cached: ``$VAECOURSE_HOME/data``, else the checkout's ``data/``,
    else (a pip install) ``<user cache>/data``; never inside site-packages."""
    home = os.environ.get("VAECOURSE_HOME")
    if home:
        return Path(home).expanduser() / "data"
    checkout = source_checkout()
    return checkout / "data" if checkout else user_cache_home() / "data"


def results_home() -> Path:
    """Where results files go: ``VAECOURSE_RESULTS``, else ``$VAECOURSE_HOME/results``, else the checkout's
    ``results/``, else (a pip install) ``results/`` under the working directory."""
    if os.environ.get("VAECOURSE_RESULTS"):
        return Path(os.environ["VAECOURSE_RESULTS"]).expanduser()
    if os.environ.get("VAECOURSE_HOME"):
        return Path(os.environ["VAECOURSE_HOME"]).expanduser() / "results"
    checkout = source_checkout()
    return checkout / "results" if checkout else Path.cwd() / "results"


def writable_folder(folder: Path, variable: str) -> Path:
    """Create ``folder`` if needed and check that files can be written there; else a NotWritableError that
    names ``variable``, the setting that moves it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as err:
        raise NotWritableError(f"cannot write to {folder} ({err.strerror or err}): set {variable} to a folder you can "
                               f"write to (e.g. `export {variable}=$HOME/vaecourse`, or os.environ[{variable!r}] = ... "
                               "before the lesson starts)") from None
    return folder


_ONLINE: bool | None = None


def network_available(timeout: float = 1.0) -> bool:
    """True when a download could work. Never probes in CI or with VAECOURSE_OFFLINE=1.

    The probe runs in a daemon thread so a slow DNS failure (about 4 s on an offline machine)
    costs at most ``timeout`` seconds, once per process.
    """
    global _ONLINE
    if _ONLINE is not None:
        return _ONLINE
    if os.environ.get("CI") or os.environ.get("VAECOURSE_OFFLINE", "") not in ("", "0"):
        _ONLINE = False
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(("ossci-datasets.s3.amazonaws.com", 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    _ONLINE = bool(result and result[0])
    return _ONLINE
