"""One training loop for every lesson.

``fit`` batches tensors that live on the device, shows a tqdm progress bar with the running
losses, keeps a history of every logged term, stops with an error naming the step and the terms
when any logged term is NaN/inf (saying truthfully whether the weights took a bad step), and writes
atomic checkpoints it can resume from, mid-epoch included.

Stop (the notebook's ■ button, Ctrl-C) ends the step in progress, keeps the model and its history,
writes the checkpoint when one is given, and then stops the cell with :class:`TrainingInterrupted`
(a ``KeyboardInterrupt``), so a cell that trains several models stops at the first Stop.

A lesson supplies either ``loss_fn(model, batch) -> {"loss": ..., other terms}`` (fit takes the
optimiser step) or ``train_step(batch) -> terms`` for objectives with several optimisers
(IntroVAC, CSVAE's adversary), which step themselves.
"""

from __future__ import annotations

import contextlib
import operator
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batching import check_same_length, iterate
from .config import NotWritableError
from .losses import terms_as_floats

Terms = dict[str, torch.Tensor]
FILE_MODE = 0o666  # new files get this less the umask (0644 under the usual 022), as open() would


class NonFiniteLossError(FloatingPointError):
    """A logged term became NaN or infinite; ``history`` holds everything logged before it."""

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Stop was pressed during ``fit``: the model kept its weights, ``history`` what was logged.

    A ``KeyboardInterrupt``, so the notebook cell (and any later training in it) stops.
    """

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Every logged value: ``steps`` (one dict per optimiser step) and ``epochs`` (per-epoch means).

    ``seconds`` is the training time so far, across resumed runs. After a Stop the last row of
    ``epochs`` is the unfinished epoch (marked ``partial``) and ``resume_state`` says where it stopped.
    """

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    resume_state: dict | None = field(default=None, repr=False, compare=False)

    def series(self, key: str, per: str = "epoch") -> list[float]:
        """The values of ``key`` per epoch (default) or per step."""
        rows = self.epochs if per == "epoch" else self.steps
        if rows and key not in rows[-1]:
            raise KeyError(f"{key!r} was not logged; logged terms: {', '.join(sorted(rows[-1]))}")
        return [r[key] for r in rows if key in r]

    def last(self, key: str) -> float:
        """The last epoch's mean of ``key``."""
        return self.series(key)[-1]

    def to_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs, "interrupted": self.interrupted, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(list(d.get("steps", [])), list(d.get("epochs", [])), bool(d.get("interrupted", False)),
                   float(d.get("seconds", 0.0)))


# ----------------------------------------------------------------------------- checkpoints
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
# ----------------------------------------------------------------------------- the loop
def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=True, mininterval=0.5)


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return os.environ.get("VAECOURSE_PROGRESS", "1") not in ("0", "false", "")


def whole_number(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number ≥ ``minimum``; else a ValueError naming ``name`` and the value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a whole number ≥ {minimum}, got {value!r} "
                         f"({type(value).__name__})") from None
    if number < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {number}")
    return number


class _StopButton:
    """While training: a first SIGINT (Stop, Ctrl-C) asks to stop after the step in progress; a second one
    interrupts at once. Only in the main thread, and only where Python's own handler is installed."""

    def __init__(self) -> None:
        self.pressed = False
        self.previous = None

    def __enter__(self) -> "_StopButton":
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    self.previous = signal.signal(signal.SIGINT, self._press)
            except (ValueError, OSError):
                self.previous = None
        return self

    def _press(self, signum, frame) -> None:
        self.pressed = True
        signal.signal(signal.SIGINT, self.previous)  # a second press interrupts the step itself

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _rng_state(device: torch.device) -> dict:
    """The global random states a training step may draw from (torch, CUDA, NumPy, Python)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if device.type == "cuda" and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoint_summary(path: Path) -> str:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        hist = History.from_dict(state.get("history", {}))
        full = sum(1 for e in hist.epochs if not e.get("partial"))
        return f"{full} epoch(s), {len(hist.steps)} steps"
    except Exception as err:  # an unreadable file is still not ours to delete
        return f"an unreadable file ({type(err).__name__})"


def _drop_partial_epoch(history: History) -> list[dict[str, float]]:
    """Remove the unfinished epoch's row and steps from ``history``; return those steps."""
    if not history.epochs or not history.epochs[-1].get("partial"):
        return []
    row = history.epochs.pop()
    epoch = int(row["epoch"]) - 1
    kept = [s for s in history.steps if s.get("epoch") != epoch]
    dropped = [s for s in history.steps if s.get("epoch") == epoch]
    history.steps[:] = kept
    return dropped


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], Terms] | None,
        tensors: Sequence[torch.Tensor], *, epochs: int, batch_size: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, seed: int = 0,
        train_step: Callable[[tuple[torch.Tensor, ...]], Terms] | None = None,
        optimizers: dict[str, torch.optim.Optimizer] | None = None,
        desc: str = "train", progress: bool | None = None, live_plot: bool | Sequence[str] = False,
        checkpoint: str | Path | None = None, resume: bool = False, history: History | None = None,
        on_epoch_end: Callable[[int, History], None] | None = None, check_every: int | None = None,
        drop_last: bool = False, overwrite: bool = False) -> History:
    """Train ``model`` for ``epochs`` passes over ``tensors`` in shuffled minibatches; returns the History.

    ``seed`` fixes the batch order; the model's initialisation and the reparameterisation noise follow
    torch's global seed (``vaecourse.seed_everything``).

    Stop (Ctrl-C, the notebook's Stop button) ends the step in progress, keeps the model's weights and
    the history (its last epoch row marked ``partial``), writes ``checkpoint`` when given, then raises
    :class:`TrainingInterrupted` (a KeyboardInterrupt carrying ``.history``), so the cell stops there.

    With ``checkpoint`` the state is written atomically after every epoch and on Stop: weights, optimisers,
    history, elapsed time, the random states (torch, CUDA, NumPy, Python, batch order) and the step reached.
    ``resume=True`` continues from it *at the step where it stopped*, mid-epoch included: a resumed run, in
    a fresh process too, gives the same numbers as an uninterrupted one (a second Stop, which interrupts
    inside a step, loses that step). ``resume=True`` with no file there is an error; an existing file is
    never replaced by a fresh run unless ``overwrite=True``. Passing ``history=`` (e.g. ``err.history``)
    continues in memory the same way, with the optimisers you pass.

    Every logged term is checked for NaN/inf: every step on the CPU, every 20 steps elsewhere
    (``check_every``), and at every epoch's end; the error says which step first went bad and whether the
    weights took it.
    """
    if (loss_fn is None) == (train_step is None):
        raise ValueError("give exactly one of loss_fn (fit steps the optimiser) or train_step (steps itself)")
    epochs = whole_number("epochs", epochs)
    batch_size = whole_number("batch_size", batch_size)
    n = check_same_length(tensors)
    if n == 0:
        raise ValueError("no training data: the tensors are empty")
    if drop_last and batch_size > n:
        raise ValueError(f"drop_last=True with batch_size={batch_size} > {n} examples leaves no batch to train on: "
                         "lower batch_size or pass drop_last=False")
    if resume and checkpoint is None and (history is None or history.resume_state is None):
        raise ValueError("resume=True needs checkpoint= (the file to continue from)")
    if loss_fn is not None and optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    opts = dict(optimizers or {})
    if optimizer is not None:
        opts.setdefault("main", optimizer)
    device = tensors[0].device
    settings = {"n": n, "batch_size": batch_size, "drop_last": bool(drop_last), "seed": int(seed)}

    history = history if history is not None else History()
    state = history.resume_state
    if checkpoint is not None:
        path = Path(checkpoint)
        if resume:
            if not path.is_file():
                raise FileNotFoundError(f"resume=True but there is no checkpoint at {path}: train without resume "
                                        "(resume=False) to create it, or check the path")
            history, extra = load_checkpoint(path, model, opts)
            state = extra.get("fit")
        elif path.exists() and not overwrite:
            raise FileExistsError(f"{path} already holds a training ({_checkpoint_summary(path)}): pass resume=True to "
                                  "continue it, overwrite=True to train from scratch over it, or another path")
    history.interrupted = False
    history.resume_state = None
    if state is not None:
        differ = {k: (state.get(k), v) for k, v in settings.items() if state.get(k) != v}
        if differ:
            raise ValueError("cannot resume: the checkpoint was trained with " + ", ".join(
                f"{k}={a!r} (now {b!r})" for k, (a, b) in differ.items()) + "; pass the same settings, or "
                "overwrite=True to start over")

    generator = torch.Generator()
    partial_steps = _drop_partial_epoch(history)
    if state is not None:  # where it stopped: the epoch's batch order, the step in it, every random state
        first_epoch, skip = int(state["epoch"]), int(state["step_in_epoch"])
        generator.set_state(state["order"])
        _set_rng_state(state["rng"])
        if len(partial_steps) != skip or len(history.epochs) != first_epoch:
            raise ValueError("the checkpoint's history and its resume point disagree; overwrite=True to start over")
    else:  # an older checkpoint, or none: an unfinished epoch is trained again from its start
        first_epoch, skip = len(history.epochs), 0
        generator.manual_seed(seed)
        for _ in range(first_epoch):  # the same batch order as an uninterrupted run
            torch.randperm(n, generator=generator)
        if partial_steps:
            print(f"epoch {first_epoch + 1} was unfinished and is trained again from its start")
    if resume or state is not None or first_epoch:
        print(f"resuming{f' from {checkpoint}' if checkpoint else ''} after {first_epoch} epoch(s)"
              + (f" and {skip} step(s) of epoch {first_epoch + 1}" if skip else ""))
    if first_epoch >= epochs:
        print(f"already trained for {first_epoch} epoch(s) (asked for {epochs}): nothing to do")
        model.eval()
        return history

    steps_per_epoch = (n // batch_size) if drop_last else -(-n // batch_size)
    # On a GPU a finiteness check forces a sync; check every step on the CPU, every 20 steps elsewhere.
    check_every = whole_number("check_every", check_every) if check_every is not None else (
        1 if device.type == "cpu" else 20)
    bar = _progress(steps_per_epoch * (epochs - first_epoch) - skip, desc, _progress_enabled(progress))
    plot = LiveLossPlot(live_plot) if live_plot else None
    start = time.perf_counter() - history.seconds
    epoch = first_epoch
    step = len(history.steps) + skip
    epoch_terms = [{k: torch.tensor(v, device=device) for k, v in s.items() if k not in ("step", "epoch")}
                   for s in partial_steps] if skip else []
    epoch_order = generator.get_state()
    in_step = False  # True while weights may be half-updated

    def resume_state(next_epoch: int, step_in_epoch: int, order: torch.Tensor) -> dict:
        return {**settings, "epoch": next_epoch, "step_in_epoch": step_in_epoch, "order": order,
                "rng": _rng_state(device)}

    def save(state: dict) -> None:
        history.seconds = time.perf_counter() - start
        if checkpoint:
            save_checkpoint(checkpoint, model, opts, history, extra={"fit": state})

    try:
        with _StopButton() as stop:
            for epoch in range(first_epoch, epochs):
                model.train()
                if epoch > first_epoch or not skip:
                    epoch_terms = []
                    epoch_order = generator.get_state()
                order = torch.randperm(n, generator=generator)
                stop_at = n - (n % batch_size) if drop_last else n
                checked = len(epoch_terms)
                for first in range(len(epoch_terms) * batch_size, stop_at, batch_size):
                    idx = order[first:first + batch_size].to(device, non_blocking=True)
                    batch = tuple(t[idx] for t in tensors)
                    in_step = True
                    if loss_fn is not None:
                        terms = loss_fn(model, batch)
                        if "loss" not in terms:
                            raise KeyError("loss_fn must return a dict with a 'loss' entry (the value to minimise)")
                    else:
                        terms = train_step(batch)
                    epoch_terms.append({k: (v.detach().float().mean() if torch.is_tensor(v)
                                            else torch.tensor(float(v), device=device)) for k, v in terms.items()})
                    step += 1
                    if (step - 1) % check_every == 0:  # before fit's optimiser step: a bad step is not taken
                        _check_finite(epoch_terms, checked, epoch, step, history, start, device, check_every,
                                      by_train_step=train_step is not None, before_update=loss_fn is not None)
                        checked = len(epoch_terms)
                    if loss_fn is not None:
                        optimizer.zero_grad(set_to_none=True)
                        terms["loss"].backward()
                        optimizer.step()
                    in_step = False
                    if bar is not None:
                        bar.update(1)
                        # reading values makes a GPU wait: show them only on steps that already waited for the check
                        if (step - 1) % max(check_every, 10) == 0:
                            bar.set_postfix({k: f"{float(v):.4g}" for k, v in epoch_terms[-1].items()}, refresh=False)
                    if stop.pressed:
                        raise KeyboardInterrupt
                if checked < len(epoch_terms):  # the steps since the last check, before they enter the history
                    _check_finite(epoch_terms, checked, epoch, step, history, start, device, check_every,
                                  by_train_step=train_step is not None, before_update=False)
                _close_epoch(history, epoch_terms, epoch, step, start)
                epoch_terms = []
                if plot is not None:
                    plot.update(history)
                save(resume_state(epoch + 1, 0, generator.get_state()))
                if on_epoch_end is not None:
                    on_epoch_end(epoch, history)
                if stop.pressed:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        history.interrupted = True
        done = len(epoch_terms)
        if len(history.epochs) == epoch:  # stopped inside an epoch: resume at its batch order and step
            state = resume_state(epoch, done, epoch_order)
            _close_epoch(history, epoch_terms, epoch, step, start, partial=True)  # its steps stay in the history
        else:  # stopped between epochs
            state = resume_state(len(history.epochs), 0, generator.get_state())
        history.resume_state = state
        save(state)
        model.eval()
        where = (f"epoch {epoch + 1}, after step {done} of {steps_per_epoch}" if done
                 else f"after epoch {len(history.epochs)}")
        msg = (f"Stopped in {where}: the model keeps its weights"
               + (" (the step in progress was cut short, so they may hold part of it)" if in_step else "")
               + f", the history its {len(history.steps)} logged steps. "
               + (f"Saved to {checkpoint}; to continue from this step, run fit again with resume=True."
                  if checkpoint else "To continue from this step, pass history=err.history (the same model "
                  "and optimiser), or next time give checkpoint='file.pt' and resume with resume=True."))
        print(msg)
        raise TrainingInterrupted(msg, history) from None
    finally:
        if bar is not None:
            bar.close()
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


def _close_epoch(history: History, epoch_terms: list[dict[str, torch.Tensor]], epoch: int, step: int,
                 start: float, partial: bool = False) -> None:
    """Move an epoch's stacked step terms to the history (one device sync per epoch)."""
    if not epoch_terms:
        return
    keys = list(epoch_terms[0])
    stacked = {k: torch.stack([t[k] for t in epoch_terms]).cpu() for k in keys}
    first = step - len(epoch_terms)
    for i in range(len(epoch_terms)):
        history.steps.append({"step": first + i, "epoch": epoch, **{k: float(stacked[k][i]) for k in keys}})
    row = {"epoch": epoch + 1, **{k: float(stacked[k].mean()) for k in keys},
           "seconds": time.perf_counter() - start}
    if partial:
        row["partial"] = 1.0
    history.epochs.append(row)


def _check_finite(epoch_terms: list[dict[str, torch.Tensor]], checked: int, epoch: int, step: int,
                  history: History, start: float, device: torch.device, check_every: int, *,
                  by_train_step: bool, before_update: bool) -> None:
    """Raise NonFiniteLossError if any term of the steps since ``checked`` is NaN/inf (one device sync).

    ``step`` counts the steps logged so far; ``before_update`` says the optimiser has not yet taken the last
    one (fit's own step, checked before it is taken); ``by_train_step`` that the lesson's code steps itself.
    """
    rows = epoch_terms[checked:]
    keys = list(rows[0])
    ok = torch.isfinite(torch.stack([torch.stack([r[k] for k in keys]) for r in rows])).all(dim=1).cpu()
    if bool(ok.all()):
        return
    first_bad = checked + int((~ok).nonzero()[0])
    bad_step = step - len(epoch_terms) + first_bad  # the global index of the first bad step
    values = terms_as_floats(epoch_terms[first_bad])
    bad = [k for k, v in values.items() if v != v or v in (float("inf"), float("-inf"))]
    last = step - 1
    taken = last - 1 if before_update else last
    if bad_step > taken:
        weights = "The weights are those before this step: nothing non-finite was applied to them."
    elif bad_step == last and by_train_step:
        weights = ("train_step had already taken its optimiser step(s) when its terms were read, so the weights "
                   "may hold non-finite values: rebuild the model, or reload a checkpoint, before training on.")
    else:
        span = f"step {bad_step}" if bad_step == taken else f"steps {bad_step}–{taken}"
        weights = (f"Terms are checked every {check_every} steps on {device} and at each epoch's end; this was "
                   f"found at step {last}, after the optimiser took {span} with non-finite terms, so the weights "
                   "may hold non-finite values (rebuild the model or reload a checkpoint; check_every=1 stops "
                   "before a bad step).")
    history.interrupted = True
    del epoch_terms[first_bad:]
    _close_epoch(history, epoch_terms, epoch, bad_step, start, partial=True)
    raise NonFiniteLossError(
        f"non-finite loss at step {bad_step} (epoch {epoch + 1}): {', '.join(bad)} "
        f"{'is' if len(bad) == 1 else 'are'} not finite; terms: "
        + ", ".join(f"{k}={v:.4g}" for k, v in values.items()) + f". {weights} Lower the learning rate, check the "
        "inputs are in [0, 1], or clamp the log-variances.", history)


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Put ``model`` in training or eval mode for a block, and give it back in its own mode even on an error."""
    was = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], Terms],
             tensors: Sequence[torch.Tensor], batch_size: int = 1000) -> dict[str, float]:
    """Mean of every term of ``loss_fn`` over ``tensors`` with the model in eval mode (no autograd)."""
    n = check_same_length(tensors)
    sums: dict[str, float] = {}
    with model_mode(model, training=False):
        for batch in iterate(tensors, batch_size, shuffle=False):
            terms = loss_fn(model, batch)
            for k, v in terms.items():
                v = v.detach().float()
                sums[k] = sums.get(k, 0.0) + float(v.sum() if v.dim() else v * batch[0].shape[0])
    return {k: v / n for k, v in sums.items()}


class LiveLossPlot:
    """A loss plot in the notebook that redraws in place after each epoch (no-op outside IPython)."""

    def __init__(self, keys: bool | Sequence[str] = True):
        self.keys = None if keys is True else list(keys)
        self.handle = None

    def update(self, history: History) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        import matplotlib.pyplot as plt

        keys = self.keys or [k for k in history.epochs[-1] if k not in ("epoch", "seconds", "partial")]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.4), squeeze=False)
        for ax, k in zip(axes[0], keys):
            ax.plot(history.series("epoch"), history.series(k), marker="o")
            ax.set_title(k)
            ax.set_xlabel("epoch")
        fig.tight_layout()
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)
