"""Unit tests for vaecourse.elbo: exact pPCA evidence and posterior, the two ELBO identities, KL, gradients."""

import math

import pytest
import torch

from vaecourse import elbo as E
from vaecourse import fit
from vaecourse.elbo import (
    ESTIMATORS,
    GaussianEncoder,
    LinearGaussian,
    bound_figure,
    diag_scale_tril,
    elbo_gradient_samples,
    elbo_loss,
    elbo_monte_carlo,
    exact_elbo_gradient,
    figure_to_image,
    gaussian_kl_full,
    gradient_variance,
    importance_weighted_bound,
    kl_monte_carlo,
    log_normal,
    q_scale_2d,
)
from vaecourse.losses import gaussian_kl

F64 = torch.float64


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    model = LinearGaussian.random(6, 2, noise_var=0.5, overlap=0.8, generator=g)
    x, _ = model.sample(4, g)
    return model, x, g


def test_evidence_matches_numerical_integral(setup):
    model, x, _ = setup
    g = torch.linspace(-8, 8, 401, dtype=F64)
    zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    log_joint = model.log_joint(x[:1], zz[:, None, :])[:, 0]
    quad = torch.logsumexp(log_joint, 0) + 2 * math.log(float(g[1] - g[0]))
    assert abs(float(quad - model.log_evidence(x[:1])[0])) < 1e-6


def test_posterior_is_bayes_rule(setup):
    model, x, g = setup
    mean, scale = model.posterior(x)
    z = torch.randn(3, *mean.shape, dtype=F64, generator=g)
    lhs = log_normal(z, mean, scale)
    rhs = model.log_joint(x, z) - model.log_evidence(x)
    assert torch.allclose(lhs, rhs, atol=1e-10)


def test_evidence_equals_elbo_plus_kl_exactly(setup):
    model, x, g = setup
    mu = torch.randn(len(x), 2, dtype=F64, generator=g)
    scale = diag_scale_tril(torch.randn(len(x), 2, dtype=F64, generator=g))
    gap = model.log_evidence(x) - model.elbo(x, mu, scale) - model.kl_to_posterior(x, mu, scale)
    assert gap.abs().max() < 1e-10
    assert (model.kl_to_posterior(x, mu, scale) > 0).all()


def test_bound_tight_at_posterior_and_mc_has_zero_variance(setup):
    model, x, g = setup
    mean, scale = model.posterior(x)
    assert (model.log_evidence(x) - model.elbo(x, mean, scale)).abs().max() < 1e-10
    est, se = elbo_monte_carlo(model, x, mean, scale, 50, g)
    assert (est - model.log_evidence(x)).abs().max() < 1e-8 and se.max() < 1e-8


def test_mc_elbo_within_standard_errors(setup):
    model, x, g = setup
    mu = torch.zeros(len(x), 2, dtype=F64)
    scale = torch.eye(2, dtype=F64).expand(len(x), 2, 2)
    est, se = elbo_monte_carlo(model, x, mu, scale, 20000, g)
    z = (est - model.elbo(x, mu, scale)) / se
    assert z.abs().max() < 4.5


def test_kl_closed_forms_agree_and_match_mc(setup):
    _, _, g = setup
    mu, lv = torch.randn(5, 3, dtype=F64, generator=g), torch.randn(5, 3, dtype=F64, generator=g)
    zeros, eye = torch.zeros_like(mu), torch.eye(3, dtype=F64).expand(5, 3, 3)
    full = gaussian_kl_full(mu, diag_scale_tril(lv), zeros, eye)
    assert torch.allclose(full, gaussian_kl(mu, lv), atol=1e-12)
    est, se = kl_monte_carlo(mu, diag_scale_tril(lv), zeros, eye, 20000, g)
    assert ((est - full) / se).abs().max() < 4.5
    assert gaussian_kl_full(mu, diag_scale_tril(lv), mu, diag_scale_tril(lv)).abs().max() < 1e-12


def test_importance_weighted_bound_tightens(setup):
    model, x, g = setup
    mu, scale = torch.zeros(len(x), 2, dtype=F64), torch.eye(2, dtype=F64).expand(len(x), 2, 2)
    b1 = torch.stack([importance_weighted_bound(model, x, mu, scale, 1, g) for _ in range(200)]).mean(0)
    b100 = torch.stack([importance_weighted_bound(model, x, mu, scale, 100, g) for _ in range(200)]).mean(0)
    log_px = model.log_evidence(x)
    assert (b1 < b100).all() and (b100 < log_px + 0.05).all()


def test_gradient_estimators_unbiased_and_reparam_less_noisy(setup):
    model, x, g = setup
    mean, logvar = model.mean_field_posterior(x[:1])
    mu0, lv0 = 0.5 * mean[0], 0.5 * logvar[0]
    exact = exact_elbo_gradient(model, x[0], mu0, lv0)
    var = {}
    for est in ESTIMATORS:
        grads = elbo_gradient_samples(model, x[0], mu0, lv0, 4, 4000, est, g)
        z = (grads.mean(0) - exact) / (grads.std(0) / math.sqrt(len(grads)))
        assert z.abs().max() < 4.5, est
        var[est] = gradient_variance(grads)
    assert var["score"] > 10 * var["reparam"]
    assert var["score_baseline"] < var["score"]
    with pytest.raises(ValueError, match="estimator"):
        elbo_gradient_samples(model, x[0], mu0, lv0, 4, 10, "pathwise", g)


def test_encoder_training_closes_the_gap(setup):
    model, _, g = setup
    torch.manual_seed(0)
    x, _ = model.sample(512, g)
    enc = GaussianEncoder(6, 2, covariance="full").double().standardize(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add overhead
    try:
        hist = fit(enc, elbo_loss(model), (x,), epochs=30, batch_size=128, lr=6e-2, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert hist.series("elbo")[-1] > hist.series("elbo")[0] + 1.0
    with torch.no_grad():
        mu, scale = enc(x)
    assert float(model.kl_to_posterior(x, mu, scale).mean()) < 0.3


def test_fit_ml_maximises_the_likelihood(setup):
    model, _, g = setup
    x, _ = model.sample(2000, g)
    ml = LinearGaussian.fit_ml(x, 2)
    best = float(ml.log_evidence(x).mean())
    assert best > float(model.log_evidence(x).mean())          # beats even the true parameters on its data
    worse = ((1.1 * ml.W, ml.b, ml.noise_var), (ml.W, ml.b + 0.1, ml.noise_var), (ml.W, ml.b, 1.2 * ml.noise_var))
    for W, b, v in worse:
        assert float(LinearGaussian(W, b, v).log_evidence(x).mean()) < best
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=F64)
    assert abs(float(LinearGaussian(ml.W @ rot, ml.b, ml.noise_var).log_evidence(x).mean()) - best) < 1e-9
    lam = ml.posterior_precision()
    assert abs(float(lam[0, 1])) < 1e-8                          # orthogonal columns: a diagonal posterior
    with pytest.raises(ValueError, match="latent_dim"):
        LinearGaussian.fit_ml(x, 6)


def test_mean_field_is_the_best_diagonal_q(setup):
    model, x, _ = setup
    mean, logvar = model.mean_field_posterior(x)
    best = model.kl_to_posterior(x, mean, diag_scale_tril(logvar))
    for dl in (-0.2, 0.2):
        assert (model.kl_to_posterior(x, mean, diag_scale_tril(logvar + dl)) > best).all()
    assert (best > 0.1).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="noise_var"):
        LinearGaussian(torch.zeros(3, 2), torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="rho"):
        q_scale_2d([0.0, 0.0], rho=1.0)
    with pytest.raises(ValueError, match="covariance"):
        GaussianEncoder(3, 2, covariance="block")
    model = LinearGaussian.random(4, 2)
    with pytest.raises(ValueError, match="data_dim"):
        model.log_evidence(torch.zeros(2, 5, dtype=F64))
    with pytest.raises(ValueError, match="n_samples"):
        elbo_monte_carlo(model, torch.zeros(1, 4, dtype=F64), torch.zeros(1, 2, dtype=F64),
                         torch.eye(2, dtype=F64)[None], 1)


def test_bound_figure_draws_the_exact_bound_and_gap(setup):
    """The bar stands at log p(x), splits at the ELBO, and its gap is the closed-form KL(q‖p(z|x)); the left panel
    marks the exact posterior mean and q's mean."""
    model, x, _ = setup
    mean, scale = [0.5, -0.3], q_scale_2d([0.0, -0.5], 0.3)
    fig = bound_figure(model, x[0], mean, scale)
    ax, bx = fig.axes[:2]
    log_px = float(model.log_evidence(x[:1]))
    post_mean, post_scale = model.posterior(x[:1])
    q_mean = torch.tensor([mean], dtype=F64)
    kl = float(gaussian_kl_full(q_mean, scale.to(F64)[None], post_mean, post_scale))
    assert kl > 0.1  # q is not the posterior: there is a gap to draw
    red, orange = bx.patches[:2]
    assert red.get_y() + red.get_height() == pytest.approx(log_px - kl, abs=1e-6)  # the ELBO
    assert orange.get_y() == pytest.approx(log_px - kl, abs=1e-6)
    assert orange.get_height() == pytest.approx(kl, abs=1e-6)
    assert bx.lines[0].get_ydata()[0] == pytest.approx(log_px, abs=1e-6)
    labels = bx.get_legend_handles_labels()[1]
    assert f"gap = KL(q‖p(z|x)) = {kl:.2f}" in labels and f"log p(x) = {log_px:.2f}" in labels
    assert ax.lines[0].get_xydata()[0] == pytest.approx(post_mean[0].tolist(), abs=1e-6)
    assert ax.lines[1].get_xydata()[0] == pytest.approx(mean, abs=1e-6)
    width, height = fig.canvas.get_width_height()
    assert tuple(figure_to_image(fig).shape) == (3, height, width)


def test_bound_image_draws_the_gap_only_when_q_is_not_the_posterior():
    model = E.LinearGaussian.random(data_dim=6, latent_dim=2, noise_var=0.5, overlap=0.8,
                                    generator=torch.Generator().manual_seed(0))
    x = model.sample(1, torch.Generator().manual_seed(1))[0][0]
    pm, ps = model.posterior(x[None])
    orange = torch.tensor(E.ORANGE, dtype=torch.float32).view(3, 1, 1)

    def orange_pixels(img):
        return int(((img - orange).abs().sum(0) < 1e-6).sum())

    prior = E.bound_image(model, x, [0.0, 0.0], torch.eye(2, dtype=torch.float64))
    exact = E.bound_image(model, x, pm[0].tolist(), ps[0])
    assert prior.shape == exact.shape and prior.shape[0] == 3
    assert orange_pixels(prior) > 100 and orange_pixels(exact) == 0
    assert "gap KL(q‖p(z|x)) = 0.00" in E.bound_numbers(model, x, pm[0].tolist(), ps[0])


def test_bound_widget_draws_the_q_its_sliders_set():
    from vaecourse.plots import tile

    model = LinearGaussian.random(20, 2, noise_var=0.5, overlap=0.8, generator=torch.Generator().manual_seed(0))
    x = model.sample(1, torch.Generator().manual_seed(1))[0][0]
    w = E.bound_widget(model, x)
    before = w.image.value
    w.set(mu0=1.0, logvar1=-2.0, rho=-0.5)
    assert w.image.value != before
    assert "mu0 = +1.00" in w.status.value and "rho = -0.50" in w.status.value
    q = ([1.0, 0.0], q_scale_2d([0.0, -2.0], -0.5))
    assert torch.allclose(torch.as_tensor(w.frame()), torch.as_tensor(tile(E.bound_image(model, x, *q))))
    assert E.bound_numbers(model, x, *q) in w.status.value  # the caption quotes this q's ELBO and gap
    with pytest.raises(ValueError, match="2-D latent"):
        E.bound_widget(LinearGaussian.random(6, 3), torch.zeros(6, dtype=F64))
