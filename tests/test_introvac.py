"""Unit tests for vaecourse.introvac: edits along the normal, the VAC loss, Algorithm 1's two steps, Langevin."""

import math

import numpy as np
import pytest
import torch

from vaecourse import fit
from vaecourse.face_vae import FaceDecoder, FaceEncoder, GaussianLikelihood
from vaecourse.introvac import (
    PAPER_BETAS,
    VAC,
    Betas,
    Calibrated,
    calibrated_weights,
    choose_confidences,
    confident_deltas,
    confident_edit_function,
    confident_move,
    edit_function,
    edit_widget,
    energy,
    face_vac,
    first_plain_face,
    introvac_optimizers,
    introvac_step,
    langevin_sample,
    langevin_widget,
    laplace_scale,
    reread_accepts,
    vac_loss,
    vac_terms,
)
from vaecourse.nets import MLPDecoder, MLPEncoder
from vaecourse.plots import tile


def toy(n=256, seed=0):
    """4x4 grey images: attribute 1 = a bright top half; brightness of the bottom half is a nuisance."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).float()
    x = 0.2 * torch.rand(n, 1, 4, 4, generator=g)
    x[:, :, :2] += 0.7 * y[:, None, None, None]
    x[:, :, 2:] += 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    return x.clamp(0, 1), y[:, None]


def make(latent=2, fake=False, seed=0):
    torch.manual_seed(seed)
    enc = MLPEncoder((1, 4, 4), latent, hidden=(32,))
    dec = MLPDecoder((1, 4, 4), latent, hidden=(32,))
    return VAC(enc, dec, 1, fake_logit=fake, attribute_names=["top"])


def test_edit_moves_the_logit_by_delta_times_norm():
    model = make(latent=5)
    z = torch.randn(7, 5)
    w = model.classifier.weight[0].detach()
    for delta in (-3.0, 4.0):
        moved = model.edit_latent(z, {"top": delta})
        gain = model.class_logits(moved) - model.class_logits(z)
        assert torch.allclose(gain[:, 0], torch.full((7,), delta * float(w.norm())), atol=1e-5)
        # the move is orthogonal to the hyperplane: nothing else in the code changes
        assert torch.allclose((moved - z).norm(dim=1), torch.full((7,), abs(delta)), atol=1e-5)


def test_vac_learns_the_attribute_and_reconstructs():
    x, y = toy()
    model = make()
    with torch.no_grad():
        before = vac_terms(model.eval(), x, y)
    hist = fit(model, vac_loss(), [x, y], epochs=20, batch_size=64, lr=1e-2, progress=False)
    with torch.no_grad():
        after = vac_terms(model.eval(), x, y)
    assert hist.series("loss")[-1] < 0.6 * hist.series("loss")[0]
    assert float(after["acc"]) > 0.95 > float(before["acc"]) - 0.3
    assert float(after["l1"]) < float(before["l1"])
    # an edit of +3 along w/|w| from images without the attribute makes the classifier say "has it"
    with torch.no_grad():
        mu = model.encode(x[y[:, 0] == 0])[0]
        flipped = (model.class_logits(model.edit_latent(mu, {"top": 3.0})) > 0).float().mean()
        # and the decoded edit really has a brighter top half
        img = model.decode(model.edit_latent(mu, {"top": 3.0}))
        gain = float(img[:, :, :2].mean() - model.decode(mu)[:, :, :2].mean())
    assert float(flipped) > 0.9
    assert gain > 0.2


def test_labels_are_checked():
    model = make()
    with pytest.raises(ValueError, match="N×1.*n_attributes matching"):
        vac_terms(model, torch.rand(4, 1, 4, 4), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="fake_logit=True"):
        introvac_optimizers(model)
    with pytest.raises(ValueError, match="non-negative"):
        Betas(g=-1.0)


def test_introvac_step_discriminator_learns_fake_vs_real():
    x, y = toy()
    model = make(fake=True)
    opts = introvac_optimizers(model, lr=1e-2)
    # only the encoder/classifier game: they must learn to call reconstructions and samples fake, real images real
    step = introvac_step(model, opts, Betas(ae=0.0, cl=4.0, reg=0.0, g=0.0, ec=1.0))
    dec_before = [p.detach().clone() for p in model.decoder.parameters()]
    for _ in range(80):
        terms = step((x[:32], y[:32]))
    with torch.no_grad():
        p_real = torch.sigmoid(model.classifier(model.encode(x)[0])[:, -1]).mean()
    assert float(terms["p_fake_rec"]) > float(p_real) + 0.3
    assert float(terms["p_fake_gen"]) > float(p_real) + 0.3
    # with beta_AE = beta_G = 0 the decoder gets no gradient and must not move
    assert all(torch.equal(a, b) for a, b in zip(dec_before, model.decoder.parameters()))


def test_introvac_decoder_step_leaves_encoder_alone_and_trains():
    x, y = toy()
    model = make(fake=True)
    opts = introvac_optimizers(model, lr=3e-3)
    # only the decoder's adversarial term: encoder and classifier get no gradient (Adam with zero grad: no move)
    step = introvac_step(model, opts, Betas(ae=0.0, cl=0.0, reg=0.0, g=1.0, ec=0.0))
    enc_before = [p.detach().clone() for p in [*model.encoder.parameters(), *model.classifier.parameters()]]
    dec_before = [p.detach().clone() for p in model.decoder.parameters()]
    step((x[:64], y[:64]))
    assert all(torch.equal(a, b) for a, b in zip(enc_before, [*model.encoder.parameters(),
                                                              *model.classifier.parameters()]))
    assert any(not torch.equal(a, b) for a, b in zip(dec_before, model.decoder.parameters()))
    # the full objective trains without autograd errors and the reconstruction improves
    model = make(fake=True)
    opts = introvac_optimizers(model, lr=1e-2)
    hist = fit(model, None, [x, y], epochs=12, batch_size=64, progress=False,
               train_step=introvac_step(model, opts), optimizers=opts)
    assert hist.series("l1")[-1] < 0.8 * hist.series("l1")[0]
    assert hist.last("acc") > 0.9


def test_langevin_takes_the_step_it_is_given():
    # lesson 06 passes its exercise's step; the same update as the package's gives the same chains
    model = make(latent=2)
    seen = []

    def step(z, grad, alpha, noise):
        seen.append(z.requires_grad)
        return z - alpha * grad + math.sqrt(2 * alpha) * noise

    a, b = (langevin_sample(model, {"top": 1}, n=8, steps=20, alpha=0.01, step=s,
                            generator=torch.Generator().manual_seed(0)) for s in (step, None))
    assert torch.equal(a.z, b.z) and a.energy == b.energy
    assert len(seen) == 20 and not any(seen), "the step gets detached states, once per step"
    frozen = langevin_sample(model, {"top": 1}, n=8, steps=5, z0=b.z, step=lambda z, g, alpha, e: z)
    assert torch.equal(frozen.z, b.z)


def test_introvac_step_runs_in_float64():
    # the prior codes Z_g take the model's dtype (a float64 model is how lesson 06's test compares steps)
    model = make(fake=True).double()
    x, y = toy(16)
    terms = introvac_step(model, introvac_optimizers(model), calibrated_weights(2, 1))((x.double(), y))
    assert terms["loss"].dtype == torch.float64 and math.isfinite(float(terms["loss"]))


def test_langevin_matches_the_exact_conditional():
    model = make(latent=2)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[2.0, 0.0]]))
        model.classifier.bias.fill_(-1.0)
    g = torch.Generator().manual_seed(0)
    res = langevin_sample(model, {"top": 1}, n=3000, steps=300, alpha=0.01, generator=g)
    # exact E[z0 | y=1] for p(z0|y=1) ∝ sigmoid(2 z0 - 1) N(z0; 0, 1), by quadrature
    t = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    dens = torch.sigmoid(2 * t - 1) * torch.exp(-t ** 2 / 2)
    exact = float((t * dens).sum() / dens.sum())
    assert abs(float(res.z[:, 0].mean()) - exact) < 0.06
    assert abs(float(res.z[:, 1].std()) - 1.0) < 0.08  # the free direction stays N(0, 1)
    p_y = float((dens.sum() * (t[1] - t[0])) / math.sqrt(2 * math.pi))
    assert res.acceptance > p_y + 0.1  # better than drawing from the prior
    assert model.classifier.weight.grad is None  # nothing accumulates in .grad across steps
    with torch.no_grad():  # a widget renders under no_grad: the sampler still gets its gradients
        assert langevin_sample(model, [1.0], n=4, steps=3, alpha=0.01).z.shape == (4, 2)
    assert res.energy[-1] < res.energy[0] + 1.0
    # the energy is BCE + |z|^2/2
    z = torch.zeros(1, 2)
    u = energy(model, z, torch.ones(1), torch.ones(1))
    assert abs(float(u.detach()) - math.log1p(math.e)) < 1e-5


def test_reread_accepts_reads_the_drawn_image_back():
    x, y, model = trained_toy_vac()
    z = torch.randn(40, 3, generator=torch.Generator().manual_seed(3)) * 2
    with torch.no_grad():
        reread = model.class_logits(model.encode(model.decode(z))[0])[:, 0] > 0
        latent = model.class_logits(z)[:, 0] > 0
    assert torch.equal(reread_accepts(model, z, {"top": 1}, batch_size=7), reread)
    assert torch.equal(reread_accepts(model, z, [0.0]), ~reread)
    # the re-read is a different test from the latent classifier's: on this toy they disagree on some codes
    assert bool((reread != latent).any())
    # a code far along -w is drawn without the attribute and read back so
    w = model.classifier.weight[0].detach()
    far = (-4 * w / w.norm())[None]
    assert not bool(reread_accepts(model, far, {"top": 1})[0]) and bool(reread_accepts(model, far, {"top": 0})[0])
    model.train()  # read in eval mode (posterior means), then handed back in the mode it came in
    assert torch.equal(reread_accepts(model, z, {"top": 1}), reread) and model.training
    with pytest.raises(ValueError, match="0 or 1"):
        reread_accepts(model, z, [0.5])


def test_introspective_copy_keeps_attribute_logits():
    model = make(latent=3)
    intro = model.introspective_copy()
    z = torch.randn(5, 3)
    assert intro.fake_logit and intro.classifier.out_features == 2
    assert torch.allclose(intro.class_logits(z), model.class_logits(z))
    assert torch.allclose(intro.classifier(z)[:, -1], torch.zeros(5))
    assert intro.encoder is not model.encoder


def test_edit_widget_decodes_original_reconstruction_and_edit():
    x, y = toy(12)
    models = {"VAC": make(latent=3, seed=1), "IntroVAC": make(latent=3, seed=2).introspective_copy()}
    w = edit_widget(models, x, y)
    assert w.controls["image"].value == first_plain_face(y) and w.controls["model"].value == "IntroVAC"
    before = w.image.value
    w.set(top=3.0)
    assert w.image.value != before
    assert "top = +3.00" in w.status.value and "model = IntroVAC" in w.status.value
    # the picture is x, G(μ), G(μ + 3·w/|w|) of the chosen face and model
    w.set(image=5, model="VAC")
    m = models["VAC"]
    with torch.no_grad():
        mu = m.encode(x[5:6])[0]
        expected = tile(torch.cat([x[5:6], m.decode(mu), m.decode(mu + 3.0 * m.directions()[0])]), 3)
    assert np.allclose(w.frame(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="no attribute 'smile'"):
        edit_widget(models, x, attributes=["smile"])


def test_langevin_widget_pages_through_chains_run_once():
    model = make(latent=3).introspective_copy()
    w = langevin_widget(model, steps=20, alpha=0.01, n=6, shown=4, seed=7)
    # the chains ran when the widget was built: the sampler's chains with the generator seeded seed
    res = langevin_sample(model, {"top": 1}, n=6, steps=20, alpha=0.01, generator=torch.Generator().manual_seed(7))
    z = res.z[res.accepted] if res.accepted.any() else res.z
    with torch.no_grad():
        assert np.allclose(w.frame(), tile(model.decode(z[torch.arange(4) % len(z)]), 4), atol=1e-6)
    first = w.image.value
    w.button.click()
    assert w.controls["draws"].value == 1 and "draws = 1" in w.status.value and "attribute = top" in w.status.value
    # draw 1 is the next page of the pool, wrapping round to its start
    with torch.no_grad():
        expected = model.decode(z[torch.arange(4, 8) % len(z)])
    assert np.allclose(w.frame(), tile(expected, 4), atol=1e-6)
    if len(z) > 4:
        assert w.image.value != first
    # a pool given by the notebook is used as it is, and one missing an attribute is a clear error
    given = torch.randn(5, 3)
    w = langevin_widget(model, {"top": given}, shown=2)
    w.button.click()
    with torch.no_grad():
        assert np.allclose(w.frame(), tile(model.decode(given[2:4]), 2), atol=1e-6)
    with pytest.raises(ValueError, match="pool"):
        langevin_widget(model, {"other": given})


# ----------------------------------------------------------------------------- the calibrated objective
def test_calibrated_weights_keep_the_papers_ratios_to_the_kl():
    w = calibrated_weights(32, 2)
    # one nat of KL costs beta_reg/d = 3/32 in the paper: every weight is divided by that
    assert w.kl == 1.0 and math.isclose(w.cl, 10 / 2 * 32 / 3) and math.isclose(w.g, 5 * 32 / 3)
    assert math.isclose(w.ec, 0.01 * 32 / 3)
    assert calibrated_weights(32, 2, ec=0.0).ec == 0.0 and math.isclose(calibrated_weights(32, 2, game=2).g, 2 * w.g)
    # the paper's L1 term is a Laplace decoder of scale beta_reg·D/(beta_AE·d): about 3 pixel units at 32 px
    assert math.isclose(laplace_scale(PAPER_BETAS, 3 * 32 * 32, 32), 2.88)
    with pytest.raises(ValueError, match="latent_dim"):
        calibrated_weights(0, 2)
    with pytest.raises(ValueError, match="game"):
        calibrated_weights(32, 2, game=float("nan"))
    with pytest.raises(ValueError, match="non-negative"):
        Calibrated(cl=1.0, g=-1.0, ec=0.0)
    with pytest.raises(ValueError, match="β_AE and β_reg"):
        laplace_scale(Betas(ae=0.0), 3072, 32)


def test_scaled_calibrated_weights_train_as_a_larger_decoder_variance():
    """Calibrated.scaled(k) at variance c gives k times the gradient of the unscaled weights at variance k·c."""
    x, y = toy()
    k = 4.0
    w = Calibrated(cl=2.0, g=3.0, ec=0.5, kl=1.5)
    grads = []
    for weights, c_factor, factor in [(w.scaled(k), 1.0, 1.0), (w, k, k)]:
        model = make(latent=3)
        model.likelihood = GaussianLikelihood(0.01 * c_factor)
        torch.manual_seed(1)  # the same reparameterisation noise for both
        (factor * vac_loss(weights)(model, (x[:16], y[:16]))["loss"]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    s = w.scaled(k)
    assert (s.cl, s.g, s.ec, s.kl) == (8.0, 12.0, 2.0, 6.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            w.scaled(bad)


def test_calibrated_objective_is_the_elbo_with_the_sigma_vae_c():
    x, y = toy()
    model = make(latent=3).eval()
    w = Calibrated(cl=2.0, g=0.0, ec=0.0)
    with torch.no_grad():
        t = vac_terms(model, x, y, w)
        mu, logvar = model.encode(x)
        x_hat = model.decode(mu)
        c = (x - x_hat).pow(2).mean()
        d = x[0].numel()
        nll = (x - x_hat).pow(2).flatten(1).sum(1) / (2 * c) + 0.5 * d * torch.log(2 * math.pi * c)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(model.classifier(mu), y, reduction="none").sum(1)
    assert torch.allclose(t["c"], c) and torch.allclose(t["loss"], (nll + kl + 2.0 * bce).mean(), rtol=1e-5)
    with pytest.raises(TypeError, match="Betas.*Calibrated"):
        vac_terms(model, x, y, {"cl": 1.0})
    # it trains: the error falls, the classifier learns, c is each batch's error and its running mean follows it down
    model = make(latent=3).train()
    hist = fit(model, vac_loss(w), [x, y], epochs=20, batch_size=64, lr=1e-2, progress=False)
    assert hist.series("mse")[-1] < 0.5 * hist.series("mse")[0] and hist.last("acc") > 0.9
    assert hist.series("c") == hist.series("mse")
    assert model.likelihood.c < 0.25 * hist.series("mse")[0]


def test_introvac_step_with_calibrated_weights_and_the_ablation():
    x, y = toy()
    for ec in (None, 0.0):
        model = make(fake=True)
        opts = introvac_optimizers(model, lr=1e-2)
        w = calibrated_weights(2, 1, ec=ec)
        hist = fit(model, None, [x, y], epochs=12, batch_size=64, progress=False,
                   train_step=introvac_step(model, opts, w), optimizers=opts)
        assert hist.series("mse")[-1] < 0.6 * hist.series("mse")[0] and hist.last("acc") > 0.9
        assert all(k in hist.epochs[-1] for k in ("l_ec", "l_g", "p_fake_rec", "p_fake_gen", "c"))


def trained_toy_vac():
    """The toy data and a small VAC trained on it (classifier only, no game), in eval mode."""
    x, y = toy()
    model = make(latent=3)
    fit(model, vac_loss(Calibrated(cl=4.0, g=0.0, ec=0.0)), [x, y], epochs=20, batch_size=64, lr=1e-2,
        progress=False)
    return x, y, model.eval()


def test_deltas_chosen_on_validation_faces_make_the_classifier_sure():
    x, y, model = trained_toy_vac()
    deltas = confident_deltas(model, x, y)
    assert set(deltas) == {("top", "add"), ("top", "remove")} and all(d > 0 for d in deltas.values())
    edit = edit_function(model, deltas)
    with torch.no_grad():
        mu = model.encode(x[y[:, 0] == 0])[0]
        moved = mu + deltas[("top", "add")] * model.directions()[0]
        assert float((torch.sigmoid(model.class_logits(moved)) > 0.9).float().mean()) >= 0.9
        assert torch.allclose(edit(x[y[:, 0] == 0], "top", "add"), model.decode(moved), atol=1e-6)
    # the random baseline moves each face by the same δ along a random direction of its own
    from vaecourse.edits import random_latent_step
    with torch.no_grad():
        d = deltas[("top", "remove")]
        want = model.decode(random_latent_step(d, torch.Generator().manual_seed(5))(model.encode(x[:4])[0], "remove"))
        baseline = edit_function(model, deltas, random=torch.Generator().manual_seed(5))
        assert torch.allclose(baseline(x[:4], "top", "remove"), want, atol=1e-6)
    with pytest.raises(ValueError, match="same faces"):
        confident_deltas(model, x, y[:10])
    with pytest.raises(ValueError, match="no validation face without"):
        confident_deltas(model, x[y[:, 0] == 1], y[y[:, 0] == 1])
    with pytest.raises(ValueError, match="finite"):
        edit_function(model, {("top", "add"): float("inf")})
    with pytest.raises(ValueError, match="confident_deltas"):
        edit_function(model, {("top", "add"): 1.0})(x[:2], "top", "remove")
    with pytest.raises(ValueError, match="no attribute 'smile'"):
        edit_function(model, deltas)(x[:2], "smile", "add")


def test_confident_edits_move_each_face_until_the_classifier_is_sure():
    x, y, model = trained_toy_vac()
    lacking = x[y[:, 0] == 0]
    with torch.no_grad():
        mu = model.encode(lacking)[0]
        moved, deltas = confident_move(model, mu, "top", "add", 0.99)
        assert bool((torch.sigmoid(model.class_logits(moved)[:, 0]) >= 0.99).all())
        assert float(deltas.std()) > 0  # not one δ for all faces
        shorter = (moved - model.directions()[0] / model.directions()[0].norm() * 0.25)
        already = torch.sigmoid(model.class_logits(shorter)[:, 0]) >= 0.99
        assert not bool(already[deltas > 0.25].any())  # one grid step less would not have been enough
        edit = confident_edit_function(model, 0.99)
        assert torch.allclose(edit(lacking, "top", "add"), model.decode(moved), atol=1e-6)
        baseline = confident_edit_function(model, 0.99, random=torch.Generator().manual_seed(3))(lacking, "top", "add")
        assert not torch.allclose(baseline, model.decode(moved), atol=1e-3)
    with pytest.raises(ValueError, match="choose_confidences"):
        confident_edit_function(model, {("top", "add"): 0.9})(x[:2], "top", "remove")
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        confident_edit_function(model, 0.3)(x[:2], "top", "add")


def test_confidences_are_chosen_by_success_minus_leakage(monkeypatch):
    import vaecourse.edits as edits_module

    model = face_vac(["glasses", "facial_hair"], size=32, latent_dim=8, width=4)
    # a stand-in for the oracle's scores: success rises with the confidence, leakage rises faster past 0.99
    scores = {0.9: (0.70, 0.05), 0.99: (0.95, 0.08), 0.999: (0.99, 0.20)}

    def fake_measure(oracle, name, attributes, *args, edit, **kwargs):
        c = fake_measure.current
        return [{"model": name, "attribute": a, "direction": d, "method": "edit", "n": 10,
                 "success": scores[c][0], "attribute_leakage": scores[c][1], "factor_leakage": 0.0}
                for a in attributes for d in ("add", "remove")]

    real = confident_edit_function

    def spy(model, confidence, *a, **k):
        fake_measure.current = confidence
        return real(model, confidence, *a, **k)

    monkeypatch.setattr(edits_module, "measure_edits", fake_measure)
    monkeypatch.setattr("vaecourse.introvac.latent_edits.confident_edit_function", spy)
    chosen, sweep = choose_confidences(model, None, "m", torch.zeros(4, 3, 32, 32), torch.zeros(4, 3),
                                       torch.zeros(4, 12), grid=(0.9, 0.99, 0.999))
    assert set(chosen.values()) == {0.99} and len(sweep) == 3 * 4  # 0.95 - 0.08 beats 0.65 and 0.79
    with pytest.raises(ValueError, match="probabilities"):
        choose_confidences(model, None, "m", torch.zeros(4, 3, 32, 32), torch.zeros(4, 3), torch.zeros(4, 12),
                           grid=(0.4,))


def test_face_vac_is_the_backbone_with_a_linear_head():
    model = face_vac(["glasses", "facial_hair"], size=32, latent_dim=8, width=4)
    assert isinstance(model.encoder, FaceEncoder) and isinstance(model.decoder, FaceDecoder)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model.class_logits(torch.randn(3, 8)).shape == (3, 2)
    assert model.decode(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="list of names"):
        face_vac("glasses")
