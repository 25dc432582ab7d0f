"""The optimal decoder and encoders of a β-VAE on a kernel toy, found by iterating their fixed-point equations.

With a data set of n points xᵢ (the empirical distribution), a flexible Gaussian decoder and a
latent discretised into grid points z_b with prior masses π_b, the stationary points of
E_q[−‖x − g(z)‖²/(2β)] − KL(q(z|x) ‖ π) satisfy (Rezende & Viola 2018, §3, https://arxiv.org/abs/1810.00597;
Parnas & Shazman's report on it derives them step by step):

    decoder:  g(z_b) = Σᵢ q(z_b|xᵢ)·xᵢ / Σⱼ q(z_b|xⱼ)             (a convex combination of the data)
    encoder:  q(z_b|xᵢ) = π_b·exp(−‖xᵢ − g(z_b)‖²/(2β)) / Zᵢ      (a Boltzmann distribution, temperature β)

Here β stands for σ²·β_KL (decoder variance times the KL weight); σ² = 1 in the toy. Iterating the
two equations is coordinate ascent on that objective. Everything is NumPy float64 in the log
domain, so tiny β never underflows: the decoder weights wᵢ(b) = q(z_b|xᵢ)/Σⱼ q(z_b|xⱼ) are a softmax.

The rate splits as E_x KL(q(z|x) ‖ π) = I(x; z) + KL(q̄ ‖ π), q̄ = (1/n)·Σᵢ q(z|xᵢ) the encoders' marginal (Hoffman &
Johnson 2016, "ELBO surgery", http://approximateinference.org/accepted/HoffmanJohnson2016.pdf): exact on the grid
(``FixedPoint.mutual_info``, ``FixedPoint.marginal_kl``), and by Monte Carlo for a VAE with Gaussian encoders
(``rate_split``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LatentGrid:
    """Grid points ``z`` (G×d) over [−lim, lim]^d with prior masses ``prior`` (G, summing to 1)."""

    z: np.ndarray
    prior: np.ndarray
    shape: tuple[int, ...]
    lim: float

    @property
    def log_prior(self) -> np.ndarray:
        return np.log(self.prior)


def latent_grid(n: int = 41, dim: int = 2, lim: float = 3.5, prior_std: float = 1.0) -> LatentGrid:
    """A regular grid of n^dim latent points weighted by a N(0, prior_std²·I) prior, renormalised on the grid."""
    if n < 2 or dim < 1:
        raise ValueError(f"need n ≥ 2 grid points per axis and dim ≥ 1, got n={n}, dim={dim}")
    if prior_std <= 0 or lim <= 0:
        raise ValueError(f"prior_std and lim must be positive, got {prior_std}, {lim}")
    ticks = np.linspace(-lim, lim, n)
    mesh = np.meshgrid(*([ticks] * dim), indexing="ij")
    z = np.stack([m.reshape(-1) for m in mesh], axis=1)
    logp = -0.5 * (z ** 2).sum(1) / prior_std ** 2
    p = np.exp(logp - logp.max())
    return LatentGrid(z=z, prior=p / p.sum(), shape=(n,) * dim, lim=lim)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def sq_dists(x: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """‖xᵢ − ψ_b‖² as an n×G array."""
    return (x ** 2).sum(1)[:, None] + (psi ** 2).sum(1)[None, :] - 2 * x @ psi.T


def encoder_step(x: np.ndarray, psi: np.ndarray, log_prior: np.ndarray, beta: float) -> np.ndarray:
    """log q(z_b|xᵢ) = log π_b − ‖xᵢ − ψ_b‖²/(2β) − log Zᵢ (n×G; each row a distribution over the grid)."""
    logits = log_prior[None, :] - np.maximum(sq_dists(x, psi), 0.0) / (2 * beta)
    return logits - _logsumexp(logits, axis=1)


def decoder_weights(log_q: np.ndarray) -> np.ndarray:
    """wᵢ(b) = q(z_b|xᵢ)/Σⱼ q(z_b|xⱼ) (n×G, each column sums to 1): how much of each data point z_b decodes to."""
    return np.exp(log_q - _logsumexp(log_q, axis=0))


def decoder_step(x: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """g(z_b) = Σᵢ wᵢ(b)·xᵢ: the optimal decoder, a convex combination of the data (G×D)."""
    return decoder_weights(log_q).T @ x


def update(x: np.ndarray, psi: np.ndarray, log_prior: np.ndarray, beta: float) -> np.ndarray:
    """One fixed-point update: the encoders for the decoder ψ, then the decoder for those encoders (G×D)."""
    return decoder_step(x, encoder_step(x, psi, log_prior, beta))


Step = Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]


@dataclass
class FixedPoint:
    """A converged (or stopped) pair: encoders ``log_q`` (n×G), decoder ``psi`` (G×D) at ``beta``."""

    x: np.ndarray
    grid: LatentGrid
    beta: float
    log_q: np.ndarray
    psi: np.ndarray
    iterations: int
    change: float
    converged: bool
    history: list[float] = field(default_factory=list)

    @property
    def q(self) -> np.ndarray:
        return np.exp(self.log_q)

    @property
    def weights(self) -> np.ndarray:
        return decoder_weights(self.log_q)

    @property
    def masses(self) -> np.ndarray:
        """Prior mass of each data point's region, m_i = Σ_b π_b·wᵢ(b) (soft; the masses sum to 1)."""
        return region_masses(self.log_q, self.grid.prior)

    @property
    def u(self) -> float:
        """The order parameter u(β) = E_ρ(x) E_q(z|x) ‖x − g(z)‖²."""
        return distortion(self.x, self.log_q, self.psi)

    @property
    def marginal(self) -> np.ndarray:
        """The marginal of the encoders q̄(z_b) = (1/n)·Σᵢ q(z_b|xᵢ)."""
        return self.q.mean(0)

    @property
    def marginal_kl(self) -> float:
        """KL(q̄ ‖ π) in nats: 0 when the encoders' marginal is the prior."""
        return kl_to_prior(self.marginal, self.grid.prior)

    @property
    def kl(self) -> float:
        """The rate (1/n)·Σᵢ KL(q(·|xᵢ) ‖ π) in nats."""
        q = self.q
        return float((q * (self.log_q - self.grid.log_prior[None, :])).sum(1).mean())

    @property
    def mutual_info(self) -> float:
        """I(x; z) = (1/n)·Σᵢ KL(q(·|xᵢ) ‖ q̄) in nats, x uniform on the n points: at most log n, and
        ``kl`` = ``mutual_info`` + ``marginal_kl`` exactly (Hoffman & Johnson 2016)."""
        q = self.q
        log_marginal = np.log(np.maximum(q.mean(0), np.finfo(float).tiny))
        return float((q * (self.log_q - log_marginal[None, :])).sum(1).mean())


def region_masses(log_q: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """m_i = Σ_b π_b·wᵢ(b): the prior mass decoded to each data point (the weights are a partition of unity)."""
    return decoder_weights(log_q) @ prior


def distortion(x: np.ndarray, log_q: np.ndarray, psi: np.ndarray) -> float:
    """u = (1/n)·Σᵢ Σ_b q(z_b|xᵢ)·‖xᵢ − ψ_b‖² (squared-error units)."""
    return float((np.exp(log_q) * np.maximum(sq_dists(x, psi), 0.0)).sum(1).mean())


def kl_to_prior(marginal: np.ndarray, prior: np.ndarray) -> float:
    """KL(q̄ ‖ π) on the grid, in nats."""
    m = marginal > 0
    return float((marginal[m] * (np.log(marginal[m]) - np.log(prior[m]))).sum())


def _check_data(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"the toy data must be an n×D array with n ≥ 2 points, got shape {x.shape}")
    return x


def fixed_point(x: np.ndarray, grid: LatentGrid, beta: float, psi0: np.ndarray | None = None, *,
                max_iter: int = 2000, tol: float = 1e-7, noise: float = 0.0, smooth_noise: bool = True,
                rng: np.random.Generator | None = None, step: Step | None = None) -> FixedPoint:
    """Iterate encoder_step/decoder_step from ``psi0`` (default: the data mean) until max |Δψ| < ``tol``.

    ``step(x, psi, log_prior, beta) -> new psi`` replaces that update (lesson 04b passes the student's own).

    ``noise`` adds a small perturbation to the start, so that the iteration can leave the collapsed
    fixed point (every ψ_b at the mean) below the critical β, where it is unstable. By default it is a
    random *linear* function of z (as a smooth decoder would perturb), so regions come out contiguous;
    ``smooth_noise=False`` perturbs every grid cell independently (the free decoder then splits cell by cell).
    """
    x = _check_data(x)
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    rng = rng or np.random.default_rng(0)
    psi = np.repeat(x.mean(0, keepdims=True), len(grid.prior), axis=0) if psi0 is None else np.array(psi0, float)
    if psi.shape != (len(grid.prior), x.shape[1]):
        raise ValueError(f"psi0 must be G×D = {len(grid.prior)}×{x.shape[1]}, got {psi.shape}")
    if noise > 0:
        if smooth_noise:
            psi = psi + noise * grid.z @ rng.standard_normal((grid.z.shape[1], x.shape[1]))
        else:
            psi = psi + noise * rng.standard_normal(psi.shape)
    change, history, log_q = np.inf, [], None
    step = step or update
    for _ in range(max_iter):
        new = step(x, psi, grid.log_prior, beta)
        change = float(np.abs(new - psi).max())
        psi = new
        history.append(change)
        if change < tol:
            break
    log_q = encoder_step(x, psi, grid.log_prior, beta)
    return FixedPoint(x=x, grid=grid, beta=float(beta), log_q=log_q, psi=psi, iterations=len(history), change=change,
                      converged=change < tol, history=history)


def anneal(x: np.ndarray, grid: LatentGrid, betas: Sequence[float], *, max_iter: int = 2000, tol: float = 1e-7,
           noise: float = 1e-3, seed: int = 0, step: Step | None = None) -> list[FixedPoint]:
    """Fixed points along decreasing β, each started from the previous one plus a small perturbation
    (``step``: the update to iterate, as in ``fixed_point``)."""
    betas = [float(b) for b in betas]
    if any(b2 >= b1 for b1, b2 in zip(betas, betas[1:])):
        raise ValueError("anneal needs strictly decreasing betas (from hot to cold), e.g. np.geomspace(10, 0.01, 60)")
    rng = np.random.default_rng(seed)
    out: list[FixedPoint] = []
    psi = None
    for b in betas:
        fp = fixed_point(x, grid, b, psi, max_iter=max_iter, tol=tol, noise=noise, rng=rng, step=step)
        out.append(fp)
        psi = fp.psi
    return out


def covariance(x: np.ndarray) -> np.ndarray:
    """The covariance of the empirical distribution ρ(x) = (1/n)·Σ δ(x − xᵢ) (divides by n, not n − 1)."""
    x = _check_data(x)
    d = x - x.mean(0)
    return d.T @ d / len(x)


def critical_beta(x: np.ndarray, sigma2: float = 1.0) -> float:
    """β_KL,c = λ_max(Cov x)/σ², the critical KL weight: below it the collapsed decoder (g ≡ mean of x) is unstable.

    In the β of the lesson's objective (β = σ²·β_KL) the same point is β_c = λ_max(Cov x); the two coincide at the
    lesson's σ² = 1, which is why the notebook may call this value β_c.
    """
    return float(np.linalg.eigvalsh(covariance(x))[-1] / sigma2)


def curvature(betas: Sequence[float], u: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """d²u/d(log β)² by finite differences on a (possibly non-uniform) grid; returns (β at the inner points, value)."""
    t = np.log(np.asarray(betas, float))
    u = np.asarray(u, float)
    if len(t) < 3:
        raise ValueError("need at least three β values for a second derivative")
    d1 = np.diff(u) / np.diff(t)
    mid = 0.5 * (t[1:] + t[:-1])
    d2 = np.diff(d1) / np.diff(mid)
    return np.exp(t[1:-1]), d2


def transitions(betas: Sequence[float], u: Sequence[float], rel_height: float = 0.1) -> list[float]:
    """β values of the local maxima of |d²u/d(log β)²| higher than ``rel_height`` × the largest, largest β first."""
    b, d2 = curvature(betas, u)
    a = np.abs(d2)
    peaks = [i for i in range(len(a)) if a[i] >= rel_height * a.max() and a[i] >= a[max(i - 1, 0)]
             and a[i] >= a[min(i + 1, len(a) - 1)] and a[i] > 0]
    return sorted((float(b[i]) for i in peaks), reverse=True)


def first_transition(betas: Sequence[float], u: Sequence[float], rel_drop: float = 1e-3) -> float:
    """The largest β at which u(β) has fallen below (1 − rel_drop)·u_collapsed, u_collapsed = tr Cov x.

    Read from the hot side: u is flat at the total variance while the decoder is collapsed, so the
    first β where it drops is where the collapsed solution stopped being the fixed point.
    """
    betas = np.asarray(betas, float)
    u = np.asarray(u, float)
    order = np.argsort(-betas)
    flat = u[order][0]
    below = np.nonzero(u[order] < (1 - rel_drop) * flat)[0]
    return float(betas[order][below[0]]) if len(below) else float("nan")


def kernel_smoother(x: np.ndarray, y: np.ndarray, beta: float, log_weights: np.ndarray | None = None) -> np.ndarray:
    """S(y) = Σᵢ aᵢ·K(xᵢ, y)·xᵢ / Σⱼ aⱼ·K(xⱼ, y), K a Gaussian of bandwidth √β (Nadaraya–Watson / mean shift).

    With aᵢ = 1/Zᵢ (``log_weights`` = −log Zᵢ) the optimal decoder satisfies g(z) = S(g(z)): every decoded
    point is a fixed point of this normalised Gaussian kernel smoother of the data.
    """
    x = _check_data(x)
    y = np.atleast_2d(np.asarray(y, float))
    logits = -np.maximum(sq_dists(x, y), 0.0) / (2 * beta)
    if log_weights is not None:
        logits = logits + np.asarray(log_weights, float)[:, None]
    w = np.exp(logits - _logsumexp(logits, axis=0))
    return w.T @ x


def log_partition(fp: FixedPoint) -> np.ndarray:
    """log Zᵢ = log Σ_b π_b·exp(−‖xᵢ − ψ_b‖²/(2β)) for each data point."""
    logits = fp.grid.log_prior[None, :] - np.maximum(sq_dists(fp.x, fp.psi), 0.0) / (2 * fp.beta)
    return _logsumexp(logits, axis=1)[:, 0]


def nearest_data_distance(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of each decoded point to its nearest data point (large: a hole or a blur)."""
    return np.sqrt(np.maximum(sq_dists(_check_data(x), np.atleast_2d(points)), 0.0).min(0))


def far_mass(x: np.ndarray, decoded: np.ndarray, prior: np.ndarray, radius: float) -> float:
    """Prior mass of the latent points whose decoded point lies farther than ``radius`` from every data point."""
    return float(prior[nearest_data_distance(x, decoded) > radius].sum())


def toy_points(kind: str = "three_pairs") -> np.ndarray:
    """The lesson's small 2-D data sets: ``three_pairs`` (6 points in three pairs along a line) or ``square`` (4)."""
    if kind == "three_pairs":
        return np.array([[-2.5, 0.45], [-2.5, -0.45], [0.0, 0.6], [0.2, -0.6], [2.5, 0.45], [2.3, -0.45]])
    if kind == "square":
        return np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    raise ValueError(f"unknown toy {kind!r}; choose 'three_pairs' or 'square'")


def equal_mass_labels(grid: LatentGrid, n: int, x: np.ndarray | None = None) -> np.ndarray:
    """A partition of the grid into n regions of prior mass 1/n each: angular sectors (2-D) or intervals (1-D).

    With data ``x`` the regions are handed out in the data's angular (or first-coordinate) order, so that
    neighbouring regions decode to neighbouring points.
    """
    if n < 1:
        raise ValueError(f"need n ≥ 1 regions, got {n}")
    key = np.arctan2(grid.z[:, 1], grid.z[:, 0]) if grid.z.shape[1] >= 2 else grid.z[:, 0]
    idx = np.argsort(key, kind="stable")
    cdf = np.cumsum(grid.prior[idx]) - 0.5 * grid.prior[idx]
    labels = np.empty(len(key), dtype=int)
    labels[idx] = np.minimum((cdf * n).astype(int), n - 1)
    if x is not None:
        x = _check_data(x)
        d = x - x.mean(0)
        order = np.argsort(np.arctan2(d[:, 1], d[:, 0]) if x.shape[1] >= 2 else d[:, 0], kind="stable")
        labels = order[labels]
    return labels


def random_partition_labels(grid: LatentGrid, n: int, seed: int = 0) -> np.ndarray:
    """A random partition: the Voronoi cells of n centres drawn from the prior (unequal masses)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n, grid.z.shape[1]))
    return np.argmin(sq_dists(centres, grid.z), axis=0)


def partition_decoder(x: np.ndarray, grid: LatentGrid, labels: np.ndarray) -> np.ndarray:
    """The decoder of a hard partition: g(z_b) = x_{label(b)} (a start for ``fixed_point``)."""
    x = _check_data(x)
    labels = np.asarray(labels)
    if labels.shape != (len(grid.prior),) or labels.min() < 0 or labels.max() >= len(x):
        raise ValueError(f"labels must be {len(grid.prior)} indices into the {len(x)} data points")
    return x[labels].copy()


def elbo(fp: FixedPoint) -> float:
    """The objective the fixed point maximises, −u/(2β) − KL (nats, without constants)."""
    return -fp.u / (2 * fp.beta) - fp.kl


# ----------------------------------------------------------------------------- the rate's two parts, Gaussian encoders
def _gaussian_encoders(mu: np.ndarray, log_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64).reshape(len(mu), -1)
    log_var = np.asarray(log_var, dtype=np.float64).reshape(len(log_var), -1)
    if mu.shape != log_var.shape or len(mu) < 1:
        raise ValueError(f"mu and log_var must both be n×d (one Gaussian encoder per data point), got {mu.shape} "
                         f"and {log_var.shape}")
    return mu, log_var


def gaussian_log_density(z: np.ndarray, mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log N(z; μ, diag exp(log_var)) for every row of z (N×d) and every encoder (n×d): an N×n array."""
    mu, log_var = _gaussian_encoders(mu, log_var)
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    diff2 = (z[:, None, :] - mu[None, :, :]) ** 2
    return -0.5 * (np.log(2 * np.pi) + log_var[None] + diff2 / np.exp(log_var)[None]).sum(-1)


def mixture_log_density(z: np.ndarray, mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """log q̄(z), q̄ = (1/n)·Σᵢ N(μᵢ, diag exp(log_varᵢ)): the aggregate posterior of n equally weighted data points."""
    lq = gaussian_log_density(z, mu, log_var)
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
    lq = gaussian_log_density(z.reshape(-1, d), mu, log_var).reshape(n, samples_per_point, n)
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


# ----------------------------------------------------------------------------- pictures (numpy, fast enough to be live)
def point_colors(n: int) -> np.ndarray:
    """An RGB colour in [0, 1] per data point (n×3): matplotlib's tab10 cycle, as the lesson's plots use."""
    from matplotlib import colormaps

    return colormaps["tab10"](np.arange(n) % 10)[:, :3]


def partition_image(fp: FixedPoint, colors: np.ndarray) -> np.ndarray:
    """The latent grid as an H×W×3 image, each cell coloured by the data points it decodes to (mixed colours: blur).

    Rows run from z[1] = +lim (top) to −lim, columns from z[0] = −lim to +lim, as ``imshow`` with
    ``extent=[-lim, lim, -lim, lim]`` expects.
    """
    if len(fp.grid.shape) != 2:
        raise ValueError(f"the partition picture needs a 2-D latent grid, got shape {fp.grid.shape}")
    colors = np.asarray(colors, float)
    if colors.shape != (len(fp.x), 3):
        raise ValueError(f"need one RGB colour per data point ({len(fp.x)}×3), got shape {colors.shape}")
    # grid points run z[0]-major ("ij" meshgrid): transpose so z[0] is the column, flip so +z[1] is the top row
    return (fp.weights.T @ colors).reshape(*fp.grid.shape, 3).transpose(1, 0, 2)[::-1]


def data_canvas(fp: FixedPoint, colors: np.ndarray, size: int = 64, lim: float = 3.2) -> np.ndarray:
    """The decoded points g(z_b) rasterised on [−lim, lim]² (darker = more prior mass), data as coloured squares.

    A size×size×3 image in [0, 1], x[1] upwards.
    """
    img = np.ones((size, size, 3))
    lo, hi = np.array([-lim, -lim]), np.array([lim, lim])
    ij = np.clip(((fp.psi - lo) / (hi - lo) * (size - 1)).round().astype(int), 0, size - 1)
    dens = np.zeros((size, size))
    np.add.at(dens, (size - 1 - ij[:, 1], ij[:, 0]), fp.grid.prior)
    img *= (1 - np.clip(dens / 0.05, 0, 0.9))[..., None]  # a pixel holding 5 % of the prior mass is at its darkest
    for c, p in zip(np.asarray(colors, float), np.clip(((fp.x - lo) / (hi - lo) * (size - 1)).round().astype(int),
                                                       1, size - 2)):
        img[size - 2 - p[1]: size + 1 - p[1], p[0] - 1: p[0] + 2] = c
    return img


def resize_nearest(img: np.ndarray, size: int) -> np.ndarray:
    """An H×W(×C) image resampled to size×size by nearest neighbour (keeps the whole picture, any grid size)."""
    rows = np.arange(size) * img.shape[0] // size
    cols = np.arange(size) * img.shape[1] // size
    return img[rows][:, cols]


def beta_frame(fp: FixedPoint, colors: np.ndarray, size: int = 64) -> np.ndarray:
    """What the β widget shows for one fixed point: [latent partition, decoded points in data space], 2×3×size×size."""
    panels = [resize_nearest(partition_image(fp, colors), size), data_canvas(fp, colors, size)]
    return np.stack(panels).transpose(0, 3, 1, 2).astype(np.float32)


def beta_widget(sweep: Sequence[FixedPoint], *, colors: np.ndarray | None = None, size: int = 64):
    """Lesson 04b's live view: a β slider over the fixed points of ``sweep`` (e.g. ``anneal``'s output).

    Left: the latent partition (``partition_image``), right: the decoded points in data space
    (``data_canvas``). The slider offers each fixed point's β (rounded to 4 decimals) and starts mid-sweep;
    moving it only looks a fixed point up, nothing is solved while the reader slides.
    """
    import ipywidgets as W  # here, not at the top: the fixed-point solver needs no widget library

    from .widgets import LiveImage

    if not sweep:
        raise ValueError("beta_widget needs at least one fixed point, e.g. kt.anneal(x, grid, betas)")
    colors = point_colors(len(sweep[0].x)) if colors is None else np.asarray(colors, float)
    betas = np.array([fp.beta for fp in sweep])
    options = [round(float(b), 4) for b in betas]

    def render(beta: float) -> np.ndarray:
        return beta_frame(sweep[int(np.argmin(np.abs(betas - beta)))], colors, size)

    slider = W.SelectionSlider(options=options, value=options[len(options) // 2], description="β",
                               continuous_update=True)
    return LiveImage(render, {"beta": slider}, nrow=2, scale=3,
                     title="left: latent partition · right: decoded points in data space")
