"""Unit tests for vaecourse.csvae: shapes, priors, the min-max step's parameter bookkeeping, and the toy."""

import math

import numpy as np
import pytest
import torch

import vaecourse as vc
from vaecourse import csvae as cs
from vaecourse import losses
from vaecourse.losses import bernoulli_entropy, bernoulli_nll
from vaecourse.plots import tile


def test_prior_params_per_label_value():
    prior = cs.SubspacePrior()
    mu, logvar = prior.params(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), w_dim=2)
    assert mu.tolist() == [[0, 0, 3, 3], [3, 3, 0, 0]]
    assert torch.allclose(logvar.exp(), torch.tensor([[0.1, 0.1, 1, 1], [1, 1, 0.1, 0.1]]))


def test_adversary_entropy_and_cross_entropy_closed_form():
    """The two adversarial terms (from vaecourse.losses) on N×k label logits: nats per example, summed over k."""
    logits = torch.tensor([[0.0, 0.0], [20.0, -20.0]])
    h = bernoulli_entropy(logits)
    assert h[0].item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert h[1].item() == pytest.approx(0.0, abs=1e-6)
    ce = bernoulli_nll(torch.ones(1, 1), torch.zeros(1, 1))
    assert ce.item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("shape", [(3,), (3, 32, 32)])
def test_models_shapes_and_transfer(shape):
    x = torch.rand(5, *shape)
    y = torch.randint(0, 2, (5, 2)).float()
    for model in (cs.CVAE(shape, 2, 4, width=4), cs.CVAE(shape, 2, 4, info=True, width=4),
                  cs.CSVAE(shape, 2, 4, 2, width=4)):
        out = model(x, y)
        assert out["x_hat"].shape == x.shape
        assert out["z"].shape == (5, 4)
        assert model.transfer(x, y, 1 - y).shape == x.shape


def test_csvae_transfer_sets_changed_subspace_to_prior_mean_only():
    torch.manual_seed(0)
    model = cs.CSVAE((3,), 2, 2, 2).eval()
    x, y = torch.randn(4, 3), torch.tensor([[0.0, 1.0]] * 4)
    y_new = torch.tensor([[1.0, 1.0]] * 4)  # only attribute 0 changes
    seen = {}
    model.decode = lambda z, w: seen.setdefault("w", w) @ torch.ones(4, 3)  # capture the w that is decoded
    model.transfer(x, y, y_new)
    _, _, mu_w, _ = model.encode(x, y)
    assert torch.allclose(seen["w"][:, :2], torch.full((4, 2), 3.0))
    assert torch.allclose(seen["w"][:, 2:], mu_w[:, 2:])


def test_bad_labels_raise_clear_error():
    model = cs.CSVAE((3,), 2, 2, 2)
    with pytest.raises(ValueError, match=r"N×2 binary.*got shape \(4, 3\).*data.labels\[:, columns\]"):
        model(torch.randn(4, 3), torch.zeros(4, 3))


def test_adversarial_step_touches_the_right_parameters():
    """The adversary's step must not move the VAE, and the VAE's step must not move the adversary."""
    torch.manual_seed(0)
    model = cs.CSVAE((3,), 1, 2, 2)
    opts = cs.make_optimizers(model)
    vae_before = [p.detach().clone() for p in model.vae_parameters()]
    adv_before = [p.detach().clone() for p in model.adversary.parameters()]
    # Freeze the VAE's optimiser: after a step, only the adversary may have moved.
    opts_adv_only = {"vae": torch.optim.SGD(model.vae_parameters(), lr=0.0), "adversary": opts["adversary"]}
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32, 1)).float()
    cs.adversarial_step(model, opts_adv_only)((x, y))
    assert all(torch.equal(a, b) for a, b in zip(vae_before, model.vae_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(adv_before, model.adversary.parameters()))
    # Freeze the adversary's optimiser: after a step, only the VAE may have moved, and no gradient reached it.
    adv_now = [p.detach().clone() for p in model.adversary.parameters()]
    opts_vae_only = {"vae": opts["vae"], "adversary": torch.optim.SGD(model.adversary.parameters(), lr=0.0)}
    terms = cs.adversarial_step(model, opts_vae_only)((x, y))
    assert all(torch.equal(a, b) for a, b in zip(adv_now, model.adversary.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, model.vae_parameters()))
    assert {"loss", "sq_err", "kl_w", "kl_z", "entropy", "adv_acc", "adv_ce"} <= set(terms)


def test_step_needs_matching_optimizers():
    model = cs.CVAE((3,), 1, 2)
    with pytest.raises(ValueError, match="adversary"):
        cs.adversarial_step(model, cs.make_optimizers(cs.CVAE((3,), 1, 2, info=True)) | {"vae": None})


def test_probe_and_majority():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 2))
    y = (f[:, 0] > 0).astype(float)
    assert cs.probe_accuracy(f[:300], y[:300], f[300:], y[300:])[0] > 0.9
    assert cs.majority_rate(np.ones(10), np.array([1, 1, 0, 0]))[0] == 0.5


def test_toy_csvae_separates_w_not_z():
    """A short run on the swiss roll: y is linearly readable from w, and the loss falls."""
    vc.seed_everything(0)
    x, y, _, scaling = cs.swiss_roll(800, seed=0)
    xt, yt, _, _ = cs.swiss_roll(400, seed=1)
    model = cs.CSVAE((3,), 1, 2, 2, c=cs.PAPER_C)
    opts = cs.make_optimizers(model, adversary_lr=3e-3)
    hist = vc.fit(model, None, (x, y), epochs=10, batch_size=128, train_step=cs.adversarial_step(model, opts,
                  adversary_steps=2), optimizers=opts, progress=False)
    assert hist.series("sq_err")[-1] < 0.5 * hist.series("sq_err")[0]
    lat, lat_t = cs.encode_all(model, x, y), cs.encode_all(model, xt, yt)
    assert cs.probe_accuracy(lat["w"], y, lat_t["w"], yt)[0] > 0.85
    height, _ = cs.roll_coordinates(cs.batched_transfer(model, xt, yt, 1 - yt), scaling)
    assert ((height > 10.5) == (yt[:, 0].numpy() < 0.5)).mean() > 0.8



def test_measuring_helpers_batch_in_order_and_keep_the_mode():
    torch.manual_seed(0)
    model = cs.CSVAE((3,), 2, 2, 2)
    x, y = torch.randn(7, 3), torch.randint(0, 2, (7, 2)).float()
    lat = cs.encode_all(model, x, y, batch_size=3)
    assert model.training  # given back in the mode it was in
    mu_z, _, mu_w, _ = model.eval().encode(x, y)
    assert torch.allclose(lat["z"], mu_z, atol=1e-6) and torch.allclose(lat["w"], mu_w, atol=1e-6)
    assert torch.allclose(cs.batched_transfer(model, x, y, 1 - y, batch_size=3), model.transfer(x, y, 1 - y), atol=1e-6)
    with torch.no_grad():
        err = float((model(x, y)["x_hat"] - x).pow(2).sum(1).mean())
    assert cs.reconstruction_error(model, x, y, batch_size=3) == pytest.approx(err, rel=1e-5)


def test_w_widget_moves_one_subspace_coordinate():
    torch.manual_seed(0)
    model = cs.CSVAE((3, 32, 32), 2, 4, 2, width=4)
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    pad = cs.w_widget(model, x, y, ["glasses", "facial_hair"], face=1)
    assert list(pad.controls) == ["glasses[0]", "glasses[1]", "facial_hair[0]", "facial_hair[1]"]
    before = pad.image.value
    pad.set(**{"facial_hair[1]": 3.0})
    assert pad.image.value != before and "facial_hair[1] = +3.00" in pad.status.value
    # the picture decodes the face's μ_z with μ_w but for the moved coordinate (column 1·w_dim + 1)
    with torch.no_grad():
        mu_z, _, mu_w, _ = model.eval().encode(x[1:2], y[1:2])
        mu_w[0, 3] = 3.0
        expected = tile(model.decode(mu_z, mu_w))
    assert np.allclose(pad.frame(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="3 attribute names"):
        cs.w_widget(model, x, y, ["a", "b", "c"])


def test_paper_weight_is_a_fixed_c_and_the_default_is_calibrated():
    """β₁ = 20 on ‖x − x̂‖² is the Gaussian decoder of variance 0.025; the faces models calibrate c instead."""
    assert cs.PAPER_C == pytest.approx(0.025)
    torch.manual_seed(0)
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 2, (6, 2)).float()
    model = cs.CSVAE((3, 32, 32), 2, 4, 2, width=4, c=cs.PAPER_C).eval()
    with torch.no_grad():
        t = cs.csvae_terms(model, x, y)
    const = 0.5 * 3 * 32 * 32 * math.log(2 * math.pi * cs.PAPER_C)
    sq = (x - t["out"]["x_hat"]).pow(2).flatten(1).sum(1)
    expected = (20 * sq + const + 1.0 * losses.gaussian_kl_between(
        t["out"]["mu_w"], t["out"]["logvar_w"], *model.prior_w(y)) + 0.2 * losses.gaussian_kl(
        t["out"]["mu_z"], t["out"]["logvar_z"])).mean()
    assert float(t["loss"]) == pytest.approx(float(expected), rel=1e-5)
    calibrated = cs.CVAE((3, 32, 32), 2, 4, width=4).eval()
    with torch.no_grad():
        t = cs.cvae_terms(calibrated, x, y)
    assert float(t["c"]) == pytest.approx(float((x - t["out"]["x_hat"]).pow(2).mean()), rel=1e-5)


def test_scaled_weights_train_as_a_larger_decoder_variance():
    """Weights.scaled(k) at variance c gives k times the gradient of the paper's weights at variance k·c."""
    x, y = torch.rand(6, 3), torch.randint(0, 2, (6, 2)).float()
    k, c = 4.0, 0.01
    grads = []
    for weights, variance, factor in [(cs.Weights().scaled(k), c, 1.0), (cs.Weights(), k * c, k)]:
        torch.manual_seed(0)
        model = cs.CSVAE((3,), 2, 4, 2, c=variance)
        torch.manual_seed(1)  # the same reparameterisation noise for both
        (factor * cs.csvae_terms(model, x, y, weights)["loss"]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.vae_parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    scaled = cs.Weights().scaled(k)
    assert (scaled.kl_w, scaled.kl_z, scaled.adv_enc, scaled.adv) == (4.0, 0.8, 40.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        cs.Weights().scaled(0.0)


def test_bad_shapes_and_weights_name_the_fix():
    with pytest.raises(ValueError, match=r"\(3, S, S\).*size=32 or 64"):
        cs.CSVAE((3, 28, 28), 2)
    with pytest.raises(ValueError, match="non-negative"):
        cs.Weights(adv_enc=-1.0)
    with pytest.raises(ValueError, match="positive"):
        cs.SubspacePrior(var0=0.0)
    model = cs.CSVAE((3, 32, 32), 2, 4, 2, width=4)
    with pytest.raises(ValueError, match="N×3×32×32"):
        model(torch.rand(2, 3, 64, 64), torch.zeros(2, 2))


def test_hidden_style_classes_follow_the_renderer_thresholds():
    from vaecourse import faces
    f = faces.load_faces("test", n=200).factors
    s = faces.hidden_styles(f)
    g = cs.hidden_style_classes("glasses", f)
    assert torch.equal(g, (s[:, 0] >= 0.5).long())
    h = cs.hidden_style_classes("facial_hair", f)
    assert set(h.tolist()) == {0, 1, 2}
    assert torch.equal(h == 0, s[:, 1] < 0.4) and torch.equal(h == 2, s[:, 1] >= 0.7)
    with pytest.raises(ValueError, match="kind of glasses and facial_hair only"):
        cs.hidden_style_classes("smile", f)


def test_edit_functions_take_the_faces_labels_and_move_as_far_at_random():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32)
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    every = torch.cat([y, torch.ones(6, 1)], 1)  # what measure_edits passes: glasses, facial_hair, smile
    for model in (cs.CSVAE((3, 32, 32), 2, 4, 2, width=4).eval(), cs.CVAE((3, 32, 32), 2, 4, width=4).eval()):
        fns = cs.face_edit_functions(model, ["glasses", "facial_hair"], seed=1)
        sel = torch.tensor([3, 0, 5])
        assert torch.allclose(fns["reconstruct"](x[sel], labels=every[sel]), model.transfer(x[sel], y[sel], y[sel]),
                              atol=1e-6)
        y_new = y[sel].clone()
        y_new[:, 1] = 1.0
        assert torch.allclose(fns["edit"](x[sel], "facial_hair", "add", labels=every[sel]),
                              model.transfer(x[sel], y[sel], y_new), atol=1e-6)
        assert fns["random_edit"](x[sel], "facial_hair", "add", labels=every[sel]).shape == (3, 3, 32, 32)
        with pytest.raises(ValueError, match="not trained on 'smile'"):
            fns["edit"](x[sel], "smile", "add", labels=every[sel])
        with pytest.raises(ValueError, match="pass_labels=True"):
            fns["edit"](x[sel], "glasses", "add", labels=y[sel])
    # the random baseline moves CSVAE's (z, w) exactly as far as the transfer moves w
    model = cs.CSVAE((3, 32, 32), 2, 4, 2, width=4).eval()
    seen = []
    model.decode = lambda z, w: seen.append(torch.cat([z, w], 1)) or torch.zeros(len(z), 3, 32, 32)
    u = torch.randn(cs.code_dim(model))
    y_new = 1 - y
    cs.random_transfer(model, x, y, y_new, u)
    mu_z, _, mu_w, _ = cs.CSVAE.encode(model, x, y)
    step = (model.prior_w(y_new)[0] - mu_w).norm(dim=1)
    assert torch.allclose((seen[0] - torch.cat([mu_z, mu_w], 1)).norm(dim=1), step, atol=1e-4)
    with pytest.raises(ValueError, match="random direction must have 8 numbers"):
        cs.random_transfer(model, x, y, y_new, torch.randn(3))
    # one direction per face: each face still moves exactly as far
    seen.clear()
    cs.random_transfer(model, x, y, y_new, torch.randn(len(x), cs.code_dim(model)))
    assert torch.allclose((seen[0] - torch.cat([mu_z, mu_w], 1)).norm(dim=1), step, atol=1e-4)


def test_style_probe_rows():
    from vaecourse import faces
    d = faces.load_faces("test", n=120)
    y = d.labels[:, :2].float()
    torch.manual_seed(0)
    model = cs.CSVAE((3, 32, 32), 2, 4, 2, width=4)
    rows = cs.style_probe(model, "CSVAE", ["glasses", "facial_hair"], (d.images[:80], y[:80], d.factors[:80]),
                          (d.images[80:], y[80:], d.factors[80:]), kind="linear")
    assert [(r["attribute"], r["source"]) for r in rows] == [("glasses", "w"), ("glasses", "z"),
                                                            ("facial_hair", "w"), ("facial_hair", "z")]
    assert all(0 <= r["accuracy"] <= 1 and 0 < r["chance"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="80 faces, 40 label rows"):
        cs.style_probe(model, "CSVAE", ["glasses", "facial_hair"], (d.images[:80], y[:40], d.factors[:80]),
                       (d.images[80:], y[80:], d.factors[80:]))
