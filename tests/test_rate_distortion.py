"""Unit tests for vaecourse.rate_distortion: c and β, held-out rate/distortion, σ-VAE, active units, the c widget."""

import math

import numpy as np
import pytest
import torch

from vaecourse import rate_distortion as rd
from vaecourse.losses import gaussian_kl, squared_error, vae_terms
from vaecourse.nets import make_vae
from vaecourse.plots import latent_plane, tile

SHAPE = (1, 8, 8)


def tiny_vae(latent_dim: int = 2, seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    return make_vae(SHAPE, latent_dim, hidden=(16, 8)).to(dtype)


def batch(n: int = 32, seed: int = 1, dtype=torch.float64):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_beta_and_c_conversions():
    assert rd.beta_from_c(0.05) == pytest.approx(0.1)
    assert rd.c_from_beta(rd.beta_from_c(0.3)) == pytest.approx(0.3)
    assert rd.mean_reduction_beta(1.0, 784) == 784
    with pytest.raises(ValueError, match="positive"):
        rd.beta_from_c(0.0)
    with pytest.raises(ValueError, match="n_pixels"):
        rd.mean_reduction_beta(1.0, 0)


@pytest.mark.parametrize("c", [1e-4, 0.05, 1.0])
def test_variance_c_is_beta_2c(c):
    model, x = tiny_vae(), batch()
    cmp = rd.compare_gradients(model, x, lambda m, xb: vae_terms(m, xb, c=c)["loss"],
                               lambda m, xb: rd.beta_vae_terms(m, xb, beta=2 * c)["loss"])
    assert cmp.value_ratio == pytest.approx(2 * c, rel=1e-10)
    assert cmp.norm_ratio == pytest.approx(2 * c, rel=1e-10)
    assert cmp.cosine == pytest.approx(1.0, abs=1e-12)
    assert cmp.max_deviation < 1e-10


def test_wrong_beta_is_not_proportional():
    model, x = tiny_vae(), batch()
    cmp = rd.compare_gradients(model, x, lambda m, xb: vae_terms(m, xb, c=0.05)["loss"],
                               lambda m, xb: rd.beta_vae_terms(m, xb, beta=0.05)["loss"])
    assert cmp.max_deviation > 1e-4


def test_per_pixel_mean_is_beta_times_pixels():
    model, x = tiny_vae(), batch()
    d = math.prod(SHAPE)
    summed_beta = rd.mean_reduction_beta(1.0, d)
    cmp = rd.compare_gradients(model, x, lambda m, xb: rd.beta_vae_terms(m, xb, beta=summed_beta)["loss"],
                               lambda m, xb: rd.per_pixel_mean_terms(m, xb, beta=1.0)["loss"])
    assert cmp.value_ratio == pytest.approx(1 / d, rel=1e-10)
    assert cmp.cosine == pytest.approx(1.0, abs=1e-12)


def test_rate_distortion_matches_direct_computation():
    model, x = tiny_vae(), batch(50)
    out = rd.rate_distortion(model, x, batch_size=7)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        assert out["rate"] == pytest.approx(float(gaussian_kl(mu, logvar).mean()), rel=1e-9)
        assert out["distortion_mean"] == pytest.approx(float(squared_error(x, model.decode(mu)).mean()), rel=1e-9)
        assert out["mean_abs_mu"] == pytest.approx(float(mu.norm(dim=1).mean()), rel=1e-9)
    assert out["mse_per_pixel"] == pytest.approx(out["distortion"] / math.prod(SHAPE))
    # sampled z costs more distortion on average than z = μ for an untrained decoder? at least it differs
    assert out["distortion"] != out["distortion_mean"]
    assert rd.rate_distortion(model, x, seed=3) == rd.rate_distortion(model, x, seed=3)


def test_optimal_c_minimises_the_gaussian_bound():
    d, dist, rate = 784, 35.0, 7.0
    c_star = rd.optimal_c(dist, d)
    assert c_star == pytest.approx(dist / d)
    best = rd.gaussian_neg_elbo(rate, dist, c_star, d)
    for factor in (0.5, 0.9, 1.1, 2.0):
        assert rd.gaussian_neg_elbo(rate, dist, c_star * factor, d) > best
    assert best == pytest.approx(d / 2 * (1 + math.log(2 * math.pi * c_star)) + rate)


def test_sigma_vae_loss_is_log_mse_plus_kl():
    model, x = tiny_vae(), batch()
    d = math.prod(SHAPE)
    torch.manual_seed(5)
    terms = {k: v.detach() for k, v in rd.sigma_vae_terms(model, x).items()}
    c = float(terms["c"])
    assert c == pytest.approx(float(terms["sq_err"]) / d)
    assert float(terms["rec"]) == pytest.approx(d / 2 * (1 + math.log(2 * math.pi * c)), rel=1e-9)
    assert float(terms["loss"]) == pytest.approx(float(terms["rec"] + terms["kl"]))
    with pytest.raises(ValueError):
        rd.sigma_vae_loss(min_c=0)


def test_active_units_counts_units_that_move():
    model = tiny_vae(latent_dim=5, dtype=torch.float32)
    with torch.no_grad():  # μ of units 2, 3, 4 made constant: they carry nothing about x
        model.encoder.head.weight[2:5].zero_()
    x = batch(200, dtype=torch.float32)
    act = rd.latent_activity(model, x)
    assert act.shape == (5,)
    assert (act[2:] == 0).all() and (act[:2] > 0).all()
    assert rd.active_units(model, x, threshold=1e-8) == 2
    with pytest.raises(ValueError):
        rd.active_units(model, x, threshold=0)


def test_sample_quality_and_distances():
    class Fixed(torch.nn.Module):  # "classifies" by the first pixel's row: class = index of the hot pixel
        def forward(self, x):
            return 10.0 * x.flatten(1)[:, :10]

    one_class = torch.zeros(20, *SHAPE)
    one_class[:, 0, 0, 3] = 1.0
    q = rd.sample_quality(Fixed(), one_class, reference=one_class)
    assert q["class_entropy"] == pytest.approx(0.0)
    assert q["nn_distance"] == pytest.approx(0.0, abs=1e-9)
    spread = torch.zeros(10, *SHAPE)
    for k in range(10):
        spread.view(10, -1)[k, k] = 1.0
    assert rd.sample_quality(Fixed(), spread)["class_entropy"] == pytest.approx(math.log2(10))
    # one class covers the ten-class reference badly
    assert rd.coverage_distance(one_class[:1], spread) > rd.coverage_distance(spread, spread)
    blurry = torch.full((4, *SHAPE), 0.5)
    assert rd.sharpness(blurry) == 0.0 and rd.sharpness(spread) > 0.0


def test_self_consistent_c_and_rank_correlation():
    cs = [1e-4, 1e-2, 1.0]
    assert rd.self_consistent_c(cs, [0.04, 0.04, 0.04]) == pytest.approx(0.04, rel=1e-9)
    assert math.isnan(rd.self_consistent_c(cs, [2.0, 2.0, 2.0]))
    assert rd.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rd.rank_correlation([1, 2, 3, 4], [5, 5, 1, 0]) < -0.9
    assert rd.rank_correlation([1, 2, 3], [20, 20, 0]) == pytest.approx(-math.sqrt(3) / 2)
    with pytest.raises(ValueError):
        rd.rank_correlation([1], [2])


def test_rate_distortion_averages_its_samples_per_image():
    model, x = tiny_vae(), batch(50)
    many = rd.rate_distortion(model, x, n_samples=400, batch_size=7)
    one = rd.rate_distortion(model, x, batch_size=50)
    for key in ("rate", "distortion_mean", "mean_abs_mu"):  # no noise in these: batching does not matter
        assert many[key] == pytest.approx(one[key], rel=1e-9)
    with torch.no_grad():  # E_q‖x − g(z)‖² by brute force, with other draws: the 400-draw mean is close to it
        mu, logvar = model.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(2000, *mu.shape, generator=torch.Generator().manual_seed(9),
                                                     dtype=mu.dtype)
        brute = float(squared_error(x.expand(2000, *x.shape).flatten(0, 1), model.decode(z.flatten(0, 1))).mean())
    assert many["distortion"] == pytest.approx(brute, rel=0.01)
    with pytest.raises(ValueError, match="n_samples"):
        rd.rate_distortion(model, x, n_samples=0)


def test_nearest_neighbour_distance_in_batches_matches_brute_force():
    a, b = batch(23, seed=2), batch(9, seed=3)
    brute = ((a.flatten(1)[:, None] - b.flatten(1)[None]) ** 2).sum(-1).min(1).values
    assert torch.allclose(rd.nearest_neighbour_distance(a, b, batch_size=5).double(), brute, rtol=1e-5)


def test_c_widget_shows_the_chosen_models_samples_and_plane():
    models = {1e-4: tiny_vae(seed=0, dtype=torch.float32).eval(), 1.0: tiny_vae(seed=1, dtype=torch.float32).eval()}
    z_prior = torch.randn(120, 2, generator=torch.Generator().manual_seed(0))
    w = rd.c_widget(models, z_prior, grid=10)
    assert w.controls["c"].options == ("0.0001", "1") and "c = 0.0001" in w.status.value
    before = w.image.value
    w.set(c="1")
    assert w.image.value != before
    assert "c = 1 ·" in w.status.value and w.last_decode_ms < 1000
    with torch.no_grad():  # the picture: model c = 1's decodes of the first 100 prior draws | of the latent square
        m = models[1.0]
        samples, plane = tile(m.decode(z_prior[:100]), 10), tile(m.decode(latent_plane(2, 3.0, 10)), 10)
    expected = np.concatenate([samples, np.ones((samples.shape[0], 8), dtype=samples.dtype), plane], axis=1)
    assert np.allclose(w.frame(), expected, atol=1e-6)
    assert not np.allclose(w.frame(c="0.0001"), expected, atol=1e-3)
    with pytest.raises(ValueError, match="2-D"):
        rd.c_widget({0.1: tiny_vae(latent_dim=3, dtype=torch.float32)}, torch.randn(100, 3))
    with pytest.raises(ValueError, match="at least 100"):
        rd.c_widget(models, z_prior[:50])
