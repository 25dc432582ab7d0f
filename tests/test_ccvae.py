"""Tests for vaecourse.ccvae: the priors and bounds against brute force, splits, training, the live widgets."""

import itertools
import math

import numpy as np
import pytest
import torch

from vaecourse import ccvae as cc
from vaecourse.classifier import Classifier, accuracy, fit_classifier
from vaecourse.face_vae import FaceDecoder
from vaecourse.losses import gaussian_log_density
from vaecourse.plots import tile


def small(labels: str = "categorical", n_labels: int = 4, c_dim: int = 3, s_dim: int = 2) -> cc.CCVAE:
    torch.manual_seed(0)
    return cc.CCVAE((1, 6, 6), n_labels, c_dim, s_dim, labels=labels, hidden=(16,))


def test_marginal_prior_categorical_is_the_mixture():
    m = small()
    with torch.no_grad():
        m.prior_logvar.normal_(0, 0.3)
        m.set_label_prior(torch.tensor([0, 0, 0, 1, 2, 3, 3]))
    zc = torch.randn(5, 3)
    brute = torch.stack([
        torch.logsumexp(torch.stack([gaussian_log_density(zc[i:i + 1], m.prior_mu[k:k + 1], m.prior_logvar[k:k + 1])[0]
                                     + m.log_py[k] for k in range(4)]), 0) for i in range(5)])
    assert torch.allclose(m.log_marginal_prior_c(zc), brute, atol=1e-5)
    assert math.isclose(float(m.log_py.exp().sum()), 1.0, rel_tol=1e-6)


def test_binary_prior_factorises_over_attributes():
    m = small("binary", n_labels=3, c_dim=3)
    with torch.no_grad():
        m.log_py.copy_(torch.tensor([0.2, 0.5, 0.7]).log())
    zc = torch.randn(4, 3)
    terms = []
    for ys in itertools.product([0.0, 1.0], repeat=3):
        y = torch.tensor(ys).expand(4, 3)
        mu, lv = m.cond_prior(y)
        terms.append(gaussian_log_density(zc, mu, lv) + m.log_prior_y(y))
    brute = torch.logsumexp(torch.stack(terms), 0)  # Σ over all 8 label vectors
    assert torch.allclose(m.log_marginal_prior_c(zc), brute, atol=1e-5)


def test_paper_unsupervised_enumeration_matches_all_label_vectors():
    m = small("binary", n_labels=3, c_dim=3)
    x = torch.rand(5, 1, 6, 6)
    torch.manual_seed(1)
    terms = cc.paper_unsupervised_terms(m, x, beta=1.0)
    torch.manual_seed(1)  # the same draw of z
    mu, lv = m.encode(x)
    z = mu + (0.5 * lv).exp() * torch.randn_like(mu)
    zc, zs = m.split(z)
    kl_y = torch.zeros(5)
    for ys in itertools.product([0.0, 1.0], repeat=3):
        y = torch.tensor(ys).expand(5, 3)
        log_q = m.log_qy(zc, y)
        pm, plv = m.cond_prior(y)
        kl_y += log_q.exp() * (log_q - gaussian_log_density(zc, pm, plv) - m.log_prior_y(y))
    expected = gaussian_log_density(z, mu, lv) - gaussian_log_density(zs, 0 * zs, 0 * zs) + kl_y
    assert torch.allclose(terms["kl"], expected, atol=1e-4)


def test_label_entropy_of_an_undecided_classifier():
    zero = torch.zeros(3, 4)
    assert torch.allclose(small().label_entropy(zero), torch.full((3,), math.log(4)))
    assert torch.allclose(small("binary", n_labels=4, c_dim=4).label_entropy(zero), torch.full((3,), 4 * math.log(2)))


def test_mixture_components_are_the_conditional_priors():
    m = small()
    zc = torch.randn(5, 3)
    log_p_zc, log_py = m.mixture_components(zc)
    for k in range(4):
        y = torch.full((5,), k)
        assert torch.allclose(log_p_zc[:, k], gaussian_log_density(zc, *m.cond_prior(y)), atol=1e-5)
        assert torch.allclose(log_py[k], m.log_prior_y(y)[0])
    mb = small("binary", n_labels=3, c_dim=3)
    log_p_zc, log_py = mb.mixture_components(zc)
    assert log_p_zc.shape == (5, 3, 2) and log_py.shape == (3, 2)
    ones = torch.ones(5, 3)
    assert torch.allclose(log_p_zc[..., 1].sum(1), gaussian_log_density(zc, *mb.cond_prior(ones)), atol=1e-5)
    assert torch.allclose(log_py[:, 1].sum(), mb.log_prior_y(ones)[0])


def test_report_supervised_kl_is_closed_form_and_ce_is_the_classifiers():
    m = small()
    x, y = torch.rand(6, 1, 6, 6), torch.tensor([0, 1, 2, 3, 0, 1])
    t = cc.report_supervised_terms(m, x, y, beta=0.0, ce_weight=1.0)
    assert torch.allclose(t["loss"], t["rec"] + t["ce"])
    assert (t["kl_char"] >= 0).all() and (t["kl_style"] >= 0).all()
    t2 = cc.report_unsupervised_terms(m, x, beta=0.0, entropy_weight=0.0)
    assert torch.allclose(t2["loss"], t2["rec"])
    assert (t2["entropy"] <= math.log(4) + 1e-5).all()


def test_q_y_given_x_collapses_to_q_y_given_mean_when_posterior_is_sharp():
    m = small()
    mu_c, lv_c = torch.randn(5, 3), torch.full((5, 3), -30.0)
    y = torch.tensor([0, 1, 2, 3, 1])
    assert torch.allclose(cc.log_qy_given_x(m, mu_c, lv_c, y, k=8), m.log_qy(mu_c, y), atol=1e-4)
    with pytest.raises(ValueError):
        cc.log_qy_given_x(m, mu_c, lv_c, y, k=0)


def test_paper_weight_averages_to_one():
    # E_{q(z_c|x)}[q(y|z_c)/q(y|x)] = 1: estimate it with many draws of the supervised bound
    m = small("binary", n_labels=3, c_dim=3)
    x = torch.rand(1, 1, 6, 6).expand(400, 1, 6, 6)
    y = torch.tensor([[1.0, 0.0, 1.0]]).expand(400, 3)
    with torch.no_grad():
        t = cc.paper_supervised_terms(m, x, y, k=1000)
    assert abs(float(t["weight"].mean()) - 1.0) < 0.1


def test_label_split_is_stratified_and_disjoint():
    y = torch.arange(10).repeat_interleave(100)
    s, u = cc.label_split(y, 0.01, seed=3)
    assert len(s) == 10 and torch.equal(torch.sort(y[s]).values, torch.arange(10))
    assert len(set(s.tolist()) & set(u.tolist())) == 0 and len(s) + len(u) == 1000
    s_all, u_all = cc.label_split(y, 1.0)
    assert len(s_all) == 1000 and len(u_all) == 0
    with pytest.raises(ValueError):
        cc.label_split(y, 0.0)


def test_ccvae_builds_the_model_of_its_label_kind():
    cat = cc.CCVAE((1, 6, 6), 4, 2, 2, hidden=(8,))
    binary = cc.CCVAE((1, 6, 6), 3, 3, 2, labels="binary", hidden=(8,))
    assert type(cat) is cc.CategoricalCCVAE and type(binary) is cc.BinaryCCVAE
    assert isinstance(binary, cc.CCVAE) and (cat.labels, binary.labels) == ("categorical", "binary")
    assert type(cc.BinaryCCVAE((1, 6, 6), 3, 3, 2, hidden=(8,))) is cc.BinaryCCVAE  # built directly too
    # only the label parts differ: a softmax layer against one weight and bias per attribute
    assert hasattr(cat, "classifier") and not hasattr(binary, "classifier")
    assert binary.clf_weight.shape == (3,) and cat.prior_mu.shape == (4, 2) and binary.prior_mu.shape == (3, 2)
    with pytest.raises(ValueError, match="labels='categorical'"):
        cc.BinaryCCVAE((1, 6, 6), 3, 3, 2, labels="categorical")
    with pytest.raises(ValueError, match="at least 2 classes"):
        cc.CCVAE((1, 6, 6), 1, 2, 2)


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="c_dim=3"):
        cc.CCVAE((1, 6, 6), 3, 2, 2, labels="binary")
    with pytest.raises(ValueError, match="categorical"):
        cc.CCVAE((1, 6, 6), 3, 2, 2, labels="multi")
    m = small()
    with pytest.raises(ValueError, match="class indices"):
        m.cond_prior(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="N×5"):
        m.decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="form"):
        cc.fit_ccvae(m, torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 3]), form="other", epochs=1)


def test_intervention_moves_only_its_characteristic_dimension():
    m = small("binary", n_labels=3, c_dim=3).eval()
    names = ["a", "b", "c"]
    x = torch.rand(4, 1, 6, 6)
    z = m.encode(x)[0]
    out = cc.edit_faces(m, x, names, "b", "add")
    want = z.clone()
    want[:, 1] = m.prior_mu[1, 1]
    assert torch.allclose(out, m.decode(want), atol=1e-6)
    assert torch.allclose(cc.edit_faces(m, x, names, 1, "remove", amount=0.0), cc.reconstruct(m, x), atol=1e-6)
    half = cc.set_characteristic(m, z, 2, 0, amount=0.5)
    assert torch.allclose(half[:, 2], 0.5 * (z[:, 2] + m.prior_mu[2, 0]), atol=1e-6)
    assert torch.equal(half[:, [0, 1, 3, 4]], z[:, [0, 1, 3, 4]])
    swapped = m.swap(x, x.flip(0))
    zs, zc = m.split(m.encode(x)[0])[1], m.split(m.encode(x.flip(0))[0])[0]
    assert torch.allclose(swapped, m.decode(torch.cat([zc, zs], 1)), atol=1e-6)


def test_random_baseline_steps_as_far_as_the_intervention():
    m = small("binary", n_labels=3, c_dim=3).eval()
    names = ["a", "b", "c"]
    x = torch.rand(5, 1, 6, 6)
    z = m.encode(x)[0]
    moved = cc.random_step_faces(m, x, names, "a", "add", torch.Generator().manual_seed(0))
    u = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    length = (m.prior_mu[0, 1] - z[:, 0]).abs().unsqueeze(1)  # each face's own intervention length
    assert torch.allclose(moved, m.decode(z + length * u / u.norm(dim=1, keepdim=True)), atol=1e-6)
    fns = cc.edit_functions(m, names, seed=1)
    assert fns["edit"](x, "c", "remove").shape == x.shape and fns["random_edit"](x, "c", "add").shape == x.shape
    walk = cc.latent_walk(m, x[:2], 1, steps=4)
    assert walk.shape == (8, 1, 6, 6)


def test_intervention_bad_input_names_the_fix():
    m = small("binary", n_labels=3, c_dim=3).eval()
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(ValueError, match="not trained on 'beard'"):
        cc.edit_faces(m, x, ["a", "b", "c"], "beard", "add")
    with pytest.raises(ValueError, match="one name per attribute"):
        cc.edit_functions(m, ["a", "b"])
    with pytest.raises(ValueError, match="'add' or 'remove'"):
        cc.edit_faces(m, x, ["a", "b", "c"], "a", "set")
    with pytest.raises(ValueError, match="finite"):
        cc.edit_faces(m, x, ["a", "b", "c"], "a", "add", amount=float("nan"))
    with pytest.raises(ValueError, match="binary"):
        cc.edit_faces(small(), x, ["a", "b", "c", "d"], "a", "add")
    with pytest.raises(ValueError, match="at least 2 steps"):
        cc.latent_walk(m, x, 0, steps=1)


def test_face_backbone_with_a_calibrated_likelihood():
    torch.manual_seed(0)
    m = cc.CCVAE((3, 32, 32), 3, 3, 5, labels="binary", kind="face", width=4, likelihood="optimal")
    x = torch.rand(6, 3, 32, 32)
    z = torch.randn(6, 8)
    with torch.no_grad():
        x_hat = m.decode(z)
        # pixel means are the faces backbone's own output with the same weights: one sigmoid over its logits
        # (no second sigmoid, none missing), and both z_c and the style reach the decoder
        means = FaceDecoder(32, 8, width=4)
        means.load_state_dict(m.decoder.state_dict())
        assert x_hat.shape == x.shape and torch.allclose(x_hat, means(z), atol=1e-6)
        for col in (0, 3):  # a characteristic coordinate, then a style one
            moved = z.clone()
            moved[:, col] += 3.0
            assert (m.decode(moved) - x_hat).abs().max() > 1e-4, f"latent coordinate {col} does not reach the decoder"
    c = float((x - x_hat).pow(2).mean())  # the σ-VAE's c: the batch's error per pixel
    want = (x - x_hat).pow(2).flatten(1).sum(1) / (2 * c) + 0.5 * 3072 * math.log(2 * math.pi * c)
    with torch.no_grad():
        assert torch.allclose(m.reconstruction_nll(x, z), want, rtol=1e-4)
    terms = cc.paper_supervised_terms(m, x, (torch.rand(6, 3) > 0.5).float(), detach_weight=True)
    assert torch.isfinite(terms["loss"]).all()
    with pytest.raises(ValueError, match="square RGB"):
        cc.CCVAE((1, 28, 28), 10, 4, 4, kind="face")
    with pytest.raises(ValueError, match="likelihood c"):
        cc.CCVAE((3, 32, 32), 3, 3, 5, labels="binary", kind="face", likelihood="gauss")
    with pytest.raises(ValueError, match="mlp, conv, face"):
        cc.CCVAE((3, 32, 32), 3, 3, 5, labels="binary", kind="resnet")


def _digits():
    from vaecourse.data import load_digits

    tr, te = load_digits("train"), load_digits("test")
    return tr.images, tr.labels, te.images, te.labels


@pytest.mark.parametrize("form", ["report", "paper"])
def test_semi_supervised_training_learns_the_labels(form):
    x, y, xt, yt = _digits()
    s, u = cc.label_split(y, 0.2, seed=0)
    torch.manual_seed(0)
    m = cc.CCVAE((1, 8, 8), 10, 8, 4, hidden=(128,))
    kw = {"ce_weight": 10.0} if form == "report" else {"k": 4}
    h = cc.fit_ccvae(m, x[s], y[s], x[u], form=form, beta=0.2, epochs=4, batch_size=64, lr=3e-3, progress=False,
                     sup_kwargs=kw)
    losses = h.series("loss")
    assert losses[-1] < losses[0]
    assert accuracy(m.predict(xt), yt) > 0.6  # chance is 0.1


def test_logged_labelled_accuracy_is_read_before_each_update_and_leaves_no_hook():
    x, y, _, _ = _digits()
    s, u = cc.label_split(y, 0.2, seed=0)
    torch.manual_seed(0)
    m = cc.CCVAE((1, 8, 8), 10, 8, 4, hidden=(64,))
    before_update = []

    def bound(model, xs, ys, **kw):  # the report's bound, and the accuracy at the means before the optimiser moves
        terms = cc.report_supervised_terms(model, xs, ys, **kw)
        with torch.no_grad():
            pred = model.hard_labels(model.logits(model.split(model.encode(xs)[0])[0]))
        before_update.append(float((pred == ys).float().mean()))
        return terms

    h = cc.fit_ccvae(m, x[s], y[s], x[u], beta=0.2, epochs=1, batch_size=64, lr=3e-2, progress=False,
                     sup_terms=bound)
    assert [r["acc_l"] for r in h.steps] == pytest.approx(before_update, abs=1e-6)
    assert len(set(before_update)) > 3  # the accuracy moves while it trains, so the test can tell when it is read
    assert not m.encoder._forward_hooks


def test_binary_form_and_plain_classifier_learn_attributes():
    # two toy attributes: bright top half, bright left half
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(600, 2, generator=g) > 0.5).float()
    x = 0.15 * torch.rand(600, 1, 6, 6, generator=g)
    x[:, :, :3, :] += 0.7 * y[:, 0].view(-1, 1, 1, 1)
    x[:, :, :, :3] += 0.25 * y[:, 1].view(-1, 1, 1, 1)
    x = x.clamp(0, 1)
    torch.manual_seed(0)
    m = cc.CCVAE((1, 6, 6), 2, 2, 2, labels="binary", hidden=(32,))
    cc.fit_ccvae(m, x, y, form="paper", beta=1.0, epochs=15, batch_size=64, lr=3e-3, progress=False)
    assert accuracy(m.predict(x), y) > 0.9
    clf = Classifier((1, 6, 6), 2, binary=True, hidden=(32,), activation="elu")
    fit_classifier(clf, x, y, epochs=10, batch_size=64, lr=3e-3, progress=False)
    assert accuracy(clf.predict(x), y) > 0.9
    imgs = m.sample_conditional(y[:200], generator=torch.Generator().manual_seed(1))
    assert imgs.shape == (200, 1, 6, 6)
    # conditional samples carry the asked attributes: the model's own classifier reads them back
    assert accuracy(m.predict(imgs), y[:200]) > 0.85


def test_measures_count_what_the_judge_reads():
    m = small(n_labels=4).eval()
    acc, per_class = cc.conditional_generation_accuracy(m, lambda imgs: torch.zeros(imgs.shape[0], dtype=torch.long),
                                                        n_per_class=5)
    assert math.isclose(acc, 0.25) and per_class == [1.0, 0.0, 0.0, 0.0]


def test_digit_widget_decodes_the_class_mean_and_the_style():
    m = small(n_labels=4, c_dim=3, s_dim=2)
    w = cc.digit_widget(m, seed=5, digit=2)
    assert "digit = 2" in w.status.value and not m.training
    before = w.image.value
    w.set(digit="3", style_a=1.5)
    assert w.image.value != before
    assert "digit = 3" in w.status.value and "style_a = +1.50" in w.status.value
    dirs = torch.randn(2, 2, generator=torch.Generator().manual_seed(5))
    d0 = dirs[0] / dirs[0].norm()
    with torch.no_grad():
        expected = m.decode(torch.cat([m.prior_mu[3], 1.5 * d0]).unsqueeze(0))
    assert np.allclose(w.frame(), tile(expected), atol=1e-6)
    with pytest.raises(ValueError, match="categorical"):
        cc.digit_widget(small("binary", n_labels=3, c_dim=3))
    with pytest.raises(ValueError, match="style"):
        cc.digit_widget(small(s_dim=0))


def test_face_widget_sets_each_attribute_from_its_prior():
    m = small("binary", n_labels=3, c_dim=3, s_dim=2)
    names = ["glasses", "facial_hair", "smile"]
    x = torch.rand(1, 6, 6)
    w = cc.face_widget(m, x, torch.tensor([1.0, 0.0, 1.0]), names, seed=2)
    assert [w.controls[a].value for a in names] == ["on", "off", "on"]
    before = w.image.value
    w.set(glasses="off", z_c1=1.5, style=-2.0)
    assert w.image.value != before
    assert "glasses = off" in w.status.value and "z_c1 = +1.50" in w.status.value and "style = -2.00" in w.status.value
    with torch.no_grad():
        z = m.encode(x.unsqueeze(0))[0][0].clone()
        sd = (0.5 * m.prior_logvar).exp()
        z[0] = m.prior_mu[0, 0]                          # glasses off, at the prior mean
        z[1] = m.prior_mu[1, 0] + 1.5 * sd[1, 0]         # facial hair off, 1.5 sd from its mean
        z[2] = m.prior_mu[2, 1]                          # smile on
        style = torch.randn(1, 2, generator=torch.Generator().manual_seed(2))[0]
        z[3:] = z[3:] - 2.0 * style / style.norm()
        expected = m.decode(z.unsqueeze(0))
    assert np.allclose(w.frame(), tile(expected), atol=1e-6)
    with pytest.raises(ValueError, match="one name per attribute"):
        cc.face_widget(m, x, torch.ones(3), names[:2])
    with pytest.raises(ValueError, match="binary"):
        cc.face_widget(small(), x, torch.ones(3), names)
