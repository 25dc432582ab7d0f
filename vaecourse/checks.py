"""The checks that follow the lessons' exercises: each runs the student's code on a fixed input, compares it
with the package's function or a closed form, and when it is wrong says what (shape, value, gradient) with a
hint. A failed check raises ``ExerciseFailed`` (an AssertionError); a passed one prints one line.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import kernel_toy as kt
from .losses import gaussian_kl


class ExerciseFailed(AssertionError):
    """The student's answer is wrong; the message says how, and hints at the fix."""


def _fail(name: str, what: str, hint: str) -> None:
    raise ExerciseFailed(f"{name}: {what}\n  hint: {hint}")


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


# ----------------------------------------------------------------------------- lesson 01
def check_kl_to_standard_normal(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row, against the closed form, its gradient and the usual slips."""
    name = "KL to N(0, I)"
    mu = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.3, -0.7], [0.0, 0.0, 0.0]], dtype=torch.float64)
    lv = torch.tensor([[0.0, -1.0, 0.5], [1.2, -0.4, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    m, v = mu.clone().requires_grad_(True), lv.clone().requires_grad_(True)
    out = _tensor_out(name, fn(m, v), (3,), "one KL per row of mu",
                      "sum over the latent dimension (dim=-1), and over nothing else")
    want = gaussian_kl(mu, lv)
    if not _close(out.detach(), want):
        terms = mu.pow(2) + lv.exp() - 1 - lv
        slip = _diagnose(out.detach(), {
            "the factor ½ is missing": terms.sum(1),
            "the −1 per dimension is missing (a standard normal must have KL 0: try μ = 0, log σ² = 0)":
                0.5 * (terms + 1).sum(1),
            "you used σ where σ² belongs (exp(logvar) is already the variance)":
                0.5 * (mu.pow(2) + (0.5 * lv).exp() - 1 - 0.5 * lv).sum(1),
            "−log σ² has the wrong sign": 0.5 * (mu.pow(2) + lv.exp() - 1 + lv).sum(1),
            "you averaged over the latent dimensions; the KL of independent dimensions is their sum":
                0.5 * terms.mean(1),
        })
        _fail(name, f"values {out.detach().numpy().round(4).tolist()}, expected {want.numpy().round(4).tolist()}",
              slip or "KL = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²), with σ² = exp(logvar); it is 0 at μ = 0, log σ² = 0")
    g_mu, g_lv = _grads(name, out, {"mu": m, "logvar": v})
    if not (_close(g_mu, mu) and _close(g_lv, 0.5 * (lv.exp() - 1))):
        _fail(name, "the values are right but the gradient is not", "avoid in-place edits and clamps on the inputs")
    print(f"{name}: correct on 3 rows (values to 1e-8, gradients ∂/∂μ = μ and ∂/∂log σ² = ½(σ² − 1))")


def check_reparameterised_sample(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """z = μ + Lε with batch and sample axes, against the closed form, its gradient and the usual slips."""
    name = "reparameterised sample"
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2, 2, dtype=torch.float64, generator=g)
    scale = torch.tensor([[[0.7, 0.0], [-0.4, 0.3]], [[1.5, 0.0], [0.8, 0.5]]], dtype=torch.float64)
    eps = torch.randn(3, 2, 2, dtype=torch.float64, generator=g)
    m, s = mu.clone().requires_grad_(True), scale.clone().requires_grad_(True)
    out = _tensor_out(name, fn(m, s, eps), (3, 2, 2), "samples × batch × latent, like eps",
                      "L is batch × d × d and eps samples × batch × d: (L @ eps[..., None])[..., 0] keeps eps's shape")
    want = mu + (scale @ eps.unsqueeze(-1)).squeeze(-1)
    if not _close(out.detach(), want):
        slip = _diagnose(out.detach(), {
            "you multiplied by Lᵀ (eps @ L): the sample is μ + L ε with ε a column, (L @ eps[..., None])[..., 0]":
                mu + (eps.unsqueeze(-2) @ scale).squeeze(-2),
            "you used the covariance L Lᵀ: the scale L itself multiplies ε":
                mu + (scale @ scale.transpose(-1, -2) @ eps.unsqueeze(-1)).squeeze(-1),
            "you used only L's diagonal: a correlated q needs all of L": mu + torch.diagonal(scale, 0, -2, -1) * eps,
            "μ is missing": (scale @ eps.unsqueeze(-1)).squeeze(-1),
        })
        _fail(name, f"wrong values (max error {float((out.detach() - want).abs().max()):.3g})",
              slip or "z = μ + L ε: a matrix-vector product per sample and batch row, then add μ")
    g_mu, g_s = _grads(name, out, {"mu": m, "scale_tril": s})
    if not _close(g_mu, torch.full_like(mu, 3.0)):
        _fail(name, "∂z/∂μ is not the identity", "add μ as it is (no detach, no rescaling)")
    print(f"{name}: correct (shape {tuple(out.shape)}, values to 1e-8, gradients reach μ and L)")


# ----------------------------------------------------------------------------- lesson 04b
def check_fixed_point_update(fn: Callable[..., np.ndarray]) -> None:
    """One encoder + decoder update of the kernel toy, against kernel_toy's, at a moderate and a tiny β."""
    name = "fixed-point update"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2))
    grid = kt.latent_grid(7, lim=2.0)
    psi = rng.normal(size=(len(grid.prior), 2))
    for beta in (0.7, 1e-3):
        out = np.asarray(fn(x, psi, grid.log_prior, beta))
        if out.shape != psi.shape:
            _fail(name, f"returned shape {out.shape}, expected {psi.shape} (one decoded point per grid point)",
                  "the decoder g(z_b) = Σᵢ w_i(b) xᵢ is G×D: weights (n×G) transposed times the data (n×D)")
        if not np.isfinite(out).all():
            _fail(name, f"NaN or inf at β = {beta:g}",
                  "work in the log domain: subtract the largest log term before np.exp (or scipy.special.logsumexp)")
        want = kt.decoder_step(x, kt.encoder_step(x, psi, grid.log_prior, beta))
        if np.allclose(out, want, atol=1e-8):
            continue
        sq = kt.sq_dists(x, psi)
        wrong_norm = np.exp(grid.log_prior - sq / (2 * beta))
        wrong_norm = wrong_norm / wrong_norm.sum(0, keepdims=True)
        variants = {
            "the temperature enters as 2β: q ∝ π(z) exp(−‖x − g‖²/(2β))":
                kt.decoder_step(x, kt.encoder_step(x, psi, grid.log_prior, beta / 2)),
            "the prior π_b is missing from the encoder": kt.decoder_step(x, kt.encoder_step(x, psi, 0 * grid.log_prior,
                                                                                             beta)),
            "the decoder weights must sum to 1 over the data at each z_b (you normalised q over the data only)":
                wrong_norm.T @ x,
        }
        slip = next((h for h, v in variants.items() if np.allclose(out, v, atol=1e-6)), None)
        _fail(name, f"wrong decoded points at β = {beta:g} (max error {np.abs(out - want).max():.3g})",
              slip or "encoder: log q(z_b|xᵢ) = log π_b − ‖xᵢ − ψ_b‖²/(2β), normalised over b; decoder: "
                      "g(z_b) = Σᵢ q(z_b|xᵢ) xᵢ / Σⱼ q(z_b|xⱼ)")
    print(f"{name}: correct at β = 0.7 and at β = 0.001 (max difference from kernel_toy's < 1e-8)")


def check_predicted_beta_c(value: float, pair: np.ndarray) -> None:
    """A predicted β_c for two data points, against λ_max of their (1/n) covariance."""
    name = "predicted β_c"
    if value is None or not np.isscalar(value):
        _fail(name, f"predicted_beta_c is {value!r}", "assign a number, e.g. predicted_beta_c = 0.5")
    want = kt.critical_beta(pair)
    if abs(value / want - 1) < 0.01:
        print(f"{name}: {value:.4g} is right (λ_max of the 1/n covariance = {want:.4g})")
        return
    d2 = float(((pair[0] - pair[1]) ** 2).sum())
    slips = {2 * want: "twice too large: divide the covariance by n (the empirical distribution), not n − 1; and "
                       "this lesson's β is σ²β_KL, half of lesson 03's",
             d2: "that is the squared distance ‖x₁ − x₂‖²; each point sits at ±(x₁ − x₂)/2 from the mean",
             np.sqrt(d2): "that is the distance ‖x₁ − x₂‖; β has units of squared x",
             np.sqrt(want): "that is a standard deviation; β_c is a variance (λ_max of Cov x)"}
    hint = next((h for v, h in slips.items() if abs(value / v - 1) < 0.01), "β_c = λ_max(Cov x), Cov with 1/n")
    _fail(name, f"{value:.4g} is not β_c", hint)
