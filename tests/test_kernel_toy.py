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
