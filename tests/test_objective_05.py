"""Lesson 05: the supervised bound written in the notebook is the package's, and the exercises' checks work.

The notebook's exercise and ``objective`` cells are executed in order in a namespace of their own (as in
``test_notebook_objectives``), and ``supervised_bound`` is compared with ``ccvae.paper_supervised_terms`` on a small
float64 faces CCVAE: every term and the gradient over every parameter, with the same noise for both.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_notebook_objectives import assert_same, notebook_objective, terms_and_gradient

from vaecourse import ccvae as cc
from vaecourse import checks


@pytest.fixture(scope="module")
def ns() -> dict:
    return notebook_objective("05_ccvae")


def faces_model(likelihood="optimal", seed: int = 0):
    torch.manual_seed(seed)
    model = cc.CCVAE((3, 32, 32), 3, c_dim=3, s_dim=5, labels="binary", kind="face", width=4,
                     likelihood=likelihood).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 32, 32, dtype=torch.float64, generator=gen)
    y = (torch.rand(6, 3, generator=gen) > 0.5).double()
    with torch.no_grad():   # a prior and classifier away from their start, so every term is exercised
        model.prior_mu.add_(0.3 * torch.randn(model.prior_mu.shape, generator=gen, dtype=torch.float64))
        model.prior_logvar.add_(0.2 * torch.randn(model.prior_logvar.shape, generator=gen, dtype=torch.float64))
        model.clf_weight.mul_(1.7)
        model.set_label_prior(y)
    return model, x, y


def run(model, fn, x, y, noise_seed=7, **kw):
    """``terms_and_gradient`` of a bound that returns one loss per example: its mean is the loss differentiated."""
    def terms_fn(m):
        terms = fn(m, x, y, **kw)
        return {**terms, "loss": terms["loss"].mean(), "loss_per_example": terms["loss"]}

    return terms_and_gradient(model, terms_fn, training=True, noise_seed=noise_seed)


@pytest.mark.parametrize("likelihood", ["optimal", "bernoulli"])
@pytest.mark.parametrize("settings", [{}, {"beta": 4.0, "k": 5, "detach_weight": True, "classifier_weight": 100.0},
                                      {"beta": 0.5, "k": 1, "classifier_weight": 3.0}], ids=["bound", "faces", "other"])
def test_the_notebook_bound_is_the_package_one(ns, likelihood, settings):
    model, x, y = faces_model(likelihood)
    running = [b.clone() for b in model.buffers()]
    ours, g_ours = run(model, ns["supervised_bound"], x, y, **settings)
    after_ours = [b.clone() for b in model.buffers()]
    for b, r in zip(model.buffers(), running):   # the calibrated c's running mean moves once per call
        b.copy_(r)
    theirs, g_theirs = run(model, cc.paper_supervised_terms, x, y, **settings)
    assert_same((ours, g_ours), (theirs, g_theirs),
                f"05 supervised_bound vs ccvae.paper_supervised_terms ({likelihood})")
    assert all(torch.equal(a, b) for a, b in zip(after_ours, model.buffers()))


def test_the_noise_reaches_the_bound(ns):
    # the two agree because they draw the same noise; other noise must change the value, the weight too
    model, x, y = faces_model()
    a, _ = run(model, ns["supervised_bound"], x, y, noise_seed=7)
    b, _ = run(model, ns["supervised_bound"], x, y, noise_seed=8)
    assert not torch.equal(a["rec"], b["rec"]) and not torch.equal(a["weight"], b["weight"])


def test_fit_ccvae_trains_with_the_given_terms(ns):
    # the same model trained with the notebook's bound and with the package's: the same history, step for step
    x = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = (torch.rand(24, 3, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    histories, calls = [], []

    def counted(*args, **kw):
        calls.append(1)
        return ns["supervised_bound"](*args, **kw)

    for terms in (counted, None):
        torch.manual_seed(0)
        model = cc.CCVAE((3, 32, 32), 3, c_dim=3, s_dim=5, labels="binary", kind="face", width=4, likelihood="optimal")
        hist = cc.fit_ccvae(model, x[:8], y[:8], x[8:], form="paper", beta=4.0, epochs=2, batch_size=8, progress=False,
                            sup_kwargs={"k": 4, "detach_weight": True, "classifier_weight": 100.0}, sup_terms=terms)
        histories.append([s["loss"] for s in hist.steps])
    assert len(calls) == len(histories[0]) == 4
    assert histories[0] == histories[1]


# ----------------------------------------------------------------------------- the exercises' checks
def test_the_solutions_pass(ns, capsys):
    checks.check_label_weight(ns["label_weight"])
    checks.check_log_cond_prior(ns["log_cond_prior"])
    checks.check_supervised_loss(ns["supervised_loss"])
    assert capsys.readouterr().out.count("correct") == 3


def _where(y, table):
    return torch.where(y > 0.5, table[:, 1], table[:, 0])


def _gauss(z, mu, lv):
    return -0.5 * (math.log(2 * math.pi) + lv + (z - mu).pow(2) / lv.exp())


WEIGHT_SLIPS = [
    (lambda d, a: (d.mean(0), (a - d.mean(0)).exp()), "geometric mean"),
    (lambda d, a: (torch.logsumexp(d, 0), (a - torch.logsumexp(d, 0)).exp()), "− log K"),
    (lambda d, a: (d.exp().mean(0).log(), (a - d.exp().mean(0).log()).exp()), "underflows"),
    (lambda d, a: (torch.logsumexp(d, 1) - math.log(d.shape[1]), a), "shape"),
    (lambda d, a: ((lse := torch.logsumexp(d, 0) - math.log(4)), a - lse), "log of the weight"),
    (lambda d, a: ((lse := torch.logsumexp(d, 0) - math.log(4)), (lse - a).exp()), "upside down"),
    (lambda d, a: ((lse := torch.logsumexp(d, 0) - math.log(4)), a.exp() / lse.exp()), "0/0"),
    (lambda d, a: ((lse := torch.logsumexp(d.detach(), 0) - math.log(4)), (a - lse).exp()), "log_qy_draws"),
    (lambda d, a: torch.logsumexp(d, 0) - math.log(4), "pair"),
]

PRIOR_SLIPS = [
    (lambda z, y, m, v: _gauss(z, _where(1 - y, m), _where(1 - y, v)).sum(1), "swapped"),
    (lambda z, y, m, v: _gauss(z, m[:, 0], v[:, 0]).sum(1), "column 0"),
    (lambda z, y, m, v: _gauss(z, _where(y, m), _where(y, v)), "shape"),
    (lambda z, y, m, v: _gauss(z, _where(y, m), _where(y, v)).mean(1), "averaged"),
    (lambda z, y, m, v: (_gauss(z, _where(y, m), _where(y, v)) + 0.5 * math.log(2 * math.pi)).sum(1), "log 2π"),
    (lambda z, y, m, v: (-0.5 * (math.log(2 * math.pi) + (z - _where(y, m)).pow(2) / _where(y, v).exp())).sum(1),
     "normaliser"),
    (lambda z, y, m, v: (-0.5 * (math.log(2 * math.pi) + _where(y, v)
                                 + (z - _where(y, m)).pow(2) / (0.5 * _where(y, v)).exp())).sum(1), "σ where σ²"),
    (lambda z, y, m, v: _gauss(z, _where(y, m).detach(), _where(y, v)).sum(1), "prior_mu"),
]

BOUND_SLIPS = [
    (lambda r, k, q, qx, py, w, b, a: w * (-r - b * k - q) + a * qx + py, "negative"),
    (lambda r, k, q, qx, py, w, b, a: -(w * (-r - b * k - q + a * qx + py)), "bracket, not log q(y|x)"),
    (lambda r, k, q, qx, py, w, b, a: -((-r - b * k - q) + a * qx + py), "w is missing"),
    (lambda r, k, q, qx, py, w, b, a: -(w * (-r - b * k + q) + a * qx + py), "denominator"),
    (lambda r, k, q, qx, py, w, b, a: -(w * (-r - b * k - q) + qx + py), "α multiplies"),
    (lambda r, k, q, qx, py, w, b, a: -(w * b * (-r - k - q) + a * qx + py), "KL only"),
    (lambda r, k, q, qx, py, w, b, a: -(w * (-r - b * k - q) + a * qx), "log p(y)"),
    (lambda r, k, q, qx, py, w, b, a: -(w * (-r + b * k - q) + a * qx + py), "subtracts β·KL"),
    (lambda r, k, q, qx, py, w, b, a: -(w.detach() * (-r - b * k - q) + a * qx + py), "gradient"),
    (lambda r, k, q, qx, py, w, b, a: -(w * (-r - b * k - q) + a * qx + py).mean(), "shape"),
]


@pytest.mark.parametrize("check, wrong, says", [
    *[(checks.check_label_weight, f, s) for f, s in WEIGHT_SLIPS],
    *[(checks.check_log_cond_prior, f, s) for f, s in PRIOR_SLIPS],
    *[(checks.check_supervised_loss, f, s) for f, s in BOUND_SLIPS],
], ids=[f"w-{s}" for _, s in WEIGHT_SLIPS] + [f"prior-{s}" for _, s in PRIOR_SLIPS]
   + [f"bound-{s}" for _, s in BOUND_SLIPS])
def test_a_check_catches_a_wrong_answer(check, wrong, says):
    with pytest.raises(checks.ExerciseFailed, match="hint:") as err:
        check(wrong)
    if says is not None:
        assert says in str(err.value), str(err.value)
