"""The ELBO on a model whose evidence is exact: the linear-Gaussian model (probabilistic PCA).

Lesson 01 checks the two derivations of the bound numerically. In probabilistic PCA,
p(z) = N(0, I) and p(x|z) = N(Wz + b, σ²I), so log p(x) = log N(x; b, WWᵀ + σ²I) and the true
posterior p(z|x) is Gaussian, both in closed form. Any Gaussian q(z|x) then has an exact ELBO, an
exact KL(q ‖ p(z|x)), and Monte Carlo estimates of both to compare with. Gaussians are given by a
mean and a lower-triangular scale L (covariance LLᵀ); a diagonal q is ``diag_scale_tril(logvar)``.
Use float64 here: the identities are checked to 1e-10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- Gaussians with a Cholesky scale
def diag_scale_tril(logvar: torch.Tensor) -> torch.Tensor:
    """The scale L = diag(σ) of a diagonal Gaussian from its log-variances (…×d → …×d×d)."""
    return torch.diag_embed(torch.exp(0.5 * logvar))


def log_normal(z: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, LLᵀ) over the last axis; batch axes broadcast (z may carry extra sample axes)."""
    diff = (z - mean).unsqueeze(-1)
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)
    half_logdet = torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (z.shape[-1] * LOG_2PI + white.pow(2).sum(-1)) - half_logdet


def sample_normal(mean: torch.Tensor, scale_tril: torch.Tensor, n_samples: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """n_samples draws z = mean + Lε (the reparameterisation), shape n_samples × mean.shape."""
    eps = torch.randn((n_samples, *mean.shape), dtype=mean.dtype, device=mean.device, generator=generator)
    return mean + (scale_tril @ eps.unsqueeze(-1)).squeeze(-1)


def gaussian_kl_full(mean_q: torch.Tensor, scale_q: torch.Tensor, mean_p: torch.Tensor,
                     scale_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μq, LqLqᵀ) ‖ N(μp, LpLpᵀ)) in nats, closed form:

    ½ [tr(Σp⁻¹Σq) + (μp − μq)ᵀ Σp⁻¹ (μp − μq) − d + log det Σp − log det Σq].
    """
    d = mean_q.shape[-1]
    scale_p = scale_p.expand(*torch.broadcast_shapes(scale_p.shape, scale_q.shape))
    a = torch.linalg.solve_triangular(scale_p, scale_q, upper=False)           # Lp⁻¹ Lq
    m = torch.linalg.solve_triangular(scale_p, (mean_p - mean_q).unsqueeze(-1), upper=False).squeeze(-1)
    logdet_p = 2 * torch.diagonal(scale_p, dim1=-2, dim2=-1).log().sum(-1)
    logdet_q = 2 * torch.diagonal(scale_q, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (a.pow(2).sum((-2, -1)) + m.pow(2).sum(-1) - d + logdet_p - logdet_q)


def kl_monte_carlo(mean_q: torch.Tensor, scale_q: torch.Tensor, mean_p: torch.Tensor, scale_p: torch.Tensor,
                   n_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo KL(q ‖ p) = E_q[log q(z) − log p(z)]: (estimate, its standard error) per example."""
    check_samples(n_samples, 2)
    z = sample_normal(mean_q, scale_q, n_samples, generator)
    terms = log_normal(z, mean_q, scale_q) - log_normal(z, mean_p, scale_p)
    return terms.mean(0), terms.std(0) / math.sqrt(n_samples)


def check_samples(n_samples: int, least: int = 1) -> None:
    """ValueError for a sample count an estimator cannot use (a standard error needs two samples)."""
    if int(n_samples) != n_samples or n_samples < least:
        raise ValueError(f"n_samples must be an integer ≥ {least} (got {n_samples}); a standard error needs "
                         "at least two samples")


# ----------------------------------------------------------------------------- the model
@dataclass
class LinearGaussian:
    """Probabilistic PCA: p(z) = N(0, I_d), p(x|z) = N(Wz + b, σ²I_D); W is D×d, σ² = ``noise_var``."""

    W: torch.Tensor
    b: torch.Tensor
    noise_var: float

    def __post_init__(self) -> None:
        if self.W.dim() != 2 or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"W must be D×d and b of length D; got W {tuple(self.W.shape)}, b {tuple(self.b.shape)}")
        if not self.noise_var > 0:
            raise ValueError(f"noise_var (σ²) must be positive, got {self.noise_var}")

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, noise_var: float = 0.25, overlap: float = 0.0,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> "LinearGaussian":
        """A model with N(0, 1) loadings W and a N(0, 1) offset b.

        ``overlap`` in [0, 1) mixes the first column of W into the others, so the columns point alike and
        the posterior's latents are strongly correlated (a diagonal q then cannot match it).
        """
        if latent_dim < 1 or data_dim < latent_dim:
            raise ValueError(f"need 1 ≤ latent_dim ≤ data_dim, got latent_dim={latent_dim}, data_dim={data_dim}")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
        W = torch.randn(data_dim, latent_dim, generator=generator, dtype=dtype)
        W[:, 1:] = overlap * W[:, :1] + math.sqrt(1 - overlap ** 2) * W[:, 1:]
        b = torch.randn(data_dim, generator=generator, dtype=dtype)
        return cls(W, b, float(noise_var))

    @classmethod
    def fit_ml(cls, x: torch.Tensor, latent_dim: int, dtype: torch.dtype = torch.float64) -> "LinearGaussian":
        """The maximum-likelihood pPCA fit in closed form (Tipping & Bishop 1999) to data x (N×D).

        With the sample covariance's eigenvalues λ₁ ≥ … ≥ λ_D and eigenvectors U: b = the data mean,
        σ² = the mean of the discarded λ_{d+1..D}, W = U_d (Λ_d − σ²I)^½. (Any rotation WR fits equally well.)
        """
        x = torch.as_tensor(x, dtype=dtype).flatten(1)
        n, data_dim = x.shape
        if not 1 <= latent_dim < min(n, data_dim):
            raise ValueError(f"need 1 ≤ latent_dim < min(N, D) = {min(n, data_dim)}, got latent_dim={latent_dim}")
        b = x.mean(0)
        evals, evecs = torch.linalg.eigh((x - b).T @ (x - b) / n)
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        noise_var = float(evals[latent_dim:].mean())
        if noise_var <= 0:
            raise ValueError("the data lie in a subspace of dimension ≤ latent_dim: no noise left to model; "
                             "lower latent_dim")
        W = evecs[:, :latent_dim] * (evals[:latent_dim] - noise_var).clamp_min(0).sqrt()
        return cls(W, b, noise_var)

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=self.W.dtype)
        if x.shape[-1] != self.data_dim:
            raise ValueError(f"x has {x.shape[-1]} features but the model has data_dim={self.data_dim}")
        return x

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n draws (x, z) from the joint: z ~ p(z), x ~ p(x|z)."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.W.dtype)
        noise = torch.randn(n, self.data_dim, generator=generator, dtype=self.W.dtype)
        return z @ self.W.T + self.b + math.sqrt(self.noise_var) * noise, z

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = log N(z; 0, I)."""
        return -0.5 * (z.shape[-1] * LOG_2PI + z.pow(2).sum(-1))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = log N(x; Wz + b, σ²I); z may carry leading sample axes."""
        x = self._x(x)
        sq = (x - z @ self.W.T - self.b).pow(2).sum(-1)
        return -0.5 * (self.data_dim * math.log(2 * math.pi * self.noise_var) + sq / self.noise_var)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x|z) + log p(z)."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    def marginal_cov(self) -> torch.Tensor:
        """Cov[x] = WWᵀ + σ²I (the evidence is N(x; b, WWᵀ + σ²I))."""
        return self.W @ self.W.T + self.noise_var * torch.eye(self.data_dim, dtype=self.W.dtype)

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """The exact log p(x) per example, in nats."""
        x = self._x(x)
        return log_normal(x, self.b, torch.linalg.cholesky(self.marginal_cov()))

    def posterior_precision(self) -> torch.Tensor:
        """Λ = I + WᵀW/σ², the inverse covariance of p(z|x) (the same for every x)."""
        return torch.eye(self.latent_dim, dtype=self.W.dtype) + self.W.T @ self.W / self.noise_var

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact p(z|x) = N(Λ⁻¹Wᵀ(x − b)/σ², Λ⁻¹): (means N×d, scales N×d×d)."""
        x = self._x(x)
        cov = torch.linalg.inv(self.posterior_precision())
        cov = 0.5 * (cov + cov.T)
        mean = (x - self.b) @ self.W @ cov / self.noise_var
        return mean, torch.linalg.cholesky(cov).expand(*mean.shape, self.latent_dim)

    def mean_field_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best diagonal q (least KL(q ‖ p(z|x))): the posterior mean, variances 1/Λᵢᵢ. Returns (μ, log σ²)."""
        mean, _ = self.posterior(x)
        logvar = -torch.log(torch.diagonal(self.posterior_precision()))
        return mean, logvar.expand_as(mean)

    def expected_log_likelihood(self, x: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
        """E_q[log p(x|z)] in closed form for q = N(μ, LLᵀ): −D/2·log 2πσ² − (‖x − b − Wμ‖² + ‖WL‖²_F)/2σ²."""
        x = self._x(x)
        sq = (x - mean @ self.W.T - self.b).pow(2).sum(-1) + (self.W @ scale_tril).pow(2).sum((-2, -1))
        return -0.5 * (self.data_dim * math.log(2 * math.pi * self.noise_var) + sq / self.noise_var)

    def elbo(self, x: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
        """The exact ELBO = E_q[log p(x|z)] − KL(q ‖ p(z)), both terms in closed form (nats per example)."""
        zeros = torch.zeros_like(mean)
        eye = torch.eye(self.latent_dim, dtype=mean.dtype).expand_as(scale_tril)
        return self.expected_log_likelihood(x, mean, scale_tril) - gaussian_kl_full(mean, scale_tril, zeros, eye)

    def kl_to_posterior(self, x: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) ‖ p(z|x)) to the exact posterior, closed form (nats per example)."""
        return gaussian_kl_full(mean, scale_tril, *self.posterior(x))


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


# ----------------------------------------------------------------------------- the picture of the bound
def q_scale_2d(logvar: Sequence[float], rho: float = 0.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 2×2 scale L of a 2-D Gaussian with log-variances ``logvar`` and correlation ``rho`` (|ρ| < 1)."""
    if not -1 < rho < 1:
        raise ValueError(f"the correlation rho must lie strictly between -1 and 1, got {rho}")
    s1, s2 = (math.exp(0.5 * float(v)) for v in logvar)
    return torch.tensor([[s1, 0.0], [rho * s2, math.sqrt(1 - rho * rho) * s2]], dtype=dtype)


@dataclass
class BoundTerms:
    """What the bound pictures draw for one x and one q: posterior, q, log p(x), ELBO, gap, bar range (nats)."""

    post_mean: torch.Tensor
    post_scale: torch.Tensor
    q_mean: torch.Tensor
    q_scale: torch.Tensor
    log_px: float
    elbo: float

    @property
    def kl(self) -> float:
        return self.log_px - self.elbo

    @property
    def bar_range(self) -> tuple[float, float]:
        """The nats a bar shows: room below the ELBO for the gap to read, a margin above log p(x)."""
        lo = min(self.elbo, self.log_px) - max(2.0, 0.6 * self.kl + 1.0)
        return lo, self.log_px + 0.15 * (self.log_px - lo) + 0.5


def bound_terms(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor) -> BoundTerms:
    """log p(x), the ELBO of q = N(mean, LLᵀ) and the exact posterior for one x of a 2-D latent model."""
    if model.latent_dim != 2:
        raise ValueError(f"the bound pictures draw a 2-D latent; this model has latent_dim={model.latent_dim}")
    x = model._x(x).reshape(1, -1)
    mu = torch.as_tensor(mean, dtype=model.W.dtype).reshape(1, 2)
    scale = scale_tril.reshape(1, 2, 2).to(model.W.dtype)
    pm, ps = model.posterior(x)
    return BoundTerms(pm[0], ps[0], mu[0], scale[0], float(model.log_evidence(x)), float(model.elbo(x, mu, scale)))


def bound_figure(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor,
                 lim: float | None = None, n_grid: int = 120):
    """Two panels for one x and a 2-D latent: p(z|x) (filled) and q (lines); log p(x), the ELBO and their gap."""
    import matplotlib.pyplot as plt

    t = bound_terms(model, x, mean, scale_tril)
    log_px, elbo, kl = t.log_px, t.elbo, t.kl
    lim = lim or 3.0
    g = torch.linspace(-lim, lim, n_grid, dtype=t.q_mean.dtype)
    gx, gy = torch.meshgrid(t.post_mean[0] + g, t.post_mean[1] + g, indexing="xy")
    grid = torch.stack([gx, gy], -1)
    p_dens = log_normal(grid, t.post_mean, t.post_scale).exp().numpy()
    q_dens = log_normal(grid, t.q_mean, t.q_scale).exp().numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.4, 2.9), gridspec_kw={"width_ratios": [1.35, 1]})
    ax.contourf(gx.numpy(), gy.numpy(), p_dens, levels=8, cmap="Blues")
    ax.contour(gx.numpy(), gy.numpy(), q_dens, levels=6, colors="tab:red", linewidths=1.0)
    ax.plot(*t.post_mean.numpy(), "b+", ms=8, label="p(z|x) mean")
    ax.plot(*t.q_mean.numpy(), "rx", ms=6, label="q mean")
    ax.set(xlabel="z[0]", ylabel="z[1]", title="exact posterior p(z|x) (blue) vs q (red)")
    ax.set_aspect("equal")
    ax.legend(fontsize=6, loc="lower right", frameon=False)
    lo, hi = t.bar_range
    bx.bar([0], [elbo - lo], bottom=lo, color="tab:red", width=0.6, label=f"ELBO = {elbo:.2f}")
    bx.bar([0], [log_px - elbo], bottom=elbo, color="tab:orange", alpha=0.5, width=0.6,
           label=f"gap = KL(q‖p(z|x)) = {kl:.2f}")
    bx.axhline(log_px, color="k", lw=1.2, label=f"log p(x) = {log_px:.2f}")
    bx.set(xlim=(-1, 1.6), ylim=(lo, hi), xticks=[], ylabel="nats",
           title="log p(x) = ELBO + KL(q ‖ p(z|x))")
    bx.legend(fontsize=6, loc="upper right", frameon=False)
    fig.tight_layout()
    return fig


BLUE = np.array([0.12, 0.35, 0.75])
RED = np.array([0.85, 0.10, 0.10])
ORANGE = np.array([1.0, 0.70, 0.35])


def bound_image(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor,
                lim: float = 3.0, n_grid: int = 120) -> torch.Tensor:
    """``bound_figure`` drawn with numpy for live widgets (milliseconds, not a matplotlib redraw): 3×H×W in [0, 1].

    Left: p(z|x) as blue shading, q's density contours in red, on a square of half-width ``lim`` around the
    posterior mean (z[1] upwards). Right: a bar from the ELBO (red) up to log p(x) (black line), the gap
    KL(q‖p(z|x)) in orange; the bar's scale is the same as ``bound_figure``'s.
    """
    t = bound_terms(model, x, mean, scale_tril)
    g = torch.linspace(-lim, lim, n_grid, dtype=t.q_mean.dtype)
    gx, gy = torch.meshgrid(t.post_mean[0] + g, t.post_mean[1] + g.flip(0), indexing="xy")  # row 0 is the top
    grid = torch.stack([gx, gy], -1)
    p = log_normal(grid, t.post_mean, t.post_scale).exp().numpy()
    q = log_normal(grid, t.q_mean, t.q_scale).exp().numpy()
    panel = 1.0 - (p / p.max())[..., None] * (1.0 - BLUE)
    band = np.floor(q / max(q.max(), 1e-300) * 6).clip(0, 5)  # 5 contour levels at 1/6 ... 5/6 of q's peak
    edge = np.zeros_like(band, dtype=bool)
    edge[:, 1:] |= band[:, 1:] != band[:, :-1]
    edge[1:, :] |= band[1:, :] != band[:-1, :]
    panel[edge] = RED
    bar = np.ones((n_grid, n_grid // 3, 3))
    lo, hi = t.bar_range

    def row(value: float) -> int:  # value in nats -> pixel row (top = hi)
        return int(round((hi - value) / (hi - lo) * (n_grid - 1)))

    cols = slice(n_grid // 12, n_grid // 3 - n_grid // 12)
    bar[row(t.elbo):, cols] = RED
    bar[row(t.log_px):row(t.elbo), cols] = ORANGE
    bar[max(row(t.log_px) - 1, 0):row(t.log_px) + 1, :] = 0.0
    gap = np.ones((n_grid, 4, 3))
    return torch.from_numpy(np.concatenate([panel, gap, bar], axis=1).astype(np.float32)).permute(2, 0, 1)


def bound_numbers(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor) -> str:
    """The numbers ``bound_image`` shows, as text: ELBO, KL(q‖p(z|x)) and log p(x) in nats."""
    t = bound_terms(model, x, mean, scale_tril)
    return f"ELBO = {t.elbo:.2f} nats, gap KL(q‖p(z|x)) = {t.kl:.2f}, log p(x) = {t.log_px:.2f}"


def figure_to_image(fig) -> torch.Tensor:
    """Render a matplotlib figure to a 3×H×W tensor in [0, 1] (what ``LiveImage`` shows) and close it."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
    plt.close(fig)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


BOUND_WIDGET_TITLE = "p(z|x0) blue, q red contours | bar: ELBO (red) + gap KL (orange) = log p(x0) (black line)"


def bound_widget(model: LinearGaussian, x: torch.Tensor, lim: float = 3.0, title: str = BOUND_WIDGET_TITLE):
    """Lesson 01's live bound: sliders for q's means, log-variances and correlation over ``bound_image``.

    Controls ``mu0``, ``mu1`` (means, ±3), ``logvar0``, ``logvar1`` (−4 … 1) and ``rho`` (±0.95), all
    starting at the prior N(0, I); the status line adds ``bound_numbers`` (ELBO, gap, log p(x)) for the q shown.
    Works for any 2-D latent ``LinearGaussian`` and one data point ``x``.
    """
    import ipywidgets as W  # here, not at the top: the rest of the module needs no widget library

    from .widgets import LiveImage

    if model.latent_dim != 2:
        raise ValueError(f"the bound widget draws a 2-D latent; this model has latent_dim={model.latent_dim}")

    def slider(lo: float, hi: float, label: str) -> W.FloatSlider:
        return W.FloatSlider(value=0.0, min=lo, max=hi, step=0.05, description=label)

    controls = {"mu0": slider(-3, 3, "mean z[0]"), "mu1": slider(-3, 3, "mean z[1]"),
                "logvar0": slider(-4, 1, "log var z[0]"), "logvar1": slider(-4, 1, "log var z[1]"),
                "rho": slider(-0.95, 0.95, "correlation")}

    def render(mu0: float, mu1: float, logvar0: float, logvar1: float, rho: float) -> torch.Tensor:
        # drawn with numpy, not matplotlib: a redraw takes milliseconds, so the picture follows the slider
        return bound_image(model, x, [mu0, mu1], q_scale_2d([logvar0, logvar1], rho), lim=lim)

    def numbers(mu0: float, mu1: float, logvar0: float, logvar1: float, rho: float) -> str:
        return bound_numbers(model, x, [mu0, mu1], q_scale_2d([logvar0, logvar1], rho))

    return LiveImage(render, controls, scale=2, caption=numbers, title=title)
