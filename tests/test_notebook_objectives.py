"""Each lesson's objective is written in its notebook, and the package keeps its own copy for the later lessons:
these tests hold the two equal, value and gradient, on a fixed batch.

How: the test reads the committed notebook, executes its exercise cells (the teacher's solutions) and the cells
tagged ``objective`` in notebook order, in a namespace of their own, and compares the functions they define with
the package's on a small float64 model, with the same reparameterisation noise for both. This tests the very
cells a student reads and the lesson trains on, not a copy of them; keeping the notebook's code identical to a
package function instead would have made the notebook print or import the package's code again.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaecourse import exercises as ex
from vaecourse import losses
from vaecourse import rate_distortion as rd
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
            f"{what}: {key} is {float(t_a[key])} in the notebook, {float(t_b[key])} in the package"
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
