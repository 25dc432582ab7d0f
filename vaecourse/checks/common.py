"""What every exercise check shares: the failure type, the message format, and tensor/gradient helpers."""

from __future__ import annotations

import numpy as np
import torch


class ExerciseFailed(AssertionError):
    """The student's answer is wrong; the message says how, and hints at the fix."""


def _fail(name: str, what: str, hint: str) -> None:
    raise ExerciseFailed(f"{name}: {what}\n  hint: {hint}")


def _pair(name: str, out: object, what: str) -> tuple:
    """``out`` as a pair, or a failed check saying what was returned and what to return (``what``)."""
    if not (isinstance(out, tuple | list) and len(out) == 2):
        size = f" of length {len(out)}" if hasattr(out, "__len__") else ""
        _fail(name, f"returned {type(out).__name__}{size}", f"return the pair: return {what}")
    return tuple(out)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-8) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=tol, rtol=tol))


def _tensor_out(name: str, out: object, shape: tuple[int, ...], per: str, hint: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        _fail(name, f"returned {type(out).__name__}, not a torch tensor",
              "compute with torch operations on the inputs (no .item(), float() or numpy) and return the tensor")
    if tuple(out.shape) != shape:
        _fail(name, f"returned shape {tuple(out.shape)}, expected {shape} ({per})", hint)
    return out


def _grads(name: str, out: torch.Tensor, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    if not out.requires_grad:
        _fail(name, "no gradient flows from the result to " + " and ".join(inputs),
              "build the result from the inputs with torch operations: no .detach(), torch.no_grad(), .numpy(), "
              "and no fresh random draw (the noise is given to you)")
    grads = torch.autograd.grad(out.sum(), list(inputs.values()), allow_unused=True)
    for (label, _), g in zip(inputs.items(), grads):
        if g is None:
            _fail(name, f"the result does not depend on {label}: its gradient is missing",
                  f"use {label} in the formula (the pathwise gradient must reach it)")
    return list(grads)


def _diagnose(out: torch.Tensor, variants: dict[str, torch.Tensor]) -> str | None:
    return next((hint for hint, value in variants.items() if _close(out, value, 1e-6)), None)


def _number(name: str, out: object, what: str) -> float:
    """``out`` as a float (a Python number or a one-element tensor), or a failed check saying what was returned."""
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return float(out)
    if isinstance(out, bool) or not isinstance(out, int | float | np.floating | np.integer):
        _fail(name, f"returned {type(out).__name__}, not a number", f"return {what} as a float")
    return float(out)
