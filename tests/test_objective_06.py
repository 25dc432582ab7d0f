"""Lesson 06's objective and exercises: the notebook's cells against the package, and the exercises' checks.

The committed notebook's exercise and ``objective`` cells run in order in a namespace of their own
(``notebook_objective``); their VAC loss, Algorithm 1 step, edit and Langevin step are held equal to
``vaecourse.introvac``'s on a small float64 VAC with the same noise: terms, gradient, and for Algorithm 1 the
parameters after each optimiser's step. Then each check accepts the teacher's answer and rejects the usual
wrong ones with the message that names them.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_notebook_objectives import assert_same, notebook_objective, terms_and_gradient

from vaecourse import checks
from vaecourse import introvac as iv
from vaecourse.losses import reparameterize
from vaecourse.nets import MLPDecoder, MLPEncoder

STEM = "06_vac_introvac"
WEIGHTS = {"paper": iv.PAPER_BETAS, "betas": iv.Betas(ae=3.0, cl=2.0, reg=0.5, g=1.5, ec=0.7),
           "calibrated": iv.calibrated_weights(3, 2), "ablation": iv.calibrated_weights(3, 2, ec=0.0)}


@pytest.fixture(scope="module")
def ns() -> dict:
    namespace = notebook_objective(STEM)
    namespace["iv"] = iv          # the notebook's own import, used by vac_objective to tell the weights apart
    return namespace


def small_vac(fake: bool = False) -> iv.VAC:
    torch.manual_seed(0)
    model = iv.VAC(MLPEncoder((1, 6, 6), 3, hidden=(16,)), MLPDecoder((1, 6, 6), 3, hidden=(16,)), 2,
                   fake_logit=fake)
    with torch.no_grad():         # a non-zero fake row, so the adversarial terms move every parameter
        model.classifier.weight.add_(0.3)
    return model.double()


def batch(dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 6, 6, dtype=torch.float64, generator=g)
    y = (torch.rand(8, 2, generator=g) < 0.5).to(dtype)   # the lesson's labels are float32
    return x, y


# ----------------------------------------------------------------------------- VAC's loss
@pytest.mark.parametrize("fake", [False, True], ids=["VAC", "fake logit"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("weights", ["paper", "betas", "calibrated"])
def test_vac_loss_is_the_package_one(ns, fake, training, weights):
    model, (x, y) = small_vac(fake), batch()
    w = WEIGHTS[weights]
    ours = terms_and_gradient(model, lambda m: ns["vac_loss"](w)(m, (x, y)), training)
    theirs = terms_and_gradient(model, lambda m: iv.vac_loss(w)(m, (x, y)), training)
    assert_same(ours, theirs, f"06 vac_loss vs introvac.vac_loss ({weights}, fake logit {fake})")


@pytest.mark.parametrize("weights", ["paper", "calibrated"])
def test_vac_objective_in_float64_is_the_package_one(ns, weights):
    # float64 labels: every term in float64 (float32 labels make torch's BCE return float32)
    model, (x, y) = small_vac(True), batch(torch.float64)
    w = WEIGHTS[weights]

    def run(objective):
        def terms(m):
            mu, logvar = m.encode(x)
            z = reparameterize(mu, logvar)
            return objective(m, x, y, mu, logvar, m.decode(z), m.classifier(z), w)
        return terms

    ours, theirs = (terms_and_gradient(model, run(f)) for f in (ns["vac_objective"], iv.objective))
    assert ours[0]["loss"].dtype == torch.float64
    assert_same(ours, theirs, f"06 vac_objective vs introvac.objective in float64 ({weights})")


def test_calibrated_nll_is_the_package_likelihood(ns):
    x, _ = batch()
    x_hat = (x + 0.1 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    nll, c = ns["calibrated_nll"](x, x_hat)
    want, want_c = small_vac().likelihood(x, x_hat)
    assert torch.allclose(nll, want, rtol=1e-12, atol=1e-12) and float(c) == float(want_c)
    nll, c = ns["calibrated_nll"](x, x)                       # a perfect batch: the same floor
    assert float(c) == 1e-6 and torch.isfinite(nll).all()


# ----------------------------------------------------------------------------- Algorithm 1
def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("weights", ["calibrated", "ablation", "betas"])
def test_introvac_step_is_the_package_one(ns, weights):
    """Three batches of the notebook's step and the package's on twin models: the same terms, and the same
    encoder, classifier and decoder after both optimisers' steps."""
    ours_model = small_vac(fake=True)
    theirs_model = copy.deepcopy(ours_model)
    start = {name: _flat(getattr(ours_model, name)) for name in ("encoder", "classifier", "decoder")}
    w = WEIGHTS[weights]
    opts_ours, opts_theirs = (iv.introvac_optimizers(m, lr=1e-2) for m in (ours_model, theirs_model))
    step_ours = ns["introvac_step"](ours_model, opts_ours, w)
    step_theirs = iv.introvac_step(theirs_model, opts_theirs, w)
    x, y = batch()
    for k in range(3):
        part = (x[4 * (k % 2): 4 * (k % 2) + 4], y[4 * (k % 2): 4 * (k % 2) + 4])
        results = []
        for step in (step_ours, step_theirs):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(10 + k)                    # the same ε and Z_g for both
                results.append(step(part))
        a, b = results
        assert set(a) == set(b), f"the notebook's step returns {sorted(a)}, the package's {sorted(b)}"
        for key in a:
            assert torch.allclose(a[key], b[key], rtol=1e-12, atol=1e-12), f"batch {k}: {key} {a[key]} vs {b[key]}"
        for part_name in ("encoder", "classifier", "decoder"):
            p, q = (_flat(getattr(m, part_name)) for m in (ours_model, theirs_model))
            assert torch.allclose(p, q, rtol=1e-12, atol=1e-13), \
                f"batch {k}: the {part_name} differs after the step (max {float((p - q).abs().max()):.3g})"
    for part_name, before in start.items():   # both optimisers stepped: nothing above compared frozen weights
        moved = float((_flat(getattr(ours_model, part_name)) - before).abs().max())
        assert moved > 1e-3, f"the {part_name} did not move"


def test_the_step_draws_its_noise(ns):
    # equal because both draw the same ε and Z_g: another seed must give another loss
    losses = []
    for seed in (3, 4):
        model = small_vac(fake=True)
        step = ns["introvac_step"](model, iv.introvac_optimizers(model), WEIGHTS["calibrated"])
        torch.manual_seed(seed)
        losses.append(float(step(batch())["loss"]))
    assert losses[0] != losses[1]


# ----------------------------------------------------------------------------- the edit and the Langevin step
def test_edit_along_is_the_package_edit(ns):
    model = small_vac()
    z = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for i in range(2):
        for delta in (-2.5, 4.0):
            ours = ns["edit_along"](z, model.classifier.weight[i].detach(), delta)
            assert torch.allclose(ours, model.edit_latent(z, {i: delta}), rtol=1e-12, atol=1e-12)


def test_langevin_with_the_notebook_step_is_the_package_sampler(ns):
    model = small_vac().float()   # the sampler draws its chains in float32, as the lesson's models are
    runs = [iv.langevin_sample(model, {"a0": 1}, n=16, steps=50, alpha=0.05, step=step,
                               generator=torch.Generator().manual_seed(5)) for step in (ns["langevin_step"], None)]
    assert torch.equal(runs[0].z, runs[1].z) and runs[0].energy == runs[1].energy
    assert torch.equal(runs[0].accepted, runs[1].accepted)


# ----------------------------------------------------------------------------- the checks
def test_the_teacher_solutions_pass_their_checks(ns, capsys):
    checks.check_vac_terms(ns["vac_terms"])
    checks.check_edit_along(ns["edit_along"])
    checks.check_langevin_step(ns["langevin_step"])
    assert capsys.readouterr().out.count("correct") == 3


def _terms(l1=None, bce=None, kl=None):
    """vac_terms with one of its three terms replaced by a wrong one."""
    def fn(x, xh, m, v, lo, y):
        return ((l1 or (lambda: (x - xh).abs().flatten(1).mean(1)))(),
                (bce or (lambda: F.binary_cross_entropy_with_logits(lo, y, reduction="none")))(),
                (kl or (lambda: 0.5 * (m.pow(2) + v.exp() - 1 - v).sum(1)))())
    return fn


def _naive_bce(x, xh, m, v, lo, y):
    p = torch.sigmoid(lo)
    return ((x - xh).abs().flatten(1).mean(1), -(y * p.log() + (1 - y) * (1 - p).log()),
            0.5 * (m.pow(2) + v.exp() - 1 - v).sum(1))


def _swapped_bce(x, xh, m, v, lo, y):
    return _terms(bce=lambda: F.binary_cross_entropy_with_logits(lo, 1 - y, reduction="none"))(x, xh, m, v, lo, y)


def _kl_per_dim(x, xh, m, v, lo, y):
    return _terms(kl=lambda: 0.5 * (m.pow(2) + v.exp() - 1 - v).sum(1) / m.shape[1])(x, xh, m, v, lo, y)


def _l1_sum(x, xh, m, v, lo, y):
    return _terms(l1=lambda: (x - xh).abs().flatten(1).sum(1))(x, xh, m, v, lo, y)


def _bce_mean(x, xh, m, v, lo, y):
    return _terms(bce=lambda: F.binary_cross_entropy_with_logits(lo, y, reduction="none").mean(1))(x, xh, m, v, lo, y)


def _kl_detached(x, xh, m, v, lo, y):
    return _terms(kl=lambda: 0.5 * (m.pow(2) + v.exp() - 1 - v).sum(1).detach())(x, xh, m, v, lo, y)


WRONG = [  # (check, wrong answer, what the message must say)
    ("check_vac_terms", _l1_sum, "mean per pixel"),
    ("check_vac_terms", _bce_mean, "shape"),
    ("check_vac_terms", _swapped_bce, "swapped"),
    ("check_vac_terms", _kl_per_dim, "divided by the latent size"),
    ("check_vac_terms", _kl_detached, "does not depend on mu"),
    ("check_vac_terms", _naive_bce, "σ(40) rounds to 1"),
    ("check_vac_terms", lambda x, xh, m, v, lo, y: (x, lo), "return the three terms"),
    ("check_edit_along", lambda z, w, d: z + d * w, "did not divide by ‖w‖"),
    ("check_edit_along", lambda z, w, d: z + d * w / w.norm() ** 2, "divided by ‖w‖²"),
    ("check_edit_along", lambda z, w, d: z - d * w / w.norm(), "the sign"),
    ("check_edit_along", lambda z, w, d: z.detach() + d * w / w.norm(), "no gradient"),
    ("check_edit_along", lambda z, w, d: (z + d * w / w.norm()).sum(1), "shape"),
    ("check_langevin_step", lambda z, g, a, e: z - a * g + math.sqrt(a) * e, "not √α"),
    ("check_langevin_step", lambda z, g, a, e: z - a * g + 2 * a * e, "its variance"),
    ("check_langevin_step", lambda z, g, a, e: z + a * g + math.sqrt(2 * a) * e, "the sign"),
    ("check_langevin_step", lambda z, g, a, e: z - a * g, "the noise is missing"),
    ("check_langevin_step", lambda z, g, a, e: z - a * g + math.sqrt(2 * a) * torch.randn_like(z), "you are given"),
]


@pytest.mark.parametrize("check, wrong, says", WRONG, ids=[f"{w[0][6:]}-{w[2]}" for w in WRONG])
def test_the_checks_catch_a_wrong_answer(check, wrong, says):
    with pytest.raises(checks.ExerciseFailed, match="hint:") as err:
        getattr(checks, check)(wrong)
    assert says in str(err.value)


def test_the_notebook_calls_each_check_after_its_exercise():
    from vaecourse import exercises as ex
    from vaecourse.run_course import notebooks_folder

    nb = ex.read(notebooks_folder() / f"{STEM}.ipynb")
    found = ex.exercises(nb, STEM)
    assert [e.number for e in found] == ["1", "2", "3"]
    calls = ["checks.check_vac_terms(vac_terms)", "checks.check_edit_along(edit_along)",
             "checks.check_langevin_step(langevin_step)"]
    for e, call in zip(found, calls):
        assert ex._source(nb["cells"][e.cell + 1]).strip() == call
