"""Lesson 03's tools: c and β as one knob, rate and distortion on held-out data, σ-VAE, active units.

With a Gaussian decoder N(x; x̂, c·I) and a summed squared error the negative ELBO is
‖x − x̂‖²/(2c) + KL. Multiplying by 2c (which moves no optimum) gives ‖x − x̂‖² + 2c·KL: a β-VAE
with β = 2c. A per-pixel *mean* squared error instead divides the distortion by the D pixels,
which is a β-VAE with β multiplied by D. This module measures what each setting buys: the rate
(KL in nats) and the distortion (squared error per image) on held-out data, the calibrated
variance c* (σ-VAE, Rybkin et al. 2021), the number of active latent units, and how good the
prior samples look to a fixed classifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .losses import gaussian_kl, gaussian_nll, squared_error, vae_terms

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
    was_training = model.training
    model.train()
    la = _with_noise_seed(seed, lambda: loss_a(model, x))
    lb = _with_noise_seed(seed, lambda: loss_b(model, x))
    ga, gb = flat_gradient(model, la), flat_gradient(model, lb)
    model.train(was_training)
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
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = {"rate": 0.0, "distortion": 0.0, "distortion_mean": 0.0, "mean_abs_mu": 0.0}
    n = x.shape[0]
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        mu, logvar = model.encode(xb)
        sums["rate"] += float(gaussian_kl(mu, logvar).sum())
        sums["mean_abs_mu"] += float(mu.norm(dim=1).sum())
        sums["distortion_mean"] += float(squared_error(xb, model.decode(mu)).sum())
        for _ in range(n_samples):
            eps = torch.randn(mu.shape, generator=gen).to(mu.device, mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
            sums["distortion"] += float(squared_error(xb, model.decode(z)).sum()) / n_samples
    model.train(was_training)
    out = {k: v / n for k, v in sums.items()}
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
    was_training = model.training
    model.eval()
    mus = torch.cat([model.encode(x[i:i + batch_size])[0] for i in range(0, x.shape[0], batch_size)])
    model.train(was_training)
    return mus.double().var(dim=0).float().cpu()


def active_units(model: nn.Module, x: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent units whose posterior mean varies across the data by more than ``threshold``."""
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    return int((latent_activity(model, x) > threshold).sum())


# ----------------------------------------------------------------------------- how good are prior samples?
class DigitClassifier(nn.Module):
    """A small fixed MLP classifier: a yardstick for prior samples (confidence and class spread)."""

    def __init__(self, image_shape: tuple[int, ...], n_classes: int = 10, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 10, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0) -> DigitClassifier:
    """Train a DigitClassifier on labelled images (cross-entropy, Adam) and return it in eval mode."""
    from .train import fit

    if labels.dim() != 1:
        raise ValueError(f"train_classifier needs class labels of shape (N,), got {tuple(labels.shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = DigitClassifier(tuple(images.shape[1:]), int(labels.max()) + 1).to(images.device)

    def loss_fn(model, batch):
        logits = model(batch[0])
        return {"loss": F.cross_entropy(logits, batch[1]),
                "acc": (logits.argmax(1) == batch[1]).float().mean()}

    fit(clf, loss_fn, [images, labels], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=False)
    return clf.eval()


@torch.no_grad()
def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` the classifier labels correctly."""
    return float((classifier(images).argmax(1) == labels).float().mean())


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
    a = samples.flatten(1).double()
    b = reference.flatten(1).double()
    best = []
    for i in range(0, a.shape[0], batch_size):
        best.append(torch.cdist(a[i:i + batch_size], b).min(dim=1).values.pow(2))
    return torch.cat(best).float()


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
