"""One training loop for every lesson.

``fit`` batches tensors that live on the device, shows a tqdm progress bar with the running
losses, keeps a history of every logged term, stops with an error naming the step and the terms
when a loss is NaN/inf (before the bad step touches the weights), keeps the model and the history
when you press Ctrl-C / interrupt the kernel, and writes atomic checkpoints it can resume from.

A lesson supplies either ``loss_fn(model, batch) -> {"loss": ..., other terms}`` (fit takes the
optimiser step) or ``train_step(batch) -> terms`` for objectives with several optimisers
(IntroVAC, CSVAE's adversary), which step themselves.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .batching import check_same_length, iterate, minibatches
from .losses import terms_as_floats

Terms = dict[str, torch.Tensor]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; ``history`` holds everything logged before it."""

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Every logged value: ``steps`` (one dict per optimiser step) and ``epochs`` (per-epoch means)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

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
def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
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


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], Terms] | None,
        tensors: Sequence[torch.Tensor], *, epochs: int, batch_size: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, seed: int = 0,
        train_step: Callable[[tuple[torch.Tensor, ...]], Terms] | None = None,
        optimizers: dict[str, torch.optim.Optimizer] | None = None,
        desc: str = "train", progress: bool | None = None, live_plot: bool | Sequence[str] = False,
        checkpoint: str | Path | None = None, resume: bool = False, history: History | None = None,
        on_epoch_end: Callable[[int, History], None] | None = None, check_every: int | None = None,
        drop_last: bool = False) -> History:
    """Train ``model`` for ``epochs`` passes over ``tensors`` in shuffled minibatches.

    Returns the History (also when interrupted). ``seed`` fixes the batch order; the model's
    initialisation and the reparameterisation noise follow torch's global seed
    (``vaecourse.seed_everything``). With ``checkpoint`` the state is written atomically after
    every epoch and on interrupt; ``resume=True`` continues from it.
    """
    if (loss_fn is None) == (train_step is None):
        raise ValueError("give exactly one of loss_fn (fit steps the optimiser) or train_step (steps itself)")
    n = check_same_length(tensors)
    if n == 0:
        raise ValueError("no training data: the tensors are empty")
    if loss_fn is not None and optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    opts = dict(optimizers or {})
    if optimizer is not None:
        opts.setdefault("main", optimizer)
    history = history or History()
    if resume and checkpoint and Path(checkpoint).is_file():
        history, _ = load_checkpoint(checkpoint, model, opts)
        history.interrupted = False
        print(f"resumed from {checkpoint} after {len(history.epochs)} epoch(s)")
    generator = torch.Generator().manual_seed(seed)
    for _ in range(len(history.epochs)):  # the same batch order as an uninterrupted run
        torch.randperm(n, generator=generator)
    device = tensors[0].device
    steps_per_epoch = (n // batch_size) if drop_last else -(-n // batch_size)
    first_epoch = len(history.epochs)
    # On a GPU a finiteness check forces a sync; check every step on the CPU, every 20 steps elsewhere.
    check_every = check_every or (1 if device.type == "cpu" else 20)
    bar = _progress(steps_per_epoch * max(epochs - first_epoch, 0), desc, _progress_enabled(progress))
    plot = LiveLossPlot(live_plot) if live_plot else None
    start = time.perf_counter() - history.seconds
    step = len(history.steps)
    epoch = first_epoch
    epoch_terms: list[dict[str, torch.Tensor]] = []
    try:
        for epoch in range(first_epoch, epochs):
            model.train()
            epoch_terms = []
            for idx in minibatches(n, batch_size, generator, drop_last=drop_last):
                idx = idx.to(device, non_blocking=True)
                batch = tuple(t[idx] for t in tensors)
                if loss_fn is not None:
                    terms = loss_fn(model, batch)
                    if "loss" not in terms:
                        raise KeyError("loss_fn must return a dict with a 'loss' entry (the value to minimise)")
                    if step % check_every == 0 and not torch.isfinite(terms["loss"].detach()).all():
                        _raise_non_finite(terms, epoch, step, history, epoch_terms, start)
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    optimizer.step()
                else:
                    terms = train_step(batch)
                    if step % check_every == 0:
                        bad = [k for k, v in terms.items() if not torch.isfinite(torch.as_tensor(v).detach()).all()]
                        if bad:
                            _raise_non_finite(terms, epoch, step, history, epoch_terms, start)
                epoch_terms.append({k: (v.detach().float().mean() if torch.is_tensor(v) else torch.tensor(float(v)))
                                    for k, v in terms.items()})
                # reading values makes a GPU wait: show them only on steps that already waited for the NaN check
                show = step % max(check_every, 10) == 0
                step += 1
                if bar is not None:
                    bar.update(1)
                    if show:
                        bar.set_postfix({k: f"{float(v):.4g}" for k, v in epoch_terms[-1].items()}, refresh=False)
            _close_epoch(history, epoch_terms, epoch, step, start)
            if plot is not None:
                plot.update(history)
            if checkpoint:
                save_checkpoint(checkpoint, model, opts, history)
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
    except KeyboardInterrupt:
        history.interrupted = True
        if epoch_terms and len(history.epochs) == epoch:  # keep the steps of the unfinished epoch
            _close_epoch(history, epoch_terms, epoch, step, start, partial=True)
        if checkpoint:
            save_checkpoint(checkpoint, model, opts, history)
        print(f"Interrupted in epoch {epoch + 1}: the model keeps its weights, and the history its "
              f"{len(history.steps)} logged steps" + (f"; saved to {checkpoint}" if checkpoint else "")
              + ". Run the cell again with resume=True (and a checkpoint) to continue.")
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


def _raise_non_finite(terms: Terms, epoch: int, step: int, history: History,
                      epoch_terms: list[dict[str, torch.Tensor]], start: float) -> None:
    values = terms_as_floats(terms)
    bad = [k for k, v in values.items() if v != v or v in (float("inf"), float("-inf"))]
    history.interrupted = True
    _close_epoch(history, epoch_terms, epoch, step, start, partial=True)
    raise NonFiniteLossError(
        f"non-finite loss at step {step} (epoch {epoch + 1}): {', '.join(bad) or 'loss'} is not finite; terms: "
        + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        + ". The weights are those before this step. Lower the learning rate, check the inputs are in [0, 1], "
        "or clamp the log-variances.", history)


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
