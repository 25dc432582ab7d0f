"""What a training run logged: every step's terms, per-epoch means, the time taken, and where a Stop left it.

``fit`` (in ``train``) writes it; the errors it raises (NonFiniteLossError, TrainingInterrupted) carry it, so a
failed or stopped training loses nothing it logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


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


def drop_partial_epoch(history: History) -> list[dict[str, float]]:
    """Remove the unfinished epoch's row and steps from ``history``; return those steps."""
    if not history.epochs or not history.epochs[-1].get("partial"):
        return []
    row = history.epochs.pop()
    epoch = int(row["epoch"]) - 1
    kept = [s for s in history.steps if s.get("epoch") != epoch]
    dropped = [s for s in history.steps if s.get("epoch") == epoch]
    history.steps[:] = kept
    return dropped


def close_epoch(history: History, epoch_terms: list[dict[str, torch.Tensor]], epoch: int, step: int,
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
