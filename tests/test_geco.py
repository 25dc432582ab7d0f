"""GECO: the λ update's direction and positivity, the stop-gradient trick, and a training run that meets κ."""

import math

import numpy as np
import pytest
import torch

import vaecourse as vc
from vaecourse.geco import GECO, multiplicative_update, stop_gradient_average
from vaecourse.nets import make_vae


def test_lambda_grows_when_violated_and_shrinks_when_met():
    assert multiplicative_update(1.0, c_ma=+2.0, eta=0.1) == pytest.approx(math.exp(0.2))
    assert multiplicative_update(1.0, c_ma=-2.0, eta=0.1) == pytest.approx(math.exp(-0.2))
    assert multiplicative_update(1.0, c_ma=0.0, eta=0.1) == 1.0


def test_lambda_stays_positive_and_clamped():
    lam = 1.0
    for _ in range(1000):
        lam = multiplicative_update(lam, c_ma=-1e6, eta=1.0, lam_min=1e-6)
        assert lam > 0
    assert lam == pytest.approx(1e-6)
    assert multiplicative_update(1.0, c_ma=1e9, eta=1.0, lam_max=50.0) == 50.0
    with pytest.raises(ValueError):
        multiplicative_update(0.0, 1.0, 0.1)


def test_stop_gradient_forward_is_average_backward_is_batch():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    c_batch = (w ** 2).sum()          # value 5, gradient 2w
    c_hat = stop_gradient_average(c_batch, 7.5)
    assert float(c_hat.detach()) == pytest.approx(7.5)
    c_hat.backward()
    assert torch.allclose(w.grad, 2 * w.detach())


def test_moving_average_starts_at_first_batch_then_averages():
    g = GECO(1.0, alpha=0.9)
    assert g.observe(10.0) == 10.0
    assert g.observe(0.0) == pytest.approx(9.0)


class _Fixed(torch.nn.Module):
    """A 'model' whose reconstruction error we set by hand (for the λ direction inside GECO.terms)."""

    def __init__(self, err: float):
        super().__init__()
        self.err = err
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        from vaecourse.nets import VAEOutput

        mu = torch.zeros(x.shape[0], 2) + self.p
        x_hat = x + math.sqrt(self.err / x[0].numel())
        return VAEOutput(mu, torch.zeros_like(mu), mu, x_hat)


def test_geco_moves_lambda_the_right_way_and_evaluate_does_not():
    x = torch.zeros(8, 1, 2, 2)
    tight = GECO(kappa=1.0, eta=0.01)          # error 4 > κ² = 1: violated
    loose = GECO(kappa=3.0, eta=0.01)          # error 4 < κ² = 9: met
    m = _Fixed(4.0).train()
    for _ in range(5):
        t = tight(m, (x,))
        loose(m, (x,))
    assert tight.lam > 1.0 > loose.lam
    assert float(t["c_ma"]) == pytest.approx(3.0, rel=1e-5)
    assert float(t["loss"].detach()) == pytest.approx(float(t["lambda"]) * 3.0, rel=1e-5)  # KL is 0 here
    lam = tight.lam
    vc.evaluate(m, tight, [x])
    assert tight.lam == lam and tight.t == 5


def test_lambda_starts_at_one_as_in_the_paper_and_reset_returns_there():
    g = GECO(kappa=1.0)                        # Algorithm 1: "Initialize λ = 1"
    assert g.lam == 1.0 and g.c_ma is None and g.t == 0
    g.observe(5.0)
    g.update_lambda()
    assert g.lam > 1.0
    g.reset()
    assert g.lam == 1.0 and g.c_ma is None and g.t == 0


def test_warmup_holds_lambda_then_restarts_the_average():
    x = torch.zeros(8, 1, 2, 2)
    g = GECO(kappa=1.0, eta=0.01, lambda0=2.0, warmup=3)
    early, late = _Fixed(100.0).train(), _Fixed(4.0).train()   # an untrained net's error, then a trained one's
    used = [float(g(early, (x,))["lambda"]) for _ in range(3)]
    assert used == [2.0, 2.0, 2.0] and g.lam == 2.0           # held at λ₀ during the warm-up
    assert g.c_ma == pytest.approx(99.0, rel=1e-5)             # the average saw the large error ...
    t = g(late, (x,))
    assert float(t["c_ma"]) == pytest.approx(3.0, rel=1e-5)    # ... and forgets it when λ starts moving
    assert g.lam == pytest.approx(2.0 * math.exp(0.01 * 3.0))  # the first update uses the restarted average


def test_bad_settings_raise():
    with pytest.raises(ValueError):
        GECO(kappa=0.0)
    with pytest.raises(ValueError):
        GECO(kappa=1.0, alpha=1.0)


def test_geco_training_meets_a_loose_constraint_and_logs_lambda():
    vc.seed_everything(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 1, 1, generator=g).expand(256, 1, 4, 4).contiguous()  # one grey level per image
    model = make_vae((1, 4, 4), 2, hidden=(32,))
    kappa = 0.5  # per-image squared error 0.25 on 16 pixels: a per-pixel RMS tolerance of 0.125
    geco = GECO(kappa, eta=0.05, alpha=0.9, lambda0=1.0)
    hist = vc.fit(model, geco, [x], epochs=20, batch_size=32, lr=3e-3, progress=False)
    assert hist.series("lambda")[-1] > 0
    assert hist.last("c_ma") < 0.05           # the moving average of C = ‖x − x̂‖² − κ² ends ≤ 0 (met)
    assert max(hist.series("lambda")) > 1.0   # λ had to grow while the constraint was violated


def test_traversal_widget_decodes_the_same_draws_with_every_model():
    from vaecourse.geco import traversal_widget
    from vaecourse.plots import tile

    torch.manual_seed(0)
    models = {name: make_vae((1, 28, 28), 16, hidden=(256, 128)) for name in ("ELBO", "GECO")}
    w = traversal_widget(models, 16)
    before = w.image.value
    w.set(seed=7, dim=3, value=2.0)
    assert w.image.value != before
    assert "seed = 7" in w.status.value and "dim = 3" in w.status.value and "value = +2.00" in w.status.value
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(7))
    z[:, 3] = 2.0
    with torch.no_grad():
        expected = tile(torch.cat([m.decode(z) for m in models.values()]), nrow=4)  # a row of 4 draws per model
    assert np.allclose(w.frame(), expected, atol=1e-6)
    assert w.controls["dim"].max == 15
