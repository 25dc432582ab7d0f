import math

import pytest
import torch

import vaecourse as vc
from vaecourse.batching import iterate, minibatches
from vaecourse.losses import gaussian_kl, gaussian_kl_between, gaussian_log_density, reparameterize, vae_loss
from vaecourse.nets import make_vae


def small_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g)


def test_minibatches_cover_each_index_once_and_repeat_under_a_seed():
    a = torch.cat(list(minibatches(103, 10, torch.Generator().manual_seed(1))))
    b = torch.cat(list(minibatches(103, 10, torch.Generator().manual_seed(1))))
    assert sorted(a.tolist()) == list(range(103)) and torch.equal(a, b)
    assert len(list(minibatches(103, 10, drop_last=True))) == 10
    with pytest.raises(ValueError):
        list(iterate([torch.zeros(3), torch.zeros(4)], 2))


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(1, 3, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64) * 0.3
    z = reparameterize(mu.expand(200_000, 3), logvar.expand(200_000, 3))
    zeros = torch.zeros_like(z)
    mc = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, zeros, zeros)).mean()
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(mc), abs=0.02)
    # the general form reduces to the standard-normal one
    assert float(gaussian_kl_between(mu, logvar, torch.zeros(1, 3), torch.zeros(1, 3))) == pytest.approx(
        float(gaussian_kl(mu, logvar)), rel=1e-9)


def test_fit_lowers_the_loss_and_records_history():
    torch.manual_seed(0)
    x = small_data()
    model = make_vae((1, 8, 8), 2)
    hist = vc.fit(model, vae_loss(c=0.05), (x,), epochs=4, batch_size=32, lr=3e-3, progress=False)
    losses = hist.series("loss")
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert len(hist.steps) == 4 * 8 and {"rec", "kl", "sq_err"} <= set(hist.steps[0])
    with pytest.raises(KeyError, match="logged terms"):
        hist.series("nope")


def test_same_seed_same_numbers():
    def run():
        vc.seed_everything(5)
        model = make_vae((1, 8, 8), 2)
        return vc.fit(model, vae_loss(), (small_data(),), epochs=2, batch_size=64, progress=False).series("loss")

    assert run() == run()


def test_nan_loss_stops_with_the_step_and_terms_and_keeps_weights():
    model = make_vae((1, 8, 8), 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}

    def bad_loss(m, batch):
        calls["n"] += 1
        terms = vae_loss()(m, batch)
        if calls["n"] == 3:
            terms["kl"] = terms["kl"] * float("nan")
            terms["loss"] = terms["rec"] + terms["kl"]
        return terms

    with pytest.raises(vc.NonFiniteLossError) as err:
        vc.fit(model, bad_loss, (small_data(),), epochs=1, batch_size=32, lr=0.0, progress=False)
    msg = str(err.value)
    assert "step 2" in msg and "kl" in msg and "learning rate" in msg
    assert len(err.value.history.steps) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # lr=0: untouched


def test_keyboard_interrupt_keeps_model_history_and_checkpoint(tmp_path):
    model = make_vae((1, 8, 8), 2)
    ck = tmp_path / "ck.pt"

    def stop_in_epoch_two(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    hist = vc.fit(model, vae_loss(), (small_data(),), epochs=5, batch_size=64, progress=False,
                  checkpoint=ck, on_epoch_end=stop_in_epoch_two)
    assert hist.interrupted and len(hist.epochs) == 2 and ck.is_file()
    # resume continues where it stopped, up to the requested epochs
    hist2 = vc.fit(model, vae_loss(), (small_data(),), epochs=4, batch_size=64, progress=False,
                   checkpoint=ck, resume=True)
    assert len(hist2.epochs) == 4 and not hist2.interrupted
    assert [e["epoch"] for e in hist2.epochs] == [1, 2, 3, 4]


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    def fresh():
        vc.seed_everything(0)
        return make_vae((1, 8, 8), 2, variational=False)  # deterministic (no sampling noise)

    full = fresh()
    h_full = vc.fit(full, vae_loss(), (small_data(),), epochs=3, batch_size=64, progress=False)
    part = fresh()
    ck = tmp_path / "ae.pt"
    vc.fit(part, vae_loss(), (small_data(),), epochs=2, batch_size=64, progress=False, checkpoint=ck)
    h_res = vc.fit(part, vae_loss(), (small_data(),), epochs=3, batch_size=64, progress=False,
                   checkpoint=ck, resume=True)
    assert h_res.series("loss") == pytest.approx(h_full.series("loss"), rel=1e-5)


def test_checkpoint_of_another_shape_is_refused_clearly(tmp_path):
    m2 = make_vae((1, 8, 8), 2)
    path = vc.save_checkpoint(tmp_path / "m.pt", m2)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file
    with pytest.raises(ValueError, match="another shape"):
        vc.load_checkpoint(path, make_vae((1, 8, 8), 3))
    with pytest.raises(FileNotFoundError):
        vc.load_checkpoint(tmp_path / "none.pt", m2)


def test_wrong_image_shape_names_the_expected_one():
    model = make_vae((1, 28, 28), 2, kind="conv")
    with pytest.raises(ValueError, match=r"N×1×28×28"):
        model(torch.rand(4, 28, 28))
    with pytest.raises(ValueError, match="latent"):
        model.decode(torch.zeros(2, 3))


def test_evaluate_is_a_per_example_mean():
    model = make_vae((1, 8, 8), 2, variational=False)
    x = small_data(100)
    a = vc.evaluate(model, vae_loss(), (x,), batch_size=7)
    b = vc.evaluate(model, vae_loss(), (x,), batch_size=100)
    assert a["sq_err"] == pytest.approx(b["sq_err"], rel=1e-5)
    assert math.isfinite(a["loss"])


def test_bad_loss_parameters():
    with pytest.raises(ValueError, match="positive"):
        vae_loss(c=0)
    with pytest.raises(ValueError, match="non-negative"):
        vae_loss(beta=-1)


def test_model_mode_gives_the_model_back_in_its_mode_even_after_an_error():
    from vaecourse.train import model_mode

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    net.train()
    with pytest.raises(RuntimeError), model_mode(net, training=False):
        assert not net.training
        raise RuntimeError("a measurement that fails")
    assert net.training
    net.eval()
    with model_mode(net, training=True):
        assert net.training
    assert not net.training
