"""Checkpoints: atomic writes readable by a class's other users, safe loading with clear shape errors, and the
random states a resumed training needs to repeat an uninterrupted one."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import NotWritableError
from .history import History

FILE_MODE = 0o666  # new files get this less the umask (0644 under the usual 022), as open() would


def readable_by_others(path: str | Path) -> None:
    """Give a file made by ``mkstemp`` (0600) the mode ``open()`` would have given it: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, FILE_MODE & ~umask)


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, then rename: a reader never sees half a file.

    The file is readable by others as the umask allows (a class's shared cache), not mkstemp's 0600; a folder
    that cannot be written raises :class:`~vaecourse.config.NotWritableError` naming the variables that move it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise NotWritableError(f"cannot write {path} ({err.strerror or err}): pass a path you can write to, or set "
                               "VAECOURSE_HOME (the course's data, caches and results) or VAECOURSE_CACHE (the "
                               "faces oracle's cache) to a folder you can write to") from None
    os.close(fd)
    try:
        torch.save(obj, tmp)
        readable_by_others(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    history: History | None = None, extra: dict | None = None) -> Path:
    """Write model, optimisers and history to ``path`` atomically (temp file + rename)."""
    state = {
        "model": model.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in (optimizers or {}).items()},
        "history": (history or History()).to_dict(),
        "extra": extra or {},
    }
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer] | None = None) -> tuple[History, dict]:
    """Load a checkpoint safely (``weights_only=True``) into ``model``; returns (history, extra).

    A checkpoint written for a model of another shape raises a ValueError naming the first
    mismatching tensor, rather than torch's long list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first, or pass resume=False")
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    saved = state["model"]
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    shape_diff = [(k, tuple(saved[k].shape), tuple(own[k].shape)) for k in own
                  if k in saved and saved[k].shape != own[k].shape]
    if missing or unexpected or shape_diff:
        detail = (f"tensor {shape_diff[0][0]} is {shape_diff[0][1]} there but {shape_diff[0][2]} here" if shape_diff
                  else f"{len(missing)} tensors missing (e.g. {missing[:1]}), {len(unexpected)} unexpected "
                       f"(e.g. {unexpected[:1]})")
        raise ValueError(f"checkpoint {path} holds a model of another shape: {detail}. Build the model with "
                         "the settings it was trained with (latent size, layers), or delete the file to retrain.")
    model.load_state_dict(saved)
    for name, opt in (optimizers or {}).items():
        if name in state["optimizers"]:
            opt.load_state_dict(state["optimizers"][name])
    return History.from_dict(state["history"]), state.get("extra", {})


def rng_state(device: torch.device) -> dict:
    """The global random states a training step may draw from (torch, CUDA, NumPy, Python)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if device.type == "cuda" and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_summary(path: Path) -> str:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        hist = History.from_dict(state.get("history", {}))
        full = sum(1 for e in hist.epochs if not e.get("partial"))
        return f"{full} epoch(s), {len(hist.steps)} steps"
    except Exception as err:  # an unreadable file is still not ours to delete
        return f"an unreadable file ({type(err).__name__})"
