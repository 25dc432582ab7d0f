"""Gaussians with a Cholesky scale, and the linear-Gaussian model whose evidence, posterior and ELBO lesson 01
computes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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
