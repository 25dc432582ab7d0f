"""The checks that follow the exercises of lesson 06 (VAC and IntroVAC): VAC's terms per image, the edit along a
classifier's normal, and one Langevin step. Each runs the student's function on a fixed input, compares it with the
closed form, and when it is wrong says what (shape, value, gradient) with a hint.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..losses import gaussian_kl
from .common import _close, _diagnose, _fail, _grads, _tensor_out

__all__ = ["check_vac_terms", "check_edit_along", "check_langevin_step"]


# ----------------------------------------------------------------------------- exercise 1: VAC's terms
def _vac_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(6)
    return {"x": torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=g),
            "x_hat": torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=g),
            "mu": torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 0.0]], dtype=torch.float64),
            "logvar": torch.tensor([[0.0, -1.0], [1.2, -0.4], [0.0, 0.0]], dtype=torch.float64),
            "logits": torch.tensor([[2.0, -0.5], [-1.5, 0.7], [0.0, 3.0]], dtype=torch.float64),
            "y": torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)}


def _vac_slips(which: str, a: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The usual wrong answers for one of the three terms, each with the hint that names it."""
    err, mu, lv, lo, y = a["x"] - a["x_hat"], a["mu"], a["logvar"], a["logits"], a["y"]
    kl = gaussian_kl(mu, lv)
    return {
        "l1": {"you summed |x − x̂| over the pixels: L_AE is the mean per pixel (β_AE = 100 is set for a mean)":
               err.abs().flatten(1).sum(1),
               "you squared the error: L1 is the mean of |x − x̂|, not of (x − x̂)²": err.pow(2).flatten(1).mean(1)},
        "bce": {"y and 1 − y are swapped: the loss of label 1 is −log σ(ℓ)":
                F.binary_cross_entropy_with_logits(lo, 1 - y, reduction="none"),
                "the sign: a negative log-likelihood is ≥ 0":
                    -F.binary_cross_entropy_with_logits(lo, y, reduction="none")},
        "kl": {"you divided by the latent size: return nats per image (the objective applies the paper's β_reg/d)":
               kl / mu.shape[1],
               "the factor ½ is missing": 2 * kl,
               "the −1 per dimension is missing (a standard normal must have KL 0)": kl + 0.5 * mu.shape[1]},
    }[which]


def check_vac_terms(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """(l1, bce, kl): L1 per pixel per image, the classifier's BCE per image and attribute, KL per image."""
    name = "VAC terms"
    a = _vac_inputs()
    leaves = {k: a[k].clone().requires_grad_(True) for k in ("x_hat", "mu", "logvar", "logits")}
    out = fn(a["x"], leaves["x_hat"], leaves["mu"], leaves["logvar"], leaves["logits"], a["y"])
    if not (isinstance(out, tuple | list) and len(out) == 3):
        _fail(name, f"returned {type(out).__name__}", "return the three terms in order: return l1, bce, kl")
    per = ("one per image", "one value per image: the objective takes the batch means, do not average here")
    want = {"l1": (a["x"] - a["x_hat"]).abs().flatten(1).mean(1),
            "bce": F.binary_cross_entropy_with_logits(a["logits"], a["y"], reduction="none"),
            "kl": gaussian_kl(a["mu"], a["logvar"])}
    shapes = {"l1": ((3,), *per), "kl": ((3,), *per),
              "bce": ((3, 2), "images × attributes", "one value per image and attribute: the paper averages them, "
                                                    "the calibrated loss sums them, so do neither here")}
    for (key, value), got in zip(want.items(), out):
        got = _tensor_out(f"{name} ({key})", got, *shapes[key])
        if not _close(got.detach(), value):
            _fail(f"{name} ({key})", f"wrong values (max error {float((got.detach() - value).abs().max()):.3g})",
                  _diagnose(got.detach(), _vac_slips(key, a)) or {
                      "l1": "l1 = mean over an image's pixels of |x − x̂|: (x - x_hat).abs().flatten(1).mean(1)",
                      "bce": "−[y log σ(ℓ) + (1 − y) log(1 − σ(ℓ))] per entry, from the logits",
                      "kl": "KL = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²) summed over the latent units"}[key])
    grads = _grads(name, sum(t.sum() for t in out), leaves)
    if not _close(grads[3], torch.sigmoid(a["logits"]) - a["y"]):
        _fail(name, "the BCE's values are right but its gradient is not σ(ℓ) − y", "compute it from the logits with "
              "torch operations (no clamp on σ)")
    _check_stable_bce(fn, a)
    print(f"{name}: correct (L1 per pixel and KL per image, BCE per image and attribute, to 1e-8; gradients reach x̂, "
          "μ, log σ² and the logits; stable at logits ±40)")


def _check_stable_bce(fn: Callable, a: dict[str, torch.Tensor]) -> None:
    """At logits ±40 on the wrong side the BCE is 40 nats: log(1 − σ(40)) in floating point is log 0."""
    logits = torch.tensor([[40.0, -40.0], [-40.0, 40.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    bce = fn(a["x"], a["x_hat"], a["mu"], a["logvar"], logits, y)[1].detach()
    want = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if not _close(bce, want, 1e-6):
        _fail("VAC terms (bce)", f"at logit 40 with label 0 the BCE is {bce[0, 0].item():.4g}, expected 40 nats",
              "σ(40) rounds to 1, so log(1 − σ(ℓ)) is log 0: use F.binary_cross_entropy_with_logits (or "
              "softplus(ℓ) − y·ℓ), which never forms σ(ℓ)")


# ----------------------------------------------------------------------------- exercise 2: the edit
def check_edit_along(fn: Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]) -> None:
    """z + δ·w/‖w‖ for a number δ and a column of δ's, against the closed form and the usual slips."""
    name = "edit along w/‖w‖"
    z0 = torch.tensor([[0.5, -1.0, 0.2, 1.5], [2.0, 0.3, -0.7, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([1.5, 0.0, -2.0, 0.0], dtype=torch.float64)      # ‖w‖ = 2.5
    for delta in (1.5, torch.tensor([[2.0], [-1.0], [-3.0]], dtype=torch.float64)):
        z = z0.clone().requires_grad_(True)
        out = _tensor_out(name, fn(z, w, delta), (3, 4), "one edited code per code, like z",
                          "w is one vector (latent_dim,) and δ a number or a column (N × 1): they broadcast over z")
        unit = w / w.norm()
        want = z0 + delta * unit
        if not _close(out.detach(), want):
            slip = _diagnose(out.detach(), {
                "you did not divide by ‖w‖: a step of δ must be δ latent units, whatever the classifier's scale":
                    z0 + delta * w,
                "you divided by ‖w‖²: that moves the logit by δ, but the edit moves the code by δ along the unit "
                "normal": z0 + delta * w / w.norm() ** 2,
                "the sign: δ > 0 must raise the logit w·z + b (add the attribute), δ < 0 lower it (remove it)":
                    z0 - delta * unit,
            })
            moved = ((out.detach() - z0) @ w).tolist()
            _fail(name, f"the logit w·z moved by {[round(m, 4) for m in moved]}, expected δ·‖w‖ = "
                        f"{[round(m, 4) for m in ((want - z0) @ w).tolist()]}",
                  slip or "z + δ·w/‖w‖: w.norm() is ‖w‖; δ multiplies the unit vector")
        (g,) = _grads(name, out, {"z": z})
        if not _close(g, torch.ones_like(z0)):
            _fail(name, "∂(edit)/∂z is not the identity", "add the step to z as it is (no detach, no rescaling of z)")
    print(f"{name}: correct (δ = 1.5 and a column of δ's, ±: the logit w·z moves by δ·‖w‖ = δ·2.5, the code by δ)")


# ----------------------------------------------------------------------------- exercise 3: a Langevin step
def check_langevin_step(fn: Callable[[torch.Tensor, torch.Tensor, float, torch.Tensor], torch.Tensor]) -> None:
    """One step z − α∇U + √(2α)·ε on fixed values, then chains on U = ½z²: their variance must be about 1."""
    name = "Langevin step"
    g = torch.Generator().manual_seed(3)
    z, grad, noise = (torch.randn(4, 2, dtype=torch.float64, generator=g) for _ in range(3))
    alpha = 0.01
    out = _tensor_out(name, fn(z, grad, alpha, noise), (4, 2), "one new state per chain, like z",
                      "the step is elementwise: z, the gradient and the noise all have z's shape")
    want = z - alpha * grad + math.sqrt(2 * alpha) * noise
    if not _close(out, want):
        slip = _diagnose(out, {
            "the noise's scale is √(2α), not √α (the diffusion dz = −∇U dt + √2 dW)":
                z - alpha * grad + alpha ** 0.5 * noise,
            "the noise's scale is √(2α), not 2α (2α is its variance)": z - alpha * grad + 2 * alpha * noise,
            "the sign: step *down* the energy, z − α∇U": z + alpha * grad + math.sqrt(2 * alpha) * noise,
            "the noise is missing: without it the chain descends to the mode instead of sampling":
                z - alpha * grad,
        })
        _fail(name, f"wrong values (max error {float((out - want).abs().max()):.3g})",
              slip or "z_new = z − α·∇U(z) + √(2α)·ε with the grad_u and the noise you are given (a fresh draw "
                      "cannot be compared)")
    var = _stationary_variance(fn, alpha)
    if not 0.9 < var < 1.15:
        _fail(name, f"chains on U(z) = ½z² (target N(0, 1)) reached variance {var:.3f}",
              "the variance must be about 1: check the noise scale √(2α) against the step α")
    print(f"{name}: correct (values to 1e-8; 2000 chains on U = ½z² with α = 0.1 reach variance {var:.3f}: N(0, 1) "
          "wants 1, this step size 1/(1 − α/2) = 1.053)")


def _stationary_variance(fn: Callable, alpha: float, chains: int = 2000, steps: int = 400) -> float:
    g = torch.Generator().manual_seed(4)
    z = torch.zeros(chains, 1, dtype=torch.float64)
    for _ in range(steps):
        z = fn(z, z, alpha * 10, torch.randn(chains, 1, dtype=torch.float64, generator=g))  # ∇(½z²) = z
    return float(z.var())
