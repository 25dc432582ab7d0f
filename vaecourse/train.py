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
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .batching import check_same_length, iterate
from .checkpoints import checkpoint_summary, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .history import History, NonFiniteLossError, TrainingInterrupted, close_epoch, drop_partial_epoch
from .losses import terms_as_floats
from .plots import LiveLossPlot

Terms = dict[str, torch.Tensor]


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=True, mininterval=0.5)


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return os.environ.get("VAECOURSE_PROGRESS", "1") not in ("0", "false", "")


def adam(params, lr: float = 1e-3, **options) -> torch.optim.Adam:
    """Adam as the course builds it: the multi-tensor ("foreach") update, on every device.

    On a CPU, PyTorch defaults to updating one parameter tensor at a time; the foreach update does the same
    arithmetic on all of them at once, so the steps are bitwise the same (``tests/test_train.py`` holds that)
    and an epoch of lesson 05's MNIST CCVAE takes about 7 % less time on 2 cores (5.9 against 5.5 s for half an
    epoch, median of 4, 2026-12-02). On CUDA foreach is PyTorch's default already.
    """
    return torch.optim.Adam(params, lr=lr, foreach=True, **options)


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
    epochs, batch_size, n = _checked_sizes(loss_fn, train_step, tensors, epochs, batch_size, drop_last, resume,
                                           checkpoint, history)
    if loss_fn is not None and optimizer is None:
        optimizer = adam(model.parameters(), lr=lr)
    opts = dict(optimizers or {})
    if optimizer is not None:
        opts.setdefault("main", optimizer)
    settings = {"n": n, "batch_size": batch_size, "drop_last": bool(drop_last), "seed": int(seed)}
    history, state = _history_to_continue(model, opts, history, checkpoint, resume, overwrite, settings)
    start = _start_point(history, state, seed, n)
    if resume or state is not None or start.epoch:
        print(f"resuming{f' from {checkpoint}' if checkpoint else ''} after {start.epoch} epoch(s)"
              + (f" and {start.skip} step(s) of epoch {start.epoch + 1}" if start.skip else ""))
    if start.epoch >= epochs:
        print(f"already trained for {start.epoch} epoch(s) (asked for {epochs}): nothing to do")
        model.eval()
        return history
    device = tensors[0].device
    # On a GPU a finiteness check forces a sync; check every step on the CPU, every 20 steps elsewhere.
    check_every = whole_number("check_every", check_every) if check_every is not None else (
        1 if device.type == "cpu" else 20)
    run = _Run(model, tensors, loss_fn, train_step, optimizer, opts, history, checkpoint, settings, check_every)
    return run.train(start, epochs, _progress_enabled(progress), desc, live_plot, on_epoch_end)


def _checked_sizes(loss_fn, train_step, tensors: Sequence[torch.Tensor], epochs: object, batch_size: object,
                   drop_last: bool, resume: bool, checkpoint: str | Path | None,
                   history: History | None) -> tuple[int, int, int]:
    """fit's arguments that would train nothing or not what was meant, refused naming the fix; returns
    (epochs, batch_size, number of examples)."""
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
    return epochs, batch_size, n


def _history_to_continue(model: nn.Module, opts: dict[str, torch.optim.Optimizer], history: History | None,
                         checkpoint: str | Path | None, resume: bool, overwrite: bool,
                         settings: dict) -> tuple[History, dict | None]:
    """The history this run extends and the point to resume from (None: the start of its next epoch).

    From ``checkpoint`` with ``resume=True`` (weights and optimisers loaded too), else ``history=`` or a fresh
    one. An existing checkpoint is never replaced by a fresh run without ``overwrite``, and a resume point
    saved with other batch settings is refused: it could not repeat the uninterrupted run.
    """
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
            raise FileExistsError(f"{path} already holds a training ({checkpoint_summary(path)}): pass resume=True to "
                                  "continue it, overwrite=True to train from scratch over it, or another path")
    history.interrupted = False
    history.resume_state = None
    if state is not None:
        differ = {k: (state.get(k), v) for k, v in settings.items() if state.get(k) != v}
        if differ:
            raise ValueError("cannot resume: the checkpoint was trained with " + ", ".join(
                f"{k}={a!r} (now {b!r})" for k, (a, b) in differ.items()) + "; pass the same settings, or "
                "overwrite=True to start over")
    return history, state


@dataclass
class _StartPoint:
    """Where a run starts: its first epoch, the steps of that epoch already taken (a mid-epoch resume) with their
    logged terms, and the batch-order generator where an uninterrupted run's would be."""

    epoch: int
    skip: int
    partial_steps: list[dict[str, float]]
    generator: torch.Generator


def _start_point(history: History, state: dict | None, seed: int, n: int) -> _StartPoint:
    generator = torch.Generator()
    partial_steps = drop_partial_epoch(history)
    if state is not None:  # where it stopped: the epoch's batch order, the step in it, every random state
        first_epoch, skip = int(state["epoch"]), int(state["step_in_epoch"])
        generator.set_state(state["order"])
        set_rng_state(state["rng"])
        if len(partial_steps) != skip or len(history.epochs) != first_epoch:
            raise ValueError("the checkpoint's history and its resume point disagree; overwrite=True to start over")
    else:  # an older checkpoint, or none: an unfinished epoch is trained again from its start
        first_epoch, skip = len(history.epochs), 0
        generator.manual_seed(seed)
        for _ in range(first_epoch):  # the same batch order as an uninterrupted run
            torch.randperm(n, generator=generator)
        if partial_steps:
            print(f"epoch {first_epoch + 1} was unfinished and is trained again from its start")
    return _StartPoint(first_epoch, skip, partial_steps, generator)


class _Run:
    """One call of fit: its loop, and the state a Stop or a NaN must see (the epoch, the global step, this epoch's
    logged terms, which enter the history at the epoch's end, and whether the weights are mid-update)."""

    def __init__(self, model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn, train_step,
                 optimizer: torch.optim.Optimizer | None, opts: dict[str, torch.optim.Optimizer], history: History,
                 checkpoint: str | Path | None, settings: dict, check_every: int) -> None:
        self.model, self.tensors, self.loss_fn, self.train_step = model, tensors, loss_fn, train_step
        self.optimizer, self.opts, self.history, self.checkpoint = optimizer, opts, history, checkpoint
        self.settings, self.check_every = settings, check_every
        self.device = tensors[0].device
        self.n, self.batch_size, self.drop_last = settings["n"], settings["batch_size"], settings["drop_last"]
        self.epoch_terms: list[dict[str, torch.Tensor]] = []
        self.in_step = False  # True while the weights may be half-updated

    def resume_state(self, next_epoch: int, step_in_epoch: int, order: torch.Tensor) -> dict:
        return {**self.settings, "epoch": next_epoch, "step_in_epoch": step_in_epoch, "order": order,
                "rng": rng_state(self.device)}

    def save(self, state: dict) -> None:
        self.history.seconds = time.perf_counter() - self.started
        if self.checkpoint:
            save_checkpoint(self.checkpoint, self.model, self.opts, self.history, extra={"fit": state})

    def check(self, checked: int, before_update: bool) -> None:
        _check_finite(self.epoch_terms, checked, self.epoch, self.step, self.history, self.started, self.device,
                      self.check_every, by_train_step=self.train_step is not None, before_update=before_update)

    def take_step(self, batch: tuple[torch.Tensor, ...], checked: int) -> int:
        """One minibatch: the lesson's terms, logged and checked for NaN/inf *before* fit's optimiser takes them
        (a train_step has stepped already); returns how many of this epoch's steps are checked."""
        self.in_step = True
        if self.loss_fn is not None:
            terms = self.loss_fn(self.model, batch)
            if "loss" not in terms:
                raise KeyError("loss_fn must return a dict with a 'loss' entry (the value to minimise)")
        else:
            terms = self.train_step(batch)
        self.epoch_terms.append({k: (v.detach().float().mean() if torch.is_tensor(v)
                                     else torch.tensor(float(v), device=self.device)) for k, v in terms.items()})
        self.step += 1
        if (self.step - 1) % self.check_every == 0:
            self.check(checked, before_update=self.loss_fn is not None)
            checked = len(self.epoch_terms)
        if self.loss_fn is not None:
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
        self.in_step = False
        return checked

    def run_epoch(self, order: torch.Tensor, bar, stop: _StopButton) -> None:
        """This epoch's remaining minibatches in ``order``, then its terms into the history."""
        bs = self.batch_size
        stop_at = self.n - (self.n % bs) if self.drop_last else self.n
        checked = len(self.epoch_terms)
        for first in range(len(self.epoch_terms) * bs, stop_at, bs):
            idx = order[first:first + bs].to(self.device, non_blocking=True)
            checked = self.take_step(tuple(t[idx] for t in self.tensors), checked)
            if bar is not None:
                bar.update(1)
                # reading values makes a GPU wait: show them only on steps that already waited for the check
                if (self.step - 1) % max(self.check_every, 10) == 0:
                    bar.set_postfix({k: f"{float(v):.4g}" for k, v in self.epoch_terms[-1].items()}, refresh=False)
            if stop.pressed:
                raise KeyboardInterrupt
        if checked < len(self.epoch_terms):  # the steps since the last check, before they enter the history
            self.check(checked, before_update=False)
        close_epoch(self.history, self.epoch_terms, self.epoch, self.step, self.started)
        self.epoch_terms = []

    def train(self, start: _StartPoint, epochs: int, progress: bool, desc: str, live_plot: bool | Sequence[str],
              on_epoch_end: Callable[[int, History], None] | None) -> History:
        steps_per_epoch = (self.n // self.batch_size) if self.drop_last else -(-self.n // self.batch_size)
        bar = _progress(steps_per_epoch * (epochs - start.epoch) - start.skip, desc, progress)
        plot = LiveLossPlot(live_plot) if live_plot else None
        self.started = time.perf_counter() - self.history.seconds
        self.epoch, self.step = start.epoch, len(self.history.steps) + start.skip
        self.epoch_terms = [{k: torch.tensor(v, device=self.device) for k, v in s.items() if k not in ("step", "epoch")}
                            for s in start.partial_steps] if start.skip else []
        generator = start.generator
        epoch_order = generator.get_state()
        try:
            with _StopButton() as stop:
                for self.epoch in range(start.epoch, epochs):
                    self.model.train()
                    if self.epoch > start.epoch or not start.skip:  # else: the resumed epoch's own order
                        epoch_order = generator.get_state()
                    self.run_epoch(torch.randperm(self.n, generator=generator), bar, stop)
                    if plot is not None:
                        plot.update(self.history)
                    self.save(self.resume_state(self.epoch + 1, 0, generator.get_state()))
                    if on_epoch_end is not None:
                        on_epoch_end(self.epoch, self.history)
                    if stop.pressed:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise self.stopped(epoch_order, generator, steps_per_epoch) from None
        finally:
            if bar is not None:
                bar.close()
        self.history.seconds = time.perf_counter() - self.started
        self.model.eval()
        return self.history

    def stopped(self, epoch_order: torch.Tensor, generator: torch.Generator,
                steps_per_epoch: int) -> TrainingInterrupted:
        """After a Stop: the unfinished epoch's steps kept in the history (marked partial), the point to resume
        from saved (to the checkpoint when there is one), the model in eval mode; the error that stops the cell."""
        history, epoch = self.history, self.epoch
        history.interrupted = True
        done = len(self.epoch_terms)
        if len(history.epochs) == epoch:  # stopped inside an epoch: resume at its batch order and step
            state = self.resume_state(epoch, done, epoch_order)
            close_epoch(history, self.epoch_terms, epoch, self.step, self.started, partial=True)
        else:  # stopped between epochs
            state = self.resume_state(len(history.epochs), 0, generator.get_state())
        history.resume_state = state
        self.save(state)
        self.model.eval()
        where = (f"epoch {epoch + 1}, after step {done} of {steps_per_epoch}" if done
                 else f"after epoch {len(history.epochs)}")
        checkpoint = self.checkpoint
        msg = (f"Stopped in {where}: the model keeps its weights"
               + (" (the step in progress was cut short, so they may hold part of it)" if self.in_step else "")
               + f", the history its {len(history.steps)} logged steps. "
               + (f"Saved to {checkpoint}; to continue from this step, run fit again with resume=True."
                  if checkpoint else "To continue from this step, pass history=err.history (the same model "
                  "and optimiser), or next time give checkpoint='file.pt' and resume with resume=True."))
        print(msg)
        return TrainingInterrupted(msg, history)


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
    close_epoch(history, epoch_terms, epoch, bad_step, start, partial=True)
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
