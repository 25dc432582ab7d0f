"""The face VAE backbone: shapes at 32 and 64 px, a likelihood that is calibrated, errors that name the fix."""

import math

import pytest
import torch

import vaecourse as vc
from vaecourse import face_vae as fv
from vaecourse.faces import load_faces
from vaecourse.losses import gaussian_nll


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_at_both_sizes(size):
    torch.manual_seed(0)
    m = fv.FaceVAE(size, latent_dim=8, width=4)
    x = torch.rand(3, 3, size, size)
    out = m(x)
    assert out.mu.shape == (3, 8) and out.x_hat.shape == x.shape
    assert float(out.x_hat.detach().min()) >= 0 and float(out.x_hat.detach().max()) <= 1  # pixel means
    assert m.encoder.features(x).shape == (3, m.encoder.feature_dim)
    cond = fv.FaceEncoder(size, 5, width=4, cond_dim=2)
    assert cond(x, torch.ones(3, 2))[0].shape == (3, 5)


def test_channels_last_convs_compute_what_the_usual_layout_computes(monkeypatch):
    """The backbone's convs run channels-last for speed; callers see the same numbers and an NCHW tensor."""
    torch.manual_seed(0)
    vae = fv.FaceVAE(32, 8, 8)
    x = torch.rand(5, 3, 32, 32)
    mu, logvar = vae.encode(x)
    x_hat = vae.decode(mu)
    assert vae.encoder.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert x_hat.is_contiguous()  # the usual layout: .view() and friends work on it
    x_hat.sum().backward()
    grads = [p.grad.clone() for p in vae.parameters()]
    monkeypatch.setattr(fv, "CONV_LAYOUT", torch.contiguous_format)
    plain = fv.FaceVAE(32, 8, 8)
    plain.load_state_dict(vae.state_dict())
    assert plain.encoder.trunk[0].weight.is_contiguous()
    mu2, logvar2 = plain.encode(x)
    x_hat2 = plain.decode(mu2)
    x_hat2.sum().backward()
    torch.testing.assert_close(mu2, mu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logvar2, logvar, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_hat2, x_hat, rtol=1e-4, atol=1e-5)
    for g2, g in zip((p.grad for p in plain.parameters()), grads):
        torch.testing.assert_close(g2, g, rtol=1e-3, atol=1e-5)


def test_bad_input_names_the_fix():
    m = fv.FaceVAE(32, latent_dim=8, width=4)
    with pytest.raises(ValueError, match="N×3×32×32"):
        m(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="N×8"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="32 or 64"):
        fv.FaceVAE(48)
    with pytest.raises(ValueError, match="'optimal'"):
        fv.FaceVAE(32, c="sharp")
    with pytest.raises(ValueError, match="positive finite"):
        fv.GaussianLikelihood(float("nan"))
    with pytest.raises(ValueError, match="non-negative"):
        fv.FaceVAE(32, beta=-1.0)
    enc = fv.FaceEncoder(32, 4, width=4, cond_dim=2)
    with pytest.raises(ValueError, match="cond of shape"):
        enc(torch.rand(2, 3, 32, 32))


def test_optimal_c_is_the_batch_error_and_its_gradient_that_of_half_d_log_mse():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    x_hat = (x + 0.05 * torch.randn_like(x)).requires_grad_()
    lik = fv.GaussianLikelihood("optimal")
    nll, c = lik(x, x_hat)
    mse = (x - x_hat).pow(2).mean()
    assert math.isclose(float(c), float(mse), rel_tol=1e-6)
    d = x[0].numel()
    # with c = MSE the scaled error is D/2 per image on average, the constant D/2 log(2πc)
    assert math.isclose(float(nll.mean()), d / 2 + d / 2 * math.log(2 * math.pi * float(mse)), rel_tol=1e-5)
    (g,) = torch.autograd.grad(nll.mean(), x_hat)
    x_hat2 = x_hat.detach().clone().requires_grad_()
    (g2,) = torch.autograd.grad(0.5 * d * torch.log((x - x_hat2).pow(2).mean()), x_hat2)
    assert torch.allclose(g, g2, rtol=1e-4, atol=1e-9)


def test_fixed_c_is_the_gaussian_nll_and_learned_c_finds_the_error():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    x_hat = x + 0.1 * torch.randn_like(x)
    nll, _ = fv.GaussianLikelihood(0.05)(x, x_hat)
    assert torch.allclose(nll, gaussian_nll(x, x_hat, 0.05, constant=True), rtol=1e-5)
    lik = fv.GaussianLikelihood("learned", init_c=0.5)
    opt = torch.optim.Adam(lik.parameters(), lr=0.1)
    for _ in range(300):
        loss = lik(x, x_hat)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isclose(lik.c, float((x - x_hat).pow(2).mean()), rel_tol=0.02)


def test_a_trained_backbone_is_calibrated_on_held_out_faces():
    """c (the running σ-VAE variance) equals the held-out squared error per pixel, and the error falls far."""
    torch.set_num_threads(1)
    train = load_faces("train", n=1024)
    test = load_faces("test", n=256)
    vc.seed_everything(0)
    m = fv.FaceVAE(32, latent_dim=16, width=8)
    start = fv.held_out_mse(m, test.images)
    hist = vc.fit(m, fv.face_vae_loss(), [train.images], epochs=10, batch_size=64, lr=2e-3, progress=False)
    held_out = fv.held_out_mse(m, test.images)
    assert hist.last("loss") < hist.series("loss")[0]
    assert held_out < 0.5 * start, (start, held_out)  # seeds 0-2: 0.35-0.41 of the start
    # 10 epochs on 1,024 faces: training and held-out errors still agree (seeds 0-2: c / held-out 1.09-1.10)
    assert abs(m.likelihood.c / held_out - 1) < 0.25, (m.likelihood.c, held_out)


def test_equivalent_c():
    # w·‖x − x̂‖² + KL is the ELBO with c = 1/(2w); scaling both weights keeps c
    assert fv.equivalent_c(10.0) == pytest.approx(0.05)
    assert fv.equivalent_c(30.0, kl_weight=3.0) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        fv.equivalent_c(0.0)


@pytest.mark.parametrize("kind, shape", [("mlp", (1, 8, 8)), ("conv", (1, 28, 28)), ("face", (3, 32, 32))])
def test_one_builder_makes_every_lesson_net(kind, shape):
    from vaecourse.nets import build_decoder, build_encoder

    enc = build_encoder(shape, 5, kind, hidden=(16,), channels=(4, 8, 4), width=4)
    torch.manual_seed(0)
    dec = build_decoder(shape, 5, kind, hidden=(16,), channels=(4, 8, 4), width=4, logits=True)
    torch.manual_seed(0)
    dec_means = build_decoder(shape, 5, kind, hidden=(16,), channels=(4, 8, 4), width=4)
    mu, logvar = enc(torch.rand(2, *shape))
    assert mu.shape == logvar.shape == (2, 5)
    out = dec(mu)
    assert out.shape == (2, *shape)
    # the same weights with and without the last sigmoid: logits=True only leaves it out
    assert torch.allclose(torch.sigmoid(out), dec_means(mu), atol=1e-6)
    with pytest.raises(ValueError, match="unknown net kind"):
        build_encoder(shape, 5, "resnet")
    with pytest.raises(ValueError, match="square RGB"):
        build_decoder((1, 28, 28), 5, "face")
