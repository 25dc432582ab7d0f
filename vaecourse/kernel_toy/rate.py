"""The rate's two parts for Gaussian encoders: I(x; z) and KL(q̄‖π), estimated by stratified sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_points import (
    _logsumexp,
)


# ----------------------------------------------------------------------------- the rate's two parts, Gaussian encoders
def _gaussian_encoders(mu: np.ndarray, log_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64).reshape(len(mu), -1)
    log_var = np.asarray(log_var, dtype=np.float64).reshape(len(log_var), -1)
    if mu.shape != log_var.shape or len(mu) < 1:
        raise ValueError(f"mu and log_var must both be n×d (one Gaussian encoder per data point), got {mu.shape} "
                         f"and {log_var.shape}")
    return mu, log_var


def pairwise_gaussian_log_density(z: np.ndarray, mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log N(z; μ, diag exp(log_var)) for every row of z (N×d) against every encoder (n×d): an N×n array.

    NumPy and pairwise; ``losses.gaussian_log_density`` is the torch one, row by row (one density per example).
    """
    mu, log_var = _gaussian_encoders(mu, log_var)
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    diff2 = (z[:, None, :] - mu[None, :, :]) ** 2
    return -0.5 * (np.log(2 * np.pi) + log_var[None] + diff2 / np.exp(log_var)[None]).sum(-1)


def mixture_log_density(z: np.ndarray, mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log q̄(z), q̄ = (1/n)·Σᵢ N(μᵢ, diag exp(log_varᵢ)): the aggregate posterior of n equally weighted data points."""
    lq = pairwise_gaussian_log_density(z, mu, log_var)
    return _logsumexp(lq, axis=1)[:, 0] - np.log(lq.shape[1])


@dataclass
class RateSplit:
    """E_x KL(q(z|x) ‖ π) = I(x; z) + KL(q̄ ‖ π) for n equally weighted points with Gaussian encoders, π = N(0, I).

    All in nats. ``rate`` is exact (closed form); ``mutual_info`` and ``marginal_kl`` are Monte Carlo estimates
    with their standard errors (``*_se``); ``z`` holds the draws (n×m×d, row i from q(z|xᵢ)), together a stratified
    sample of q̄. ``gap`` = rate − (I + KL(q̄‖π)) is Monte Carlo error only, ``gap_se`` its standard error.
    """

    rate: float
    mutual_info: float
    mutual_info_se: float
    marginal_kl: float
    marginal_kl_se: float
    gap: float
    gap_se: float
    n: int
    z: np.ndarray

    @property
    def log_n(self) -> float:
        """log n: the largest I(x; z) can be when x takes n equally likely values."""
        return float(np.log(self.n))


def _stratified_mean(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of (1/n)·Σᵢ mean_j values[i, j], row i drawn from the i-th mixture component."""
    n, m = values.shape
    return float(values.mean()), float(np.sqrt(values.var(1, ddof=1).sum() / m) / n)


def rate_split(mu: np.ndarray, log_var: np.ndarray, *, samples_per_point: int = 20000, seed: int = 0) -> RateSplit:
    """Split the rate of Gaussian encoders q(z|xᵢ) = N(μᵢ, diag exp(log_varᵢ)) against the prior π = N(0, I).

    E_x KL(q(z|x) ‖ π) = I(x; z) + KL(q̄ ‖ π) (Hoffman & Johnson 2016, "ELBO surgery"), x uniform on the n points
    and q̄ = (1/n)·Σᵢ q(z|xᵢ). The rate is the closed-form Gaussian KL averaged over the points. The two parts are
    Monte Carlo averages over ``samples_per_point`` draws from each encoder (a stratified sample of q̄), evaluated
    with q̄'s exact mixture density:

        KL(q̄ ‖ π) ≈ mean of log q̄(z) − log π(z),     I(x; z) ≈ mean of log q(z|xᵢ) − log q̄(z).

    Both are unbiased; every draw's term of I is at most log n (q̄ ≥ q(z|xᵢ)/n), so the estimate of I is too.
    """
    mu, log_var = _gaussian_encoders(mu, log_var)
    if samples_per_point < 2:
        raise ValueError(f"need at least 2 samples per point for a standard error, got {samples_per_point}")
    n, d = mu.shape
    rng = np.random.default_rng(seed)
    z = mu[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * rng.standard_normal((n, samples_per_point, d))
    lq = pairwise_gaussian_log_density(z.reshape(-1, d), mu, log_var).reshape(n, samples_per_point, n)
    own = lq[np.arange(n), :, np.arange(n)]                                   # log q(z|xᵢ) at xᵢ's own draws, n×m
    log_marginal = _logsumexp(lq, axis=2)[..., 0] - np.log(n)                 # log q̄(z), n×m
    log_prior = -0.5 * (np.log(2 * np.pi) * d + (z ** 2).sum(-1))             # log π(z), n×m
    rate = float((0.5 * (mu ** 2 + np.exp(log_var) - 1.0 - log_var).sum(1)).mean())
    mi, mi_se = _stratified_mean(own - log_marginal)
    mkl, mkl_se = _stratified_mean(log_marginal - log_prior)
    rate_mc, rate_mc_se = _stratified_mean(own - log_prior)                   # the same draws: I + KL(q̄‖π) exactly
    return RateSplit(rate=rate, mutual_info=mi, mutual_info_se=mi_se, marginal_kl=mkl, marginal_kl_se=mkl_se,
                     gap=rate - rate_mc, gap_se=rate_mc_se, n=n, z=z)


def binary_kl(a: float, b: float) -> float:
    """KL(Bernoulli(a) ‖ Bernoulli(b)) in nats (0·log 0 = 0).

    For any set A of latents, KL(q̄ ‖ π) ≥ binary_kl(q̄(A), π(A)) (data processing: keep only "in A or not").
    """
    if not (0.0 <= a <= 1.0 and 0.0 < b < 1.0):
        raise ValueError(f"need 0 ≤ a ≤ 1 and 0 < b < 1, got a={a}, b={b}")
    out = 0.0
    for p, r in ((a, b), (1.0 - a, 1.0 - b)):
        if p > 0:
            out += p * np.log(p / r)
    return float(out)
