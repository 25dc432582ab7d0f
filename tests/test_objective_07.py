"""Lesson 07 (CSVAE): the objective and the training step written in the notebook are the package's, and the checks
after the lesson's exercises pass the solutions and catch the usual wrong answers with a message that names them.

The notebook's exercise and ``objective`` cells are executed in order, in a namespace of their own
(``notebook_objective``), and compared with ``vaecourse.csvae`` on small float64 models with the same noise: the
terms' values and gradients, and for the training step the logged terms and every parameter after each optimiser's
step. So the committed notebook trains exactly what the package would.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_notebook_objectives import assert_same, notebook_objective, terms_and_gradient

from vaecourse import checks
from vaecourse import csvae as cs
from vaecourse import exercises as ex
from vaecourse.losses import gaussian_kl_between
from vaecourse.run_course import notebooks_folder

STEM = "07_csvae"
TOL = 1e-12


@pytest.fixture(scope="module")
def ns() -> dict:
    return notebook_objective(STEM)


def small_csvae(kind: str) -> cs.CSVAE:
    torch.manual_seed(0)
    if kind == "toy":  # the toy's model: vectors, the paper's fixed c
        return cs.CSVAE((3,), 1, z_dim=2, w_dim=2, c=cs.PAPER_C, hidden=(8, 8), adversary_hidden=(8,),
                        w_hidden=8).double()
    return cs.CSVAE((3, 32, 32), 2, z_dim=3, w_dim=2, width=4, c="optimal", adversary_hidden=(8,), w_hidden=8).double()


def batch(model: cs.CSVAE, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *model.data_shape, dtype=torch.float64, generator=g)
    y = torch.randint(0, 2, (n, model.n_labels), generator=g).float()
    return x, y


def without_out(terms: dict) -> dict:
    return {k: v for k, v in terms.items() if k != "out"}


# ----------------------------------------------------------------------------- the exercises' solutions
def test_the_kl_solution_is_the_package_one(ns):
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(5, 4, dtype=torch.float64, generator=g).requires_grad_(True) for _ in range(4)]
    ours, theirs = ns["kl_diagonal_gaussians"](*args), gaussian_kl_between(*args)
    assert torch.equal(ours, theirs)
    for a, b in zip(torch.autograd.grad(ours.sum(), args), torch.autograd.grad(theirs.sum(), args)):
        assert torch.allclose(a, b, rtol=1e-12, atol=TOL)


@pytest.mark.parametrize("w_dim", [1, 2, 3])
def test_the_prior_solution_is_the_package_one(ns, w_dim):
    y = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 1]])
    for prior in (cs.SubspacePrior(), cs.SubspacePrior(mean0=-1.0, var0=0.3, mean1=2.5, var1=2.0)):
        ours, theirs = ns["prior_w"](y, w_dim, prior), prior.params(y, w_dim)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


# ----------------------------------------------------------------------------- the objective
@pytest.mark.parametrize("kind", ["toy", "faces"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("weights", [cs.Weights(), cs.Weights(kl_w=0.5, kl_z=2.0)], ids=["paper", "other"])
def test_csvae_terms_is_the_package_one(ns, kind, training, weights):
    model = small_csvae(kind)
    x, y = batch(model)
    ours = terms_and_gradient(model, lambda m: without_out(ns["csvae_terms"](m, x, y, weights)), training)
    theirs = terms_and_gradient(model, lambda m: without_out(cs.csvae_terms(m, x, y, weights)), training)
    assert_same(ours, theirs, f"07 csvae_terms ({kind}, {weights})")


def test_the_noise_reaches_the_terms(ns):
    model = small_csvae("toy")
    x, y = batch(model)
    a, _ = terms_and_gradient(model, lambda m: without_out(ns["csvae_terms"](m, x, y, cs.Weights())), noise_seed=7)
    b, _ = terms_and_gradient(model, lambda m: without_out(ns["csvae_terms"](m, x, y, cs.Weights())), noise_seed=8)
    assert float(a["nll"]) != float(b["nll"]), "the two terms agree only because they draw the same z and w"


def test_the_entropy_is_the_package_one(ns):
    from vaecourse.losses import bernoulli_entropy
    logits = torch.tensor([[-40.0, 0.0, 3.0], [0.5, 40.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ours, theirs = ns["bernoulli_entropy"](logits), bernoulli_entropy(logits)
    assert torch.equal(ours, theirs) and torch.isfinite(ours).all()
    assert float(ns["bernoulli_entropy"](torch.zeros(1, 2))) == pytest.approx(2 * math.log(2))


# ----------------------------------------------------------------------------- the adversarial step
def _state(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in model.state_dict().values()])


@pytest.mark.parametrize("kind, adversary_steps, adv_enc", [("toy", 2, 10.0), ("toy", 2, 0.0), ("faces", 1, 10.0)])
def test_csvae_step_is_the_package_one(ns, kind, adversary_steps, adv_enc):
    """Three training steps of the notebook's csvae_step and of cs.adversarial_step on twin models and twin
    optimisers: the same logged terms, and the same parameters (adversary, encoder, decoder, the likelihood's
    running c) after each step of each optimiser."""
    ours_model = small_csvae(kind)
    theirs_model = copy.deepcopy(ours_model)
    ours_opts = cs.make_optimizers(ours_model, lr=1e-2, adversary_lr=3e-2)
    theirs_opts = cs.make_optimizers(theirs_model, lr=1e-2, adversary_lr=3e-2)
    weights = cs.Weights(adv_enc=adv_enc)
    ours = ns["csvae_step"](ours_model, ours_opts, weights, adversary_steps=adversary_steps)
    theirs = cs.adversarial_step(theirs_model, theirs_opts, weights, adversary_steps=adversary_steps)
    x, y = batch(ours_model, 16)
    start = _state(ours_model)
    for step in range(3):
        rows = slice(8 * (step % 2), 8 * (step % 2) + 8)
        logged = []
        for fn in (ours, theirs):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(step)
                logged.append(fn((x[rows], y[rows])))
        assert list(logged[0]) == list(logged[1]), f"logged keys: {list(logged[0])} vs {list(logged[1])}"
        for key in logged[0]:
            assert torch.allclose(logged[0][key], logged[1][key], rtol=TOL, atol=TOL), \
                f"step {step}: {key} is {float(logged[0][key])} in the notebook, {float(logged[1][key])} in the package"
        a, b = _state(ours_model), _state(theirs_model)
        assert torch.allclose(a, b, rtol=1e-10, atol=TOL), \
            f"step {step}: the parameters differ after the step (max {float((a - b).abs().max()):.3g})"
    moved = {name: not torch.equal(p.detach(), q.detach())
             for (name, p), q in zip(ours_model.named_parameters(), copy.deepcopy(small_csvae(kind)).parameters())}
    assert any(v for n, v in moved.items() if n.startswith("adversary")), "the adversary never moved"
    assert any(v for n, v in moved.items() if not n.startswith("adversary")), "the VAE never moved"
    assert not torch.equal(start, _state(ours_model))


def test_the_adversary_step_leaves_the_encoder_alone(ns):
    model = small_csvae("toy")
    x, y = batch(model)
    opt = torch.optim.SGD(model.adversary.parameters(), lr=0.1)
    z = model(x, y)["z"]
    ns["adversary_update"](model.adversary, opt, z, y, 1.0)
    assert all(p.grad is None for p in model.vae_parameters())
    assert all(p.grad is not None for p in model.adversary.parameters())


def test_the_notebook_trains_csvae_with_its_own_step():
    nb = ex.read(notebooks_folder() / f"{STEM}.ipynb")
    code = [ex._source(c) for c in nb["cells"] if c["cell_type"] == "code"
            and "objective" not in c.get("metadata", {}).get("tags", [])]
    trains = [src for src in code if "vc.fit(" in src]
    assert len(trains) == 2, "the toy and the faces: two training cells"
    assert all("csvae_step(" in src or "csvae_step if" in src for src in trains), \
        "every CSVAE of the lesson must train with the notebook's csvae_step"


# ----------------------------------------------------------------------------- the checks
def test_the_solutions_pass_their_checks(ns, capsys):
    checks.check_kl_diagonal_gaussians(ns["kl_diagonal_gaussians"])
    checks.check_subspace_prior(ns["prior_w"])
    checks.check_adversary_step(ns["adversary_update"])
    assert capsys.readouterr().out.count("correct") == 3


def _prior(y, w_dim, p, swap=False, tile=False, log=True, half=False):
    m0, v0, m1, v1 = (p.mean1, p.var1, p.mean0, p.var0) if swap else (p.mean0, p.var0, p.mean1, p.var1)
    y = y.float().repeat(1, w_dim) if tile else y.float().repeat_interleave(w_dim, 1)
    var = v0 + (v1 - v0) * y
    return m0 + (m1 - m0) * y, (0.5 if half else 1.0) * var.log() if log else var


def _adversary(detach=True, sign=1.0, zero=True, per_label_mean=False, weighted=True, step=True):
    def update(adversary, optimizer, z, y, weight):
        logits = adversary(z.detach() if detach else z)
        nll = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = (weight if weighted else 1.0) * sign * (nll.mean() if per_label_mean else nll.sum(1).mean())
        if zero:
            optimizer.zero_grad()
        loss.backward()
        if step:
            optimizer.step()
        return logits, loss
    return update


def _kl(mq, lq, mp, lp):
    return 0.5 * ((lq - lp).exp() + (mq - mp).pow(2) / lp.exp() - 1.0 - (lq - lp))


WRONG = [  # (check, wrong answer, what the message must say)
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: gaussian_kl_between(mp, lp, mq, lq), "KL(p ‖ q)"),
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: 0.5 * (mq.pow(2) + lq.exp() - 1 - lq).sum(1), "N(0, I)"),
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: 2 * _kl(mq, lq, mp, lp).sum(1), "factor ½"),
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp).mean(1), "averaged over the dimensions"),
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp), "shape"),
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp).sum(1).detach(), "no gradient"),
    ("kl_diagonal_gaussians", lambda mq, lq, mp, lp: 0.5 * ((lq - lp).exp() + (mq - mp).pow(2) / lq.exp() - 1
                                                           - (lq - lp)).sum(1), "posterior's variance"),
    ("subspace_prior", lambda y, d, p: _prior(y, d, p, swap=True), "swapped"),
    ("subspace_prior", lambda y, d, p: _prior(y, d, p, tile=True), "repeat_interleave"),
    ("subspace_prior", lambda y, d, p: _prior(y, d, p, log=False), "return its log"),
    ("subspace_prior", lambda y, d, p: _prior(y, d, p, half=True), "log σ"),
    ("subspace_prior", lambda y, d, p: _prior(y, 1, p), "shape"),
    ("subspace_prior", lambda y, d, p: _prior(y, d, p)[0], "return the pair"),
    ("adversary_step", _adversary(sign=-1.0), "minimises"),
    ("adversary_step", _adversary(detach=False), "z.detach()"),
    ("adversary_step", _adversary(zero=False), "zero_grad"),
    ("adversary_step", _adversary(per_label_mean=True), "averaged over the attributes"),
    ("adversary_step", _adversary(weighted=False), "weight (β₅) is missing"),
    ("adversary_step", _adversary(step=False), "did not move"),
]


@pytest.mark.parametrize("check, wrong, says", WRONG, ids=[f"{w[0]}-{w[2]}" for w in WRONG])
def test_the_checks_catch_a_wrong_answer(check, wrong, says):
    with pytest.raises(checks.ExerciseFailed, match="hint:") as err:
        getattr(checks, f"check_{check}")(wrong)
    assert says in str(err.value)


def test_the_exercise_cells_are_found_and_followed_by_their_checks():
    nb = ex.read(notebooks_folder() / f"{STEM}.ipynb")
    found = ex.exercises(nb, STEM)
    assert [e.number for e in found] == ["1", "2", "3"]
    for e, name in zip(found, ("kl_diagonal_gaussians", "subspace_prior", "adversary_step")):
        assert f"checks.check_{name}(" in ex._source(nb["cells"][e.cell + 1])
