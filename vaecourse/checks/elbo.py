"""The checks that follow the exercises of lessons 01 (the ELBO) and 02 (AE vs VAE): the KL, the
reparameterised sample, the ELBO's terms, the Gaussian constant."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..losses import gaussian_kl
from .common import _close, _diagnose, _fail, _grads, _tensor_out

__all__ = [
    "check_kl_to_standard_normal",
    "check_reparameterised_sample",
    "check_diagonal_sample",
    "check_elbo_terms",
    "check_gaussian_constant",
]


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


# ----------------------------------------------------------------------------- lesson 02
def check_diagonal_sample(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """z = μ + σ ⊙ ε from μ and log σ², against the closed form, its gradient and the usual slips."""
    name = "reparameterised sample (diagonal)"
    mu = torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 0.0]], dtype=torch.float64)
    lv = torch.tensor([[0.0, -1.0], [1.2, -0.4], [-2.0, 0.7]], dtype=torch.float64)
    eps = torch.tensor([[0.3, -1.1], [1.5, 0.2], [-0.8, 2.0]], dtype=torch.float64)
    m, v = mu.clone().requires_grad_(True), lv.clone().requires_grad_(True)
    out = _tensor_out(name, fn(m, v, eps), (3, 2), "batch × latent, like mu",
                      "z has one value per latent coordinate: μ + σ ⊙ ε elementwise, no sum")
    sigma = (0.5 * lv).exp()
    want = mu + sigma * eps
    if not _close(out.detach(), want):
        slip = _diagnose(out.detach(), {
            "you scaled ε by the variance σ² = exp(logvar); the scale is the standard deviation σ = exp(½·logvar)":
                mu + lv.exp() * eps,
            "logvar is log σ², not σ: σ = exp(½·logvar)": mu + lv * eps,
            "the sign of the exponent: σ = exp(+½·logvar)": mu + (-0.5 * lv).exp() * eps,
            "μ is missing: z = μ + σ ⊙ ε": sigma * eps,
            "σ is missing: the noise must be scaled by σ = exp(½·logvar)": mu + eps,
        })
        _fail(name, f"wrong values (max error {float((out.detach() - want).abs().max()):.3g})",
              slip or "z = μ + exp(½·logvar) ⊙ ε with the eps you are given (a fresh torch.randn draws other noise, "
                      "and the check compares values)")
    g_mu, g_lv = _grads(name, out, {"mu": m, "logvar": v})
    if not (_close(g_mu, torch.ones_like(mu)) and _close(g_lv, 0.5 * sigma * eps)):
        _fail(name, "the values are right but the gradient is not",
              "∂z/∂μ = 1 and ∂z/∂log σ² = ½σε: avoid in-place edits, clamps and detach on the inputs")
    print(f"{name}: correct on 3 rows (values to 1e-8, gradients ∂z/∂μ = 1 and ∂z/∂log σ² = ½σε)")


def check_elbo_terms(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """(rec, kl) per image: ‖x − x̂‖²/(2c) summed over pixels and the closed-form KL, with the usual slips."""
    name = "ELBO terms"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=g)
    x_hat0 = torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=g)
    mu = torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 0.0]], dtype=torch.float64)
    lv = torch.tensor([[0.0, -1.0], [1.2, -0.4], [0.0, 0.0]], dtype=torch.float64)
    for c in (0.05, 0.5):
        xh, m, v = (t.clone().requires_grad_(True) for t in (x_hat0, mu, lv))
        out = fn(x, xh, m, v, c)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            size = f" of length {len(out)}" if hasattr(out, "__len__") else ""
            _fail(name, f"returned {type(out).__name__}{size}", "return the two terms as a pair: return rec, kl")
        per_image = "one value per image: the terms are summed over an image's pixels (or latent units), " \
                    "not averaged over the batch (the loss takes the batch mean)"
        rec = _tensor_out(name + " (rec)", out[0], (3,), "one rec per image", per_image + "; .flatten(1).sum(1)")
        kl = _tensor_out(name + " (kl)", out[1], (3,), "one KL per image", per_image + "; sum over dim 1")
        sq = (x - x_hat0).pow(2).flatten(1).sum(1)
        want_rec = sq / (2 * c)
        if not _close(rec.detach(), want_rec):
            slip = _diagnose(rec.detach(), {
                "the factor 2 is missing: −log N(x; x̂, cI) has ‖x − x̂‖²/(2c)": sq / c,
                "you averaged over the pixels: the likelihood of an image is a product over its pixels, so its log "
                "is a sum (a mean multiplies β by the number of pixels; lesson 03)": sq / x[0].numel() / (2 * c),
                "that is ‖x − x̂‖² without the 1/(2c)": sq,
                "you multiplied by 2c; divide": sq * 2 * c,
                "the absolute error: square the differences": (x - x_hat0).abs().flatten(1).sum(1) / (2 * c),
            })
            _fail(name, f"rec = {rec.detach().numpy().round(4).tolist()} at c = {c}, expected "
                        f"{want_rec.numpy().round(4).tolist()}",
                  slip or "rec = ‖x − x̂‖²/(2c), the squared error summed over all pixels of an image")
        terms = mu.pow(2) + lv.exp() - 1 - lv
        want_kl = 0.5 * terms.sum(1)
        if not _close(kl.detach(), want_kl):
            slip = _diagnose(kl.detach(), {
                "the factor ½ is missing": terms.sum(1),
                "the −1 per dimension is missing (try μ = 0, log σ² = 0: KL must be 0)": 0.5 * (terms + 1).sum(1),
                "you used σ where σ² belongs (exp(logvar) is already the variance)":
                    0.5 * (mu.pow(2) + (0.5 * lv).exp() - 1 - 0.5 * lv).sum(1),
                "−log σ² has the wrong sign": 0.5 * (mu.pow(2) + lv.exp() - 1 + lv).sum(1),
                "you averaged over the latent units; the KL of independent units is their sum": 0.5 * terms.mean(1),
            })
            _fail(name, f"kl = {kl.detach().numpy().round(4).tolist()}, expected {want_kl.numpy().round(4).tolist()}",
                  slip or "KL = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²) with σ² = exp(logvar)")
        (g_xh,) = _grads(name + " (rec)", rec, {"x_hat": xh})
        g_mu, g_lv = _grads(name + " (kl)", kl, {"mu": m, "logvar": v})
        if not (_close(g_xh, (x_hat0 - x) / c) and _close(g_mu, mu) and _close(g_lv, 0.5 * (lv.exp() - 1))):
            _fail(name, "the values are right but a gradient is not",
                  "∂rec/∂x̂ = (x̂ − x)/c, ∂kl/∂μ = μ, ∂kl/∂log σ² = ½(σ² − 1): avoid in-place edits and clamps")
    print(f"{name}: correct at c = 0.05 and c = 0.5 (rec and KL per image to 1e-8, gradients to x̂, μ and log σ²)")


def check_gaussian_constant(fn: Callable[[int, float], float]) -> None:
    """D/2·log(2πc): the part of −log N(x; x̂, cI) that the loss leaves out."""
    name = "Gaussian constant"
    for n, c in ((784, 0.05), (3, 1.0), (10, 2.0)):
        out = fn(n, c)
        try:
            value = float(out)
        except (TypeError, ValueError):
            _fail(name, f"returned {type(out).__name__}, not a number", "return D/2·log(2πc) as a float")
        want = 0.5 * n * np.log(2 * np.pi * c)
        if abs(value - want) <= 1e-6 * max(1.0, abs(want)):
            continue
        slips = {
            0.5 * n * np.log(c): "log(2πc), not log c: the 2π of the Gaussian's normaliser belongs in it",
            n * np.log(2 * np.pi * c): "the ½ is missing: each pixel contributes ½·log(2πc)",
            0.5 * np.log(2 * np.pi * c): "that is one pixel's constant; an image has D of them",
            -want: "the sign: −log N(x; x̂, cI) = ‖x − x̂‖²/(2c) + D/2·log(2πc)",
            0.5 * n * np.log2(2 * np.pi * c): "that is in bits; the course counts nats (natural log)",
            0.5 * n * np.log(2 * np.pi * c * c): "c is already the variance: log(2πc), not log(2πc²)",
        }
        hint = next((h for v, h in slips.items() if abs(value - v) <= 1e-6 * max(1.0, abs(v))),
                    "−log N(x; x̂, cI) = ‖x − x̂‖²/(2c) + D/2·log(2πc); return the second term")
        _fail(name, f"{value:.4g} for D = {n}, c = {c:g}; expected {want:.4g}", hint)
    print(f"{name}: correct (D/2·log(2πc) = {0.5 * 784 * np.log(2 * np.pi * 0.05):.2f} nats for D = 784, c = 0.05)")
