"""The kernel toy's fixed points: the decoder as a kernel smoother on a latent grid, annealing in β, phase
transitions, partitions.
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
