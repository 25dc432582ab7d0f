"""Lesson 03's tools: c and β as one knob, rate and distortion on held-out data, σ-VAE, active units.

With a Gaussian decoder N(x; x̂, c·I) and a summed squared error the negative ELBO is
‖x − x̂‖²/(2c) + KL. Multiplying by 2c (which moves no optimum) gives ‖x − x̂‖² + 2c·KL: a β-VAE
with β = 2c. A per-pixel *mean* squared error instead divides the distortion by the D pixels,
which is a β-VAE with β multiplied by D. This module measures what each setting buys: the rate
(KL in nats) and the distortion (squared error per image) on held-out data, the calibrated
variance c* (σ-VAE, Rybkin et al. 2021), the number of active latent units, and how good the
prior samples look to a fixed classifier (``vaecourse.classifier``); ``c_widget`` lets a reader
move between the models of a c sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import ipywidgets as W
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .batching import batched_apply
from .losses import gaussian_kl, gaussian_nll, squared_error, vae_terms
from .plots import latent_plane, tile
from .train import model_mode
from .widgets import LiveImage

Terms = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- c and β are one knob
def beta_from_c(c: float) -> float:
    """The β of the summed-squared-error β-VAE that trains like a Gaussian decoder of variance c: β = 2c."""
    if c <= 0:
        raise ValueError(f"the decoder variance c must be positive, got {c}")
    return 2.0 * c


def c_from_beta(beta: float) -> float:
    """The decoder variance c that a summed-squared-error β-VAE implies: c = β/2."""
    if beta <= 0:
        raise ValueError(f"beta must be positive to have an equivalent variance, got {beta}")
    return beta / 2.0


def mean_reduction_beta(beta: float, n_pixels: int) -> float:
    """The summed-error β that ``mse_mean + beta·KL`` really trains: β·D (D = pixels per image)."""
    if n_pixels < 1:
        raise ValueError(f"n_pixels must be at least 1, got {n_pixels}")
    return beta * n_pixels


def beta_vae_terms(model: nn.Module, x: torch.Tensor, beta: float = 1.0) -> Terms:
    """‖x − x̂‖² + β·KL per batch: the Gaussian objective with c = ½ and the KL weighted by β."""
    return vae_terms(model, x, c=0.5, beta=beta)


def beta_vae_loss(beta: float = 1.0) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], Terms]:
    """``loss_fn`` for ``fit``: the β-VAE on the summed squared error (β = 2c of the Gaussian decoder)."""
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")

    def loss_fn(model, batch):
        return beta_vae_terms(model, batch[0], beta)

    return loss_fn


def per_pixel_mean_terms(model: nn.Module, x: torch.Tensor, beta: float = 1.0) -> Terms:
    """The common tutorial loss ``F.mse_loss(x̂, x) + β·KL``: the squared error averaged over pixels.

    It equals (‖x − x̂‖² + β·D·KL)/D, a summed-error β-VAE with β·D (β = 784 on MNIST for β = 1).
    """
    out = model(x)
    kl = gaussian_kl(out.mu, out.logvar)
    mse = F.mse_loss(out.x_hat, x)
    return {"loss": mse + beta * kl.mean(), "mse": mse, "kl": kl.mean(),
            "sq_err": squared_error(x, out.x_hat).mean()}


def _with_noise_seed(seed: int, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run ``fn`` with torch's global RNG seeded (and restored after), so two losses see the same ε."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


@dataclass
class GradientComparison:
    """Two losses on the same model, batch and noise: their values, gradients and how they relate."""

    loss_a: float
    loss_b: float
    value_ratio: float      # loss_b / loss_a
    norm_ratio: float       # ‖∇b‖ / ‖∇a‖
    cosine: float           # cos(∇a, ∇b)
    max_deviation: float    # max |∇b − k·∇a| / max |∇b| with k = value_ratio

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def flat_gradient(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """∂loss/∂θ for every trainable parameter, flattened into one vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def compare_gradients(model: nn.Module, x: torch.Tensor, loss_a: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                      loss_b: Callable[[nn.Module, torch.Tensor], torch.Tensor], seed: int = 0) -> GradientComparison:
    """Evaluate two scalar losses with identical reparameterisation noise and compare their gradients.

    If ``loss_b = k·loss_a`` the gradients are parallel (cosine 1) with norm ratio k, so both
    losses have the same minimisers and the same SGD path once the step size is divided by k.
    """
    with model_mode(model, training=True):
        la = _with_noise_seed(seed, lambda: loss_a(model, x))
        lb = _with_noise_seed(seed, lambda: loss_b(model, x))
        ga, gb = flat_gradient(model, la), flat_gradient(model, lb)
    k = float(lb.detach() / la.detach())
    return GradientComparison(
        loss_a=float(la.detach()), loss_b=float(lb.detach()), value_ratio=k,
        norm_ratio=float(gb.norm() / ga.norm()),
        cosine=float(F.cosine_similarity(ga, gb, dim=0)),
        max_deviation=float((gb - k * ga).abs().max() / gb.abs().max()))


# ----------------------------------------------------------------------------- held-out rate and distortion
@torch.no_grad()
def rate_distortion(model: nn.Module, x: torch.Tensor, seed: int = 0, n_samples: int = 1,
                    batch_size: int = 1000) -> dict[str, float]:
    """Rate, distortion and latent spread of ``model`` on images ``x`` (held-out), as plain floats.

    ``rate``: mean KL(q(z|x) ‖ N(0, I)) in nats per image. ``distortion``: E_q ‖x − g(z)‖² per image
    with z drawn from q (``n_samples`` draws, fixed ``seed``) — the distortion the ELBO sees;
    ``distortion_mean``: the same at z = μ. ``mse_per_pixel`` = distortion / D, which is also the
    calibrated decoder variance c* of this model. ``mean_abs_mu``: mean ‖μ‖ (distance of the codes
    from the prior's centre).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    gen = torch.Generator().manual_seed(seed)

    def per_image(xb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, logvar = model.encode(xb)
        sampled = torch.zeros(xb.shape[0], dtype=xb.dtype, device=xb.device)
        for _ in range(n_samples):
            eps = torch.randn(mu.shape, generator=gen).to(mu.device, mu.dtype)  # CPU draws: the same on any device
            sampled = sampled + squared_error(xb, model.decode(mu + torch.exp(0.5 * logvar) * eps))
        return (gaussian_kl(mu, logvar), sampled / n_samples, squared_error(xb, model.decode(mu)), mu.norm(dim=1))

    with model_mode(model, training=False):
        per = batched_apply(per_image, x, batch_size)
    out = {k: float(v.sum()) / x.shape[0]
           for k, v in zip(("rate", "distortion", "distortion_mean", "mean_abs_mu"), per)}
    out["mse_per_pixel"] = out["distortion"] / x[0].numel()
    return out


def optimal_c(distortion: float | torch.Tensor, n_pixels: int) -> float:
    """The decoder variance that maximises the Gaussian likelihood: c* = E‖x − x̂‖² / D (MSE per pixel)."""
    if n_pixels < 1:
        raise ValueError(f"n_pixels must be at least 1, got {n_pixels}")
    return float(torch.as_tensor(distortion, dtype=torch.float64).mean()) / n_pixels


def gaussian_neg_elbo(rate: float, distortion: float, c: float, n_pixels: int) -> float:
    """−ELBO in nats per image for a Gaussian decoder of variance c: D/(2c)·MSE + D/2·log(2πc) + rate."""
    if c <= 0:
        raise ValueError(f"the decoder variance c must be positive, got {c}")
    return distortion / (2 * c) + 0.5 * n_pixels * math.log(2 * math.pi * c) + rate


# ----------------------------------------------------------------------------- σ-VAE: c calibrated to the error
def sigma_vae_terms(model: nn.Module, x: torch.Tensor, min_c: float = 1e-6) -> Terms:
    """The σ-VAE objective: −log N(x; x̂, c*·I) + KL with c* = the batch's squared error per pixel.

    Plugging in the closed-form c* makes the likelihood term D/2·(1 + log 2πc*), so the model
    trains on D/2·log(MSE) + KL: the reconstruction weight 1/(2c*) rises as the error falls.
    ``c`` in the returned terms is the batch's c*.
    """
    out = model(x)
    sq = squared_error(x, out.x_hat)
    c = (sq.mean() / x[0].numel()).clamp_min(min_c)
    rec = gaussian_nll(x, out.x_hat, c, constant=True)
    kl = gaussian_kl(out.mu, out.logvar)
    return {"loss": (rec + kl).mean(), "rec": rec.mean(), "kl": kl.mean(), "sq_err": sq.mean(), "c": c.detach()}


def sigma_vae_loss(min_c: float = 1e-6) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], Terms]:
    """``loss_fn`` for ``fit``: the σ-VAE with the decoder variance set to the batch MSE per pixel."""
    if min_c <= 0:
        raise ValueError(f"min_c must be positive, got {min_c}")

    def loss_fn(model, batch):
        return sigma_vae_terms(model, batch[0], min_c)

    return loss_fn


# ----------------------------------------------------------------------------- posterior collapse
@torch.no_grad()
def latent_activity(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Var over the data of each posterior mean coordinate, Var_x(E_q[z_j]): near 0 for a collapsed unit."""
    with model_mode(model, training=False):
        mus = batched_apply(lambda xb: model.encode(xb)[0], x, batch_size)
    return mus.double().var(dim=0).float().cpu()


def active_units(model: nn.Module, x: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent units whose posterior mean varies across the data by more than ``threshold``."""
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    return int((latent_activity(model, x) > threshold).sum())


# ----------------------------------------------------------------------------- how good are prior samples?
@torch.no_grad()
def sample_quality(classifier: nn.Module, samples: torch.Tensor, reference: torch.Tensor | None = None,
                   batch_size: int = 1000) -> dict[str, float]:
    """How prior samples look to a fixed classifier, and how far they are from real images.

    ``confidence``: mean max class probability (a real-looking digit is classified confidently);
    ``class_entropy``: entropy in bits of the predicted-class histogram (diversity; log2 10 ≈ 3.32
    when all digits appear equally); ``nn_distance`` (with ``reference``): mean squared distance
    from each sample to its nearest reference image.
    """
    probs = F.softmax(classifier(samples), dim=1)
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log2()).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    out = {"confidence": float(probs.max(1).values.mean()), "class_entropy": entropy}
    if reference is not None:
        out["nn_distance"] = float(nearest_neighbour_distance(samples, reference, batch_size).mean())
    return out


@torch.no_grad()
def nearest_neighbour_distance(samples: torch.Tensor, reference: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """For each sample, min over reference images of ‖sample − reference‖² (per image)."""
    b = reference.flatten(1).double()
    nearest = batched_apply(lambda a: torch.cdist(a, b).min(dim=1).values.pow(2), samples.flatten(1).double(),
                            batch_size)
    return nearest.float()


@torch.no_grad()
def sharpness(images: torch.Tensor) -> float:
    """Mean squared difference between neighbouring pixels (per image): blur lowers it, real digits set the bar."""
    if images.dim() != 4:
        raise ValueError(f"sharpness takes images N×C×H×W, got shape {tuple(images.shape)}")
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2).flatten(1).sum(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2).flatten(1).sum(1)
    return float((dx + dy).mean())


@torch.no_grad()
def coverage_distance(samples: torch.Tensor, reference: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean over reference images of the squared distance to the nearest sample: large when samples miss classes."""
    return float(nearest_neighbour_distance(reference, samples, batch_size).mean())


# ----------------------------------------------------------------------------- reading a sweep
def self_consistent_c(c_values: list[float], mse_per_pixel: list[float]) -> float:
    """The c at which a sweep's held-out MSE per pixel equals c (log-log interpolation); NaN if never crossed.

    A model trained with that c is already calibrated: c* = MSE(c). The σ-VAE should land there.
    """
    if len(c_values) != len(mse_per_pixel) or len(c_values) < 2:
        raise ValueError("give at least two c values and one MSE per c value")
    pairs = sorted(zip(c_values, mse_per_pixel))
    logc = [math.log(c) for c, _ in pairs]
    gap = [math.log(m) - math.log(c) for c, m in pairs]  # > 0 where the model's error exceeds its c
    for i in range(len(pairs) - 1):
        if gap[i] == 0:
            return pairs[i][0]
        if gap[i] * gap[i + 1] < 0:
            t = gap[i] / (gap[i] - gap[i + 1])
            return math.exp(logc[i] + t * (logc[i + 1] - logc[i]))
    return pairs[-1][0] if gap[-1] == 0 else float("nan")


def rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties get their average rank): +1 when b rises with a, −1 when it falls."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("rank_correlation needs two sequences of the same length, at least 2")

    def ranks(v: list[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        r = torch.empty_like(t)
        order = torch.argsort(t)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for value in t.unique():  # average rank among ties
            tied = t == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else float("nan")


# ----------------------------------------------------------------------------- the live widget
def c_widget(models: dict[float, nn.Module], z_prior: torch.Tensor, device: torch.device | str = "cpu", *,
             grid: int = 10, lim: float = 3.0) -> LiveImage:
    """A selector over the trained c: that model's prior samples (left) and its decoder on [−lim, lim]² (right).

    ``models`` maps each decoder variance c to a VAE with a 2-D latent. The first grid² rows of
    ``z_prior`` are decoded by every model, so moving c changes only the decoder. The selector's
    values are the c's as text ("0.0001"), which the status line shows as they are.
    """
    if not models:
        raise ValueError("c_widget needs at least one trained model")
    wrong = {c: m.latent_dim for c, m in models.items() if getattr(m, "latent_dim", 2) != 2}
    if wrong:
        raise ValueError(f"the latent plane needs 2-D latents; the models for c = {list(wrong)} have "
                         f"{list(wrong.values())}")
    if z_prior.dim() != 2 or z_prior.shape[0] < grid * grid or z_prior.shape[1] != 2:
        raise ValueError(f"z_prior must hold at least {grid * grid} prior draws of shape N×2, "
                         f"got {tuple(z_prior.shape)}")
    by_label = {f"{c:g}": m for c, m in sorted(models.items())}
    z_samples = z_prior[:grid * grid].to(device)
    z_plane = latent_plane(2, lim, grid).to(device)

    def render(c: str) -> np.ndarray:
        decoder = by_label[c]
        samples = tile(decoder.decode(z_samples).cpu(), nrow=grid)
        plane = tile(decoder.decode(z_plane).cpu(), nrow=grid)
        gap = np.ones((samples.shape[0], 8), dtype=samples.dtype)
        return np.concatenate([samples, gap, plane], axis=1)

    labels = list(by_label)
    selector = W.SelectionSlider(options=labels, value=labels[0], description="c", continuous_update=False)
    return LiveImage(render, {"c": selector}, scale=1, title=f"prior samples | decoder on [-{lim:g}, {lim:g}]²")
