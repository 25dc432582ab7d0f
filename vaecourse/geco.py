"""GECO: minimise the KL subject to a reconstruction constraint, with a Lagrange multiplier λ.

Rezende & Viola 2018 ("Taming VAEs", Algorithm 1) turn the VAE into the constrained problem

    min KL(q(z|x) ‖ π(z))   subject to   E[C(x, g(z))] ≤ 0,   C = ‖x − g(z)‖² − κ²,

and optimise its Lagrangian L = KL + λ·C. λ starts at λ₀ = 1 (Algorithm 1: "Initialize λ = 1").
Each training step
  1. computes the batch constraint Cᵗ (mean over the batch),
  2. updates its moving average C_maᵗ = α·C_maᵗ⁻¹ + (1 − α)·Cᵗ (C_ma⁰ = C⁰),
  3. uses Ĉ = Cᵗ + stop_gradient(C_maᵗ − Cᵗ): its *value* is the smooth average, its *gradient*
     the batch constraint's gradient,
  4. takes a gradient step on KL + λ·Ĉ (``fit`` does this),
  5. updates λ ← λ·exp(η·C_maᵗ): λ grows while the constraint is violated (C_ma > 0), shrinks
     while it is met, and stays positive.
Parnas & Shazman's report on Taming VAEs writes the last step as λ ← λ·exp(α·Cᵗ) (the average's α reused as
the rate) and the constraint as ‖x − g(x)‖ − κ² (a norm against a squared tolerance); this module follows the
paper. Lesson 04 writes the same step in its notebook (``Geco``, from the student's moving average and λ step);
tests/test_notebook_objectives.py holds the two equal.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .losses import gaussian_kl, squared_error


def stop_gradient_average(c_batch: torch.Tensor, c_ma: torch.Tensor | float) -> torch.Tensor:
    """Ĉ = C + sg(C_ma − C): forward value C_ma, gradient that of the batch constraint C (GECO's trick)."""
    c_ma = torch.as_tensor(c_ma, dtype=c_batch.dtype, device=c_batch.device)
    return c_batch + (c_ma - c_batch).detach()


def multiplicative_update(lam: float, c_ma: float, eta: float, lam_min: float = 1e-6,
                          lam_max: float = 1e6) -> float:
    """λ·exp(η·C_ma), clamped to [lam_min, lam_max]: positive, up when violated, down when met."""
    if lam <= 0:
        raise ValueError(f"λ must be positive for the multiplicative update, got {lam}")
    # the exponent is clipped too, so a huge early violation cannot overflow exp()
    return float(min(max(lam * math.exp(max(min(eta * c_ma, 50.0), -50.0)), lam_min), lam_max))


class GECO:
    """A ``loss_fn(model, batch)`` for ``vc.fit`` holding λ and the constraint's moving average.

    ``kappa`` is the tolerance on the per-image squared error (κ² in the same units as
    ``squared_error``). ``eta`` is the λ rate per unit of constraint (1 / squared-error units),
    ``alpha`` the moving average's memory, ``lambda0`` the start value of λ (1, the paper's), ``warmup`` a number
    of first steps during which λ stays at λ₀; the average restarts (C_ma = Cᵗ) when λ starts to move,
    so it does not carry the untrained net's huge error into the first λ updates. λ is updated only in
    training mode with autograd on, so ``vc.evaluate`` reads the objective without changing it.
    Every call returns the batch means of ``loss``, ``kl`` (nats), ``sq_err`` (per image),
    ``constraint`` (batch Cᵗ), ``c_ma`` (C_maᵗ) and ``lambda`` (the λ this step used).
    """

    def __init__(self, kappa: float, *, eta: float = 1e-3, alpha: float = 0.99, lambda0: float = 1.0,
                 lambda_min: float = 1e-6, lambda_max: float = 1e6, warmup: int = 0):
        if kappa <= 0:
            raise ValueError(f"kappa must be positive (a tolerance on the distortion), got {kappa}")
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha is the moving average's memory and must be in [0, 1), got {alpha}")
        if eta <= 0:
            raise ValueError(f"eta (the λ learning rate) must be positive, got {eta}")
        if not 0 < lambda_min <= lambda0 <= lambda_max:
            raise ValueError(f"need 0 < lambda_min ≤ lambda0 ≤ lambda_max, got {lambda_min}, {lambda0}, {lambda_max}")
        self.kappa = float(kappa)
        self.eta = float(eta)
        self.alpha = float(alpha)
        self.lambda0 = float(lambda0)
        self.lambda_min = float(lambda_min)
        self.lambda_max = float(lambda_max)
        self.warmup = int(warmup)
        self.reset()

    def reset(self) -> None:
        """Back to λ₀ and an empty moving average (step 0)."""
        self.lam = self.lambda0
        self.c_ma: float | None = None
        self.t = 0

    def constraint(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """C = ‖x − x̂‖² − κ² per example: negative when the reconstruction is within tolerance."""
        return squared_error(x, x_hat) - self.kappa ** 2

    def observe(self, c_batch: float) -> float:
        """Fold a batch constraint value into the moving average (C_ma⁰ = C⁰) and return it."""
        c_batch = float(c_batch)
        self.c_ma = c_batch if self.c_ma is None else self.alpha * self.c_ma + (1 - self.alpha) * c_batch
        return self.c_ma

    def update_lambda(self) -> float:
        """λ ← λ·exp(η·C_ma) (after the warm-up); returns the new λ."""
        if self.c_ma is not None and self.t >= self.warmup:
            self.lam = multiplicative_update(self.lam, self.c_ma, self.eta, self.lambda_min, self.lambda_max)
        return self.lam

    def terms(self, model: nn.Module, x: torch.Tensor, update: bool = True) -> dict[str, torch.Tensor]:
        """The GECO Lagrangian on a batch; with ``update`` also move C_ma and λ (one training step)."""
        out = model(x)
        kl = gaussian_kl(out.mu, out.logvar)
        sq = squared_error(x, out.x_hat)
        c_batch = (sq - self.kappa ** 2).mean()  # self.constraint, reusing sq (also logged below)
        lam_used = self.lam
        if update:
            if self.warmup and self.t == self.warmup:
                self.c_ma = None  # the average restarts when λ starts moving: no memory of the untrained net
            c_ma = self.observe(c_batch.detach())
            c_hat = stop_gradient_average(c_batch, c_ma)
        else:
            c_ma = self.c_ma if self.c_ma is not None else float(c_batch.detach())
            c_hat = c_batch
        loss = kl.mean() + lam_used * c_hat
        if update:
            self.update_lambda()  # the λ for the *next* step; this step's loss used lam_used
            self.t += 1
        as_t = lambda v: torch.as_tensor(float(v))  # noqa: E731
        return {"loss": loss, "kl": kl.mean(), "sq_err": sq.mean(), "constraint": c_batch.detach(),
                "c_ma": as_t(c_ma), "lambda": as_t(lam_used)}

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        training = model.training and torch.is_grad_enabled()
        return self.terms(model, batch[0], update=training)

    def state_dict(self) -> dict[str, Any]:
        """λ, the moving average and the step count (to store with a checkpoint)."""
        return {"lam": self.lam, "c_ma": self.c_ma, "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.lam, self.c_ma, self.t = float(state["lam"]), state["c_ma"], int(state["t"])

    def __repr__(self) -> str:
        return (f"GECO(kappa={self.kappa:g}, eta={self.eta:g}, alpha={self.alpha:g}, lambda={self.lam:.4g}, "
                f"c_ma={self.c_ma if self.c_ma is None else round(self.c_ma, 4)}, t={self.t})")


def traversal_widget(models: dict[str, nn.Module], latent_dim: int, device: torch.device | str | None = None, *,
                     n_draws: int = 4, max_seed: int = 50, lim: float = 3.0):
    """Lesson 04's live comparison: every model decodes the same prior draws, one row per model.

    Controls ``seed`` (which ``n_draws`` draws z ~ N(0, I)), ``dim`` (a latent coordinate) and ``value``
    (what that coordinate is set to in every draw, ±``lim``). A coordinate a model left unused changes nothing
    in its row. ``device``: where the models are (default: that of the first model's parameters).
    """
    import ipywidgets as W  # here, not at the top: training with GECO needs no widget library

    from .widgets import LiveImage

    if not models:
        raise ValueError("traversal_widget needs at least one model, e.g. {'GECO κ=5': model}")
    if device is None:
        device = next(next(iter(models.values())).parameters()).device
    names = list(models)

    def render(seed: int, dim: int, value: float) -> torch.Tensor:
        z = torch.randn(n_draws, latent_dim, generator=torch.Generator().manual_seed(int(seed)))
        z[:, int(dim)] = float(value)
        z = z.to(device)
        return torch.cat([models[n].decode(z).cpu() for n in names])

    controls = {"seed": W.IntSlider(value=0, min=0, max=max_seed, description="seed"),
                "dim": W.IntSlider(value=0, min=0, max=latent_dim - 1, description="z dim"),
                "value": W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description="value")}
    return LiveImage(render, controls, nrow=n_draws, scale=2,
                     title="rows: " + " · ".join(names) + f" ({n_draws} prior draws each)")
