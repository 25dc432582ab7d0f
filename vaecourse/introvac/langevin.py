"""Langevin sampling of p(z|y) ∝ p_w(y|z)·p(z), the paper's way to generate faces with chosen attributes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..train import model_mode
from .model import (
    VAC,
)


# ----------------------------------------------------------------------------- Langevin sampling of p(z | y)
@dataclass
class LangevinResult:
    """Latents after the chains ran, which ones the classifier accepts, and the mean energy per step."""

    z: torch.Tensor
    accepted: torch.Tensor
    energy: list[float]

    @property
    def acceptance(self) -> float:
        return float(self.accepted.float().mean())


def energy(model: VAC, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """U(z) = −log p_w(y|z) − log p(z) per chain (up to a constant): BCE over the conditioned attributes + ½‖z‖²."""
    logits = model.class_logits(z)
    nll = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    return (nll * mask).sum(1) + 0.5 * z.pow(2).sum(1)


def langevin_sample(model: VAC, target: dict[str | int, int] | Sequence[float] | torch.Tensor, n: int = 16, *,
                    steps: int = 5000, alpha: float = 2e-4, generator: torch.Generator | None = None,
                    z0: torch.Tensor | None = None, step: Callable[..., torch.Tensor] | None = None) -> LangevinResult:
    """Draw n latents from p(z | y) ∝ p_w(y|z)·p(z) by Langevin dynamics, z ← z − α∇U + √(2α)·ε.

    ``target`` gives y for the attributes to condition on (a dict name→0/1; the others are left
    free), or a full vector. Chains start from the prior (Maggipinto et al. 2020: α = 2·10⁻⁴, 5000 steps,
    several chains, reject the samples the classifier does not put in the class). Each step takes
    the gradient of a fresh leaf with ``torch.autograd.grad``: nothing accumulates in ``.grad``.
    ``step(z, grad, alpha, noise)``, when given, replaces the update (lesson 06 passes its exercise's).
    """
    if steps < 0 or alpha <= 0:
        raise ValueError(f"need steps ≥ 0 and a positive step size alpha, got steps={steps}, alpha={alpha}")
    device = model.classifier.weight.device
    y, mask = target_and_mask(model, target)
    z = torch.randn(n, model.latent_dim, generator=generator).to(device) if z0 is None else z0.detach().to(device)
    trace = []
    noise_scale = math.sqrt(2 * alpha)
    with model_mode(model, training=False), torch.enable_grad():  # enable_grad: also inside a widget's no_grad render
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            u = energy(model, z, y, mask)
            (grad,) = torch.autograd.grad(u.sum(), z)
            noise = torch.randn(z.shape, generator=generator).to(device)
            z = z.detach()
            z = z - alpha * grad + noise_scale * noise if step is None else step(z, grad, alpha, noise)
            trace.append(u.detach().mean())
    z = z.detach()
    with torch.no_grad():
        accepted = in_class(model.class_logits(z), y, mask)
    return LangevinResult(z, accepted, torch.stack(trace).tolist() if trace else [])


def target_and_mask(model: VAC, target: dict[str | int, int] | Sequence[float] | torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, mask) over the model's attributes: a dict name→0/1 conditions on those attributes only (mask 0 elsewhere)."""
    device = model.classifier.weight.device
    y = torch.zeros(model.n_attributes, device=device)
    mask = torch.zeros(model.n_attributes, device=device)
    if isinstance(target, dict):
        for k, v in target.items():
            i = model.attribute_index(k)
            y[i], mask[i] = float(v), 1.0
    else:
        y = torch.as_tensor(target, dtype=torch.float32, device=device).reshape(-1)
        if y.numel() != model.n_attributes:
            raise ValueError(f"target needs one value per attribute ({model.n_attributes}), got {y.numel()}")
        mask = torch.ones_like(y)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(f"target values must be 0 or 1, got {y.tolist()}")
    return y, mask


def in_class(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row: does every conditioned attribute's logit fall on the side of its target (logit > 0 means 1)?"""
    return (((logits > 0).float() == y) | (mask == 0)).all(dim=1)


@torch.no_grad()
def reread_accepts(model: VAC, z: torch.Tensor, target: dict[str | int, int] | Sequence[float] | torch.Tensor,
                   batch_size: int = 256) -> torch.Tensor:
    """Which codes the model still puts in the class after drawing them: decode, encode the image, classify.

    The paper's rejection asks the latent classifier about z itself; a decoder can draw a code from the
    class without the attribute (the code fools its own classifier). Reading the drawn image back through
    the encoder (posterior mean) and the classifier asks the model about what it drew instead: an
    introspective second test that uses no outside judge.
    """
    y, mask = target_and_mask(model, target)
    with model_mode(model, training=False):
        logits = torch.cat([model.class_logits(model.encode(model.decode(zb))[0])
                            for zb in z.to(y.device).split(batch_size)])
    return in_class(logits, y, mask)
