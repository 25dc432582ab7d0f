"""Monte Carlo bounds (ELBO, importance-weighted), the gradient estimators lesson 01 compares, and the amortised
encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .model import (
    LOG_2PI,
    LinearGaussian,
    check_samples,
    diag_scale_tril,
    log_normal,
    sample_normal,
)


# ----------------------------------------------------------------------------- Monte Carlo bounds
def elbo_monte_carlo(model: LinearGaussian, x: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor,
                     n_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO ≈ (1/S) Σₛ [log p(x, zₛ) − log q(zₛ|x)], zₛ ~ q: (estimate, standard error) per example."""
    check_samples(n_samples, 2)
    z = sample_normal(mean, scale_tril, n_samples, generator)
    terms = model.log_joint(x, z) - log_normal(z, mean, scale_tril)
    return terms.mean(0), terms.std(0) / math.sqrt(n_samples)


def importance_weighted_bound(model: LinearGaussian, x: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor,
                              k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log (1/K) Σₖ p(x, zₖ)/q(zₖ|x): a bound that tightens toward log p(x) as K grows (K = 1: the ELBO)."""
    check_samples(k, 1)
    z = sample_normal(mean, scale_tril, k, generator)
    log_w = model.log_joint(x, z) - log_normal(z, mean, scale_tril)
    return torch.logsumexp(log_w, 0) - math.log(k)


# ----------------------------------------------------------------------------- gradient estimators
ESTIMATORS = ("reparam", "score", "score_baseline")


def elbo_gradient_samples(model: LinearGaussian, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
                          n_samples: int, n_repeats: int, estimator: str = "reparam",
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_repeats`` independent estimates of ∇_(μ, log σ²) ELBO for one x and a diagonal q, each from S draws.

    ``reparam``: z = μ + σε, differentiate log p(x, z) − log q(z) through z (the pathwise gradient).
    ``score``: (1/S) Σₛ [log p(x, zₛ) − log q(zₛ)] ∇ log q(zₛ) (REINFORCE; the zero-mean term E[∇ log q] dropped).
    ``score_baseline``: the same with the mean of the other S − 1 draws subtracted from each fₛ (a
    leave-one-out baseline: still unbiased, far less noisy; needs S ≥ 2).
    Returns an n_repeats × 2d tensor: the μ-gradient then the log σ²-gradient.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    check_samples(n_samples, 2 if estimator == "score_baseline" else 1)
    x = model._x(x).reshape(-1)
    mu = mean.detach().reshape(1, -1).repeat(n_repeats, 1).requires_grad_(True)
    lv = logvar.detach().reshape(1, -1).repeat(n_repeats, 1).requires_grad_(True)
    eps = torch.randn(n_repeats, n_samples, mu.shape[1], dtype=mu.dtype, generator=generator)
    sigma = torch.exp(0.5 * lv)

    def log_q(z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (LOG_2PI + lv[:, None] + (z - mu[:, None]).pow(2) / lv[:, None].exp()).sum(-1)

    if estimator == "reparam":
        z = mu[:, None] + sigma[:, None] * eps
        surrogate = (model.log_joint(x, z) - log_q(z)).mean(1)
    else:
        z = (mu[:, None] + sigma[:, None] * eps).detach()
        logq = log_q(z)
        f = (model.log_joint(x, z) - logq).detach()
        if estimator == "score_baseline":
            f = f - (f.sum(1, keepdim=True) - f) / (n_samples - 1)
        surrogate = (f * logq).mean(1)
    g_mu, g_lv = torch.autograd.grad(surrogate.sum(), (mu, lv))
    return torch.cat([g_mu, g_lv], dim=1)


def exact_elbo_gradient(model: LinearGaussian, x: torch.Tensor, mean: torch.Tensor,
                        logvar: torch.Tensor) -> torch.Tensor:
    """The true ∇_(μ, log σ²) ELBO for one x (autograd through the closed-form ELBO), length 2d."""
    mu = mean.detach().reshape(1, -1).clone().requires_grad_(True)
    lv = logvar.detach().reshape(1, -1).clone().requires_grad_(True)
    value = model.elbo(model._x(x).reshape(1, -1), mu, diag_scale_tril(lv)).sum()
    g_mu, g_lv = torch.autograd.grad(value, (mu, lv))
    return torch.cat([g_mu, g_lv], dim=1).reshape(-1)


def gradient_variance(grads: torch.Tensor) -> float:
    """Total variance of a gradient estimator: Σ over coordinates of the variance across repeats."""
    return float(grads.var(0).sum())


# ----------------------------------------------------------------------------- an amortised encoder
class GaussianEncoder(nn.Module):
    """q(z|x) = N(μ(x), L(x)L(x)ᵀ) from a linear map or a small MLP; ``covariance`` "diag" or "full".

    For probabilistic PCA the exact posterior has a mean linear in x and a constant covariance, so a
    linear encoder with full covariance can reach it exactly; a diagonal one cannot when Λ is not diagonal.
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (), covariance: str = "full"):
        super().__init__()
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        self.latent_dim = latent_dim
        self.covariance = covariance
        dims = [data_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        n_scale = latent_dim if covariance == "diag" else latent_dim * (latent_dim + 1) // 2
        self.head = nn.Linear(dims[-1], latent_dim + n_scale)
        self.register_buffer("tril", torch.tril_indices(latent_dim, latent_dim, -1), persistent=False)
        self.register_buffer("x_mean", torch.zeros(data_dim))
        self.register_buffer("x_proj", torch.eye(data_dim))

    def standardize(self, x: torch.Tensor, whiten: bool = False) -> "GaussianEncoder":
        """Feed the net standardised inputs (x − mean)·P from training data x: well-conditioned inputs train faster.

        P = diag(1/std) per feature, or with ``whiten`` the PCA whitening U·Λ^(-1/2) (decorrelates correlated
        features such as pixels). Scales are floored at a tenth of their typical size, so a direction that is
        constant in training (an image border) cannot blow up an input where it is not.
        """
        x = x.flatten(1)
        self.x_mean = x.mean(0).to(self.x_mean)
        if whiten:
            evals, evecs = torch.linalg.eigh(torch.cov(x.T).reshape(x.shape[1], x.shape[1]))
            evals = evals.clamp_min(0.01 * float(evals.clamp_min(0).mean()) + 1e-12)
            self.x_proj = (evecs / evals.sqrt()).to(self.x_proj)
        else:
            std = x.std(0)
            self.x_proj = torch.diag(1 / std.clamp_min(0.1 * float(std.mean()) + 1e-12)).to(self.x_proj)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, L) per example; L's diagonal is exp(·) of a bounded output, so it stays positive."""
        out = self.head(self.body((x - self.x_mean) @ self.x_proj))
        d = self.latent_dim
        # a soft bound on log σ (σ in 0.0025..400): unlike a clamp it never zeroes the gradient
        mu, log_sd, off = out[:, :d], 6 * torch.tanh(out[:, d:2 * d] / 6), out[:, 2 * d:]
        scale = torch.diag_embed(log_sd.exp())
        if self.covariance == "full":
            scale = scale.index_put((torch.arange(len(x))[:, None], self.tril[0], self.tril[1]), off, accumulate=True)
        return mu, scale


def elbo_loss(model: LinearGaussian, n_samples: int = 1):
    """``loss_fn(encoder, batch)`` for ``fit``: −ELBO by reparameterised Monte Carlo, with the exact terms logged.

    Logs ``elbo_mc`` (the estimate that is optimised), ``elbo`` (closed form), ``log_px`` (exact evidence) and
    ``gap`` = log p(x) − ELBO = KL(q ‖ p(z|x)), all in nats per example.
    """
    check_samples(n_samples, 1)

    def loss_fn(encoder: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        x = batch[0]
        mu, scale = encoder(x)
        z = sample_normal(mu, scale, n_samples)
        elbo_mc = (model.log_joint(x, z) - log_normal(z, mu, scale)).mean(0)
        with torch.no_grad():
            elbo = model.elbo(x, mu, scale)
            log_px = model.log_evidence(x)
        return {"loss": -elbo_mc.mean(), "elbo_mc": elbo_mc.mean(), "elbo": elbo.mean(), "log_px": log_px.mean(),
                "gap": (log_px - elbo).mean()}

    return loss_fn
