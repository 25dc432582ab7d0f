"""The kernel toy: the decoder is a convex combination of the data, masses sum to 1, collapse above β_c."""

import numpy as np
import pytest

from vaecourse import kernel_toy as kt


def test_decoder_is_a_convex_combination_of_the_data():
    x = kt.toy_points()
    grid = kt.latent_grid(15)
    fp = kt.fixed_point(x, grid, 0.5, noise=0.3, max_iter=200)
    w = fp.weights
    assert np.all(w >= 0) and np.allclose(w.sum(0), 1.0)
    assert np.allclose(w.T @ x, kt.decoder_step(x, fp.log_q))
    lo, hi = x.min(0), x.max(0)
    assert np.all(fp.psi >= lo - 1e-9) and np.all(fp.psi <= hi + 1e-9)   # inside the data's bounding box


def test_masses_and_encoders_are_distributions():
    x = kt.toy_points()
    grid = kt.latent_grid(21)
    fp = kt.fixed_point(x, grid, 0.2, noise=0.5, max_iter=300)
    assert fp.masses.sum() == pytest.approx(1.0)
    assert np.allclose(fp.q.sum(1), 1.0)
    assert grid.prior.sum() == pytest.approx(1.0)


def test_collapse_above_and_split_below_the_critical_beta():
    x = kt.toy_points()
    grid = kt.latent_grid(15)
    bc = kt.critical_beta(x)
    assert bc == pytest.approx(np.linalg.eigvalsh(np.cov(x.T, bias=True))[-1])
    hot = kt.fixed_point(x, grid, 1.3 * bc, noise=1e-2, max_iter=3000, tol=1e-10)
    cold = kt.fixed_point(x, grid, 0.7 * bc, noise=1e-2, max_iter=3000, tol=1e-10)
    total_var = np.trace(kt.covariance(x))
    assert hot.converged and hot.u == pytest.approx(total_var, rel=1e-6)      # g ≡ mean: u = tr Cov
    assert cold.u < 0.9 * total_var                                           # the decoder has split


def test_equal_mass_partition_beats_a_random_one_at_small_beta():
    x = kt.toy_points("square")
    grid = kt.latent_grid(31)
    eq = kt.fixed_point(x, grid, 0.05, kt.partition_decoder(x, grid, kt.equal_mass_labels(grid, len(x))))
    rnd = kt.fixed_point(x, grid, 0.05, kt.partition_decoder(x, grid, kt.random_partition_labels(grid, len(x), 3)))
    assert np.allclose(eq.masses, 0.25, atol=0.02)
    assert eq.kl < rnd.kl and eq.kl == pytest.approx(np.log(4), abs=0.05)


def test_kernel_smoother_fixed_point_and_bad_input():
    x = kt.toy_points()
    fp = kt.fixed_point(x, kt.latent_grid(15), 0.3, noise=0.3, max_iter=3000, tol=1e-10)
    s = kt.kernel_smoother(x, fp.psi, fp.beta, log_weights=-kt.log_partition(fp))
    assert np.abs(s - fp.psi).max() < 1e-6
    with pytest.raises(ValueError):
        kt.fixed_point(x[:1], kt.latent_grid(5), 0.3)
    with pytest.raises(ValueError):
        kt.anneal(x, kt.latent_grid(5), [0.1, 0.2])


def test_partition_image_puts_positive_z1_on_top_and_negative_z0_on_the_left():
    x = kt.toy_points()
    grid = kt.latent_grid(9)
    fp = kt.fixed_point(x, grid, 0.3, noise=0.3, max_iter=200)
    colors = kt.point_colors(len(x))
    img = kt.partition_image(fp, colors)
    assert img.shape == (9, 9, 3)
    ticks = np.linspace(-grid.lim, grid.lim, 9)
    for b, (z0, z1) in enumerate(grid.z):  # grid point (z0, z1) sits at row "from the top by z1", column by z0
        row, col = 8 - int(np.argmin(np.abs(ticks - z1))), int(np.argmin(np.abs(ticks - z0)))
        assert np.allclose(img[row, col], fp.weights[:, b] @ colors)
    with pytest.raises(ValueError, match="one RGB colour per data point"):
        kt.partition_image(fp, colors[:3])


def test_beta_widget_shows_the_fixed_point_of_the_chosen_beta():
    from vaecourse.plots import tile

    x = kt.toy_points()
    sweep = kt.anneal(x, kt.latent_grid(15), np.geomspace(4.0, 0.1, 5), max_iter=300)
    w = kt.beta_widget(sweep)
    before = w.image.value
    w.set(beta=w.controls["beta"].options[-1])
    assert w.image.value != before and "beta = 0.1 ·" in w.status.value  # a selection shows its option's label
    expected = tile(kt.beta_frame(sweep[-1], kt.point_colors(len(x))), nrow=2)
    assert np.allclose(w.frame(), expected, atol=1e-6)
    # the partition panel shows the whole latent square, whatever the grid size: its corners are the grid's
    panel = kt.beta_frame(sweep[-1], kt.point_colors(len(x)))[0].transpose(1, 2, 0)
    part = kt.partition_image(sweep[-1], kt.point_colors(len(x)))
    for r, c in [(0, 0), (-1, -1), (0, -1), (-1, 0)]:
        assert np.allclose(panel[r, c], part[r, c], atol=1e-6)


def test_rate_split_is_zero_when_every_encoder_is_the_prior():
    """q(z|xᵢ) = π for every point: q̄ = π, so KL(q̄‖π) = 0 and I = 0 (every Monte Carlo term is exactly 0)."""
    split = kt.rate_split(np.zeros((3, 2)), np.zeros((3, 2)), samples_per_point=500)
    assert split.rate == 0.0
    assert split.marginal_kl == pytest.approx(0.0, abs=1e-12) and split.mutual_info == pytest.approx(0.0, abs=1e-12)


def test_rate_split_of_identical_encoders_has_no_information():
    """All encoders N(m, s²I): q̄ is that Gaussian, I = 0 and KL(q̄‖π) is the closed-form Gaussian KL (the rate)."""
    mu, log_var = np.tile([[1.0, -0.5]], (4, 1)), np.full((4, 2), np.log(0.3))
    split = kt.rate_split(mu, log_var, samples_per_point=5000, seed=1)
    assert split.rate == pytest.approx(0.5 * (1.25 + 2 * 0.3 - 2 - 2 * np.log(0.3)))
    assert split.mutual_info == pytest.approx(0.0, abs=1e-12)
    assert abs(split.marginal_kl - split.rate) < 4 * split.marginal_kl_se


def test_rate_split_of_two_separated_gaussians_gives_log_2():
    """N(±8·e₁, ¼I): the encoders do not overlap, so I(x; z) = log 2 and KL(q̄‖π) = rate − log 2."""
    mu, log_var = np.array([[-8.0, 0.0], [8.0, 0.0]]), np.full((2, 2), np.log(0.25))
    split = kt.rate_split(mu, log_var, samples_per_point=4000, seed=2)
    assert split.rate == pytest.approx(0.5 * (64 + 2 * 0.25 - 2 - 2 * np.log(0.25)))
    assert split.mutual_info == pytest.approx(np.log(2), abs=4 * split.mutual_info_se + 1e-9)
    assert abs(split.marginal_kl - (split.rate - np.log(2))) < 4 * split.marginal_kl_se
    assert split.z.shape == (2, 4000, 2) and split.log_n == pytest.approx(np.log(2))


def test_rate_split_identity_and_bounds_on_overlapping_encoders():
    """rate = I + KL(q̄‖π) up to Monte Carlo error; 0 ≤ I ≤ log n; 0 ≤ KL(q̄‖π) ≤ rate."""
    rng = np.random.default_rng(3)
    mu, log_var = rng.normal(size=(5, 3)), rng.normal(-1.0, 0.3, size=(5, 3))
    split = kt.rate_split(mu, log_var, samples_per_point=4000, seed=4)
    assert abs(split.gap) < 4 * split.gap_se
    assert 0 < split.mutual_info <= np.log(5) and 0 < split.marginal_kl < split.rate
    assert split.mutual_info == pytest.approx(split.rate - split.marginal_kl, abs=4 * split.gap_se)
    with pytest.raises(ValueError, match="n×d"):
        kt.rate_split(mu, log_var[:, :2])


def test_grid_rate_is_information_plus_marginal_kl():
    """On the grid the split is exact: KL = I + KL(q̄‖π), with I ≤ log n (equal only for a hard partition)."""
    x = kt.toy_points("square")
    grid = kt.latent_grid(21)
    for beta in (0.05, 0.5, 3.0):
        fp = kt.fixed_point(x, grid, beta, noise=0.3, max_iter=300)
        assert fp.kl == pytest.approx(fp.mutual_info + fp.marginal_kl, abs=1e-10)
        assert -1e-12 <= fp.mutual_info <= np.log(len(x)) + 1e-12


def test_binary_kl_values_and_the_data_processing_bound():
    assert kt.binary_kl(0.3, 0.3) == 0.0
    assert kt.binary_kl(0.5, 0.25) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert kt.binary_kl(0.0, 0.5) == pytest.approx(np.log(2))
    # KL(q̄‖π) ≥ binary_kl(q̄(A), π(A)) for A = {z₀ > 0}, q̄ an off-centre Gaussian: q̄(A) = Φ(1/0.5), π(A) = ½
    from math import erf, sqrt
    split = kt.rate_split(np.array([[1.0, 0.0]]), np.full((1, 2), np.log(0.25)), samples_per_point=2000)
    q_a = 0.5 * (1 + erf(2 / sqrt(2)))
    assert kt.binary_kl(q_a, 0.5) < split.rate
    with pytest.raises(ValueError):
        kt.binary_kl(0.5, 1.0)
