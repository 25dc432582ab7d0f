"""Each lesson's objective is written in its notebook, and the package keeps its own copy for the later lessons:
these tests hold the two equal, value and gradient, on a fixed batch.

How: the test reads the committed notebook, executes its exercise cells (the teacher's solutions) and the cells
tagged ``objective`` in notebook order, in a namespace of their own, and compares the functions they define with
the package's on a small float64 model, with the same reparameterisation noise for both. This tests the very
cells a student reads and the lesson trains on, not a copy of them; keeping the notebook's code identical to a
package function instead would have made the notebook print or import the package's code again.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaecourse import exercises as ex
from vaecourse import losses
from vaecourse import rate_distortion as rd
from vaecourse.geco import GECO
from vaecourse.nets import make_vae
from vaecourse.run_course import notebooks_folder

NOTEBOOKS = notebooks_folder()
TOL = 1e-12


def notebook_objective(stem: str) -> dict:
    """The namespace left by the notebook's exercise and ``objective`` cells, executed in order."""
    nb = ex.read(NOTEBOOKS / f"{stem}.ipynb")
    namespace = {"torch": torch, "math": math, "np": np, "F": F}
    ran = 0
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and ("exercise" in tags or "objective" in tags):
            exec(ex._source(cell), namespace)
            ran += "objective" in tags
    assert ran, f"{stem} has no cell tagged 'objective'"
    return namespace


def model_and_batch(variational: bool = True):
    torch.manual_seed(0)
    model = make_vae((1, 28, 28), 3, variational=variational).double()
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x


def terms_and_gradient(model, terms_fn, training: bool = True, noise_seed: int = 7):
    """The terms of one evaluation (same ε for every caller) and the gradient of its loss over the parameters."""
    model.train(training)
    model.zero_grad()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(noise_seed)
        terms = terms_fn(model)
    grads = torch.autograd.grad(terms["loss"], list(model.parameters()), allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, model.parameters())])
    return {k: v.detach() for k, v in terms.items()}, flat


def assert_same(ours, theirs, what: str) -> None:
    (t_a, g_a), (t_b, g_b) = ours, theirs
    assert set(t_a) == set(t_b), f"{what}: the notebook returns {sorted(t_a)}, the package {sorted(t_b)}"
    for key in t_a:
        assert torch.allclose(t_a[key], t_b[key], rtol=TOL, atol=TOL), \
            f"{what}: {key} is {t_a[key].tolist()} in the notebook, {t_b[key].tolist()} in the package"
    assert float(g_b.norm()) > 0, f"{what}: the package's gradient is zero, nothing is compared"
    assert torch.allclose(g_a, g_b, rtol=1e-10, atol=TOL), \
        f"{what}: gradients differ (max {float((g_a - g_b).abs().max()):.3g})"


# ----------------------------------------------------------------------------- lesson 02
@pytest.mark.parametrize("variational", [True, False], ids=["VAE", "AE"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("c", [0.05, 1.0])
def test_02_negative_elbo_is_the_package_vae_loss(variational, training, c):
    ns = notebook_objective("02_ae_vs_vae")
    model, x = model_and_batch(variational)
    ours = terms_and_gradient(model, lambda m: ns["negative_elbo"](c)(m, (x,)), training)
    theirs = terms_and_gradient(model, lambda m: losses.vae_loss(c=c)(m, (x,)), training)
    assert_same(ours, theirs, f"02 negative_elbo vs losses.vae_loss (c={c}, {'VAE' if variational else 'AE'})")


def test_02_the_noise_reaches_the_loss():
    # the two losses agree because they draw the same ε; a different draw must change the value (else the
    # comparison above could pass with no sampling at all)
    ns = notebook_objective("02_ae_vs_vae")
    model, x = model_and_batch()
    a, _ = terms_and_gradient(model, lambda m: ns["negative_elbo"](0.05)(m, (x,)), noise_seed=7)
    b, _ = terms_and_gradient(model, lambda m: ns["negative_elbo"](0.05)(m, (x,)), noise_seed=8)
    assert float(a["rec"]) != float(b["rec"])


# ----------------------------------------------------------------------------- lesson 03
@pytest.mark.parametrize("c, beta", [(1e-4, 1.0), (0.05, 1.0), (0.5, 20.0), (1.0, 0.3)])
def test_03_vae_terms_is_the_package_one(c, beta):
    ns = notebook_objective("03_c_and_beta")
    model, x = model_and_batch()
    ours = terms_and_gradient(model, lambda m: ns["vae_terms"](m, x, c=c, beta=beta))
    theirs = terms_and_gradient(model, lambda m: losses.vae_terms(m, x, c=c, beta=beta))
    assert_same(ours, theirs, f"03 vae_terms (c={c}, β={beta})")


@pytest.mark.parametrize("beta", [0.002, 2.0, 784.0])
def test_03_beta_vae_and_per_pixel_mean_are_the_package_ones(beta):
    ns = notebook_objective("03_c_and_beta")
    model, x = model_and_batch()
    for name, theirs_fn in (("beta_vae_terms", rd.beta_vae_terms), ("per_pixel_mean_terms", rd.per_pixel_mean_terms)):
        ours = terms_and_gradient(model, lambda m, n=name: ns[n](m, x, beta=beta))
        theirs = terms_and_gradient(model, lambda m, f=theirs_fn: f(m, x, beta=beta))
        assert_same(ours, theirs, f"03 {name} (β={beta})")


def test_03_sigma_vae_is_the_package_one():
    ns = notebook_objective("03_c_and_beta")
    model, x = model_and_batch()
    ours = terms_and_gradient(model, lambda m: ns["sigma_vae_terms"](m, x))
    theirs = terms_and_gradient(model, lambda m: rd.sigma_vae_terms(m, x))
    assert_same(ours, theirs, "03 sigma_vae_terms")
    # a perfect batch: c* is clamped at the same floor in both
    zero = torch.zeros(3, dtype=torch.float64)
    nll, c = ns["calibrated_nll"](zero, 784)
    assert float(c) == 1e-6 and torch.isfinite(nll).all()


def test_03_for_fit_feeds_the_batch_images():
    ns = notebook_objective("03_c_and_beta")
    model, x = model_and_batch()
    ours = terms_and_gradient(model, lambda m: ns["for_fit"](ns["beta_vae_terms"], beta=2.0)(m, (x,)))
    theirs = terms_and_gradient(model, lambda m: rd.beta_vae_loss(2.0)(m, (x,)))
    assert_same(ours, theirs, "03 for_fit(beta_vae_terms) vs rate_distortion.beta_vae_loss")


# ----------------------------------------------------------------------------- lesson 04
def _apply(model: torch.nn.Module, flat: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """Set the parameters' gradients from a flat vector and take the optimiser's step."""
    start = 0
    for p in model.parameters():
        p.grad = flat[start:start + p.numel()].view_as(p).clone()
        start += p.numel()
    optimizer.step()


@pytest.mark.parametrize("kappa, warmup", [(4.0, 2), (20.0, 0)], ids=["violated", "met"])
def test_04_geco_step_is_the_package_one(kappa, warmup):
    """Six training steps of the notebook's Geco and of vaecourse.geco.GECO on twin models: the same loss, gradient,
    λ and moving average at every step (through the warm-up and the average's restart), and evaluation moves nothing."""
    ns = notebook_objective("04_geco")
    ours_model, x = model_and_batch()
    theirs_model = copy.deepcopy(ours_model)
    settings = dict(eta=0.01, alpha=0.5, lambda0=1.0, warmup=warmup)
    ours, theirs = ns["Geco"](kappa, **settings), GECO(kappa, **settings)
    opt_ours = torch.optim.SGD(ours_model.parameters(), lr=1e-3)
    opt_theirs = torch.optim.SGD(theirs_model.parameters(), lr=1e-3)
    lambdas = []
    for step in range(6):
        batch = (x[8 * (step % 2): 8 * (step % 2) + 8],)
        a = terms_and_gradient(ours_model, lambda m, b=batch: ours(m, b), noise_seed=step)
        b = terms_and_gradient(theirs_model, lambda m, b=batch: theirs(m, b), noise_seed=step)
        assert_same(a, b, f"04 Geco vs vaecourse.geco.GECO, step {step} (κ = {kappa}, warm-up {warmup})")
        assert (ours.lam, ours.c_ma, ours.t) == (theirs.lam, theirs.c_ma, theirs.t), \
            f"step {step}: λ, C_ma, t = {(ours.lam, ours.c_ma, ours.t)} in the notebook, " \
            f"{(theirs.lam, theirs.c_ma, theirs.t)} in the package"
        _apply(ours_model, a[1], opt_ours)
        _apply(theirs_model, b[1], opt_theirs)
        lambdas.append(ours.lam)
    assert lambdas[:warmup] == [1.0] * warmup, "λ must stay at λ₀ through the warm-up"
    assert (lambdas[-1] > 1.0) if kappa == 4.0 else (lambdas[-1] < 1.0), f"λ went the wrong way: {lambdas}"
    state = (ours.lam, ours.c_ma, ours.t)
    a = terms_and_gradient(ours_model, lambda m: ours(m, (x,)), training=False)
    b = terms_and_gradient(theirs_model, lambda m: theirs(m, (x,)), training=False)
    assert_same(a, b, f"04 Geco vs vaecourse.geco.GECO in evaluation (κ = {kappa})")
    assert (ours.lam, ours.c_ma, ours.t) == state, "evaluation must not move λ, C_ma or the step count"


@pytest.mark.parametrize("lam", [0.5, 20.0, 36.2])
def test_04_lambda_terms_is_the_package_vae_loss(lam):
    # KL + λ·‖x − x̂‖² is the Gaussian-decoder loss ‖x − x̂‖²/(2c) + KL with c = 1/(2λ), value and gradient
    ns = notebook_objective("04_geco")
    model, x = model_and_batch()
    ours = terms_and_gradient(model, lambda m: ns["ScheduledLambda"](lambda t: lam)(m, (x,)))
    theirs = terms_and_gradient(model, lambda m: losses.vae_loss(c=1 / (2 * lam))(m, (x,)))
    ours[0].pop("lambda")
    theirs[0].pop("rec")
    assert_same(ours, theirs, f"04 lambda_terms (λ = {lam}) vs losses.vae_loss(c = 1/(2λ))")


def test_04_the_warm_up_schedule_and_its_step_count():
    ns = notebook_objective("04_geco")
    schedule = ns["warmup_schedule"](1.0, 25.0, 100, 300)
    assert [schedule(t) for t in (0, 100, 300, 790)] == [1.0, 1.0, 25.0, 25.0]
    assert schedule(200) == pytest.approx(5.0)             # halfway in log λ: √(1·25)
    assert ns["warmup_schedule"](1.0, 0.2, 10, 10)(10) == 1.0 and ns["warmup_schedule"](1.0, 0.2, 10, 10)(11) == 0.2
    loss = ns["ScheduledLambda"](schedule)
    model, x = model_and_batch()
    for training in (True, True, False):
        terms_and_gradient(model, lambda m: loss(m, (x,)), training=training)
    assert loss.t == 2, "only training steps advance the schedule"
