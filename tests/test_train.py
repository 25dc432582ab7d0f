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


def test_stop_keeps_model_history_and_checkpoint_then_stops_the_cell(tmp_path):
    model = make_vae((1, 8, 8), 2)
    ck = tmp_path / "ck.pt"

    def stop_in_epoch_two(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(vc.TrainingInterrupted) as err:  # a KeyboardInterrupt: the cell stops here
        vc.fit(model, vae_loss(), (small_data(),), epochs=5, batch_size=64, progress=False,
               checkpoint=ck, on_epoch_end=stop_in_epoch_two)
    assert isinstance(err.value, KeyboardInterrupt) and "resume=True" in str(err.value)
    hist = err.value.history
    assert hist.interrupted and len(hist.epochs) == 2 and ck.is_file() and hist.seconds > 0
    # resume continues where it stopped, up to the requested epochs
    hist2 = vc.fit(model, vae_loss(), (small_data(),), epochs=4, batch_size=64, progress=False,
                   checkpoint=ck, resume=True)
    assert len(hist2.epochs) == 4 and not hist2.interrupted
    assert [e["epoch"] for e in hist2.epochs] == [1, 2, 3, 4] and hist2.seconds >= hist.seconds


def test_a_lesson_training_several_models_stops_at_the_first_stop():
    trained = []

    def press_stop(m, batch):
        raise KeyboardInterrupt  # Stop pressed while the first model trains

    def cell():
        for name in ("AE", "VAE"):
            trained.append(name)
            vc.fit(make_vae((1, 8, 8), 2), press_stop if name == "AE" else vae_loss(), (small_data(),),
                   epochs=2, batch_size=64, progress=False)

    with pytest.raises(KeyboardInterrupt):
        cell()
    assert trained == ["AE"]


def test_resume_needs_the_file_and_an_existing_checkpoint_is_not_replaced_silently(tmp_path):
    ck = tmp_path / "ck.pt"
    args = (vae_loss(), (small_data(),))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        vc.fit(make_vae((1, 8, 8), 2), *args, epochs=1, batch_size=64, progress=False, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="needs checkpoint"):
        vc.fit(make_vae((1, 8, 8), 2), *args, epochs=1, batch_size=64, progress=False, resume=True)
    vc.fit(make_vae((1, 8, 8), 2), *args, epochs=3, batch_size=64, progress=False, checkpoint=ck)
    with pytest.raises(FileExistsError, match=r"3 epoch\(s\).*resume=True.*overwrite=True"):
        vc.fit(make_vae((1, 8, 8), 2), *args, epochs=1, batch_size=64, progress=False, checkpoint=ck)
    assert len(torch.load(ck, weights_only=True)["history"]["epochs"]) == 3  # untouched
    vc.fit(make_vae((1, 8, 8), 2), *args, epochs=1, batch_size=64, progress=False, checkpoint=ck, overwrite=True)
    assert len(torch.load(ck, weights_only=True)["history"]["epochs"]) == 1
    with pytest.raises(ValueError, match="batch_size=64 .now 32."):
        vc.fit(make_vae((1, 8, 8), 2), *args, epochs=2, batch_size=32, progress=False, checkpoint=ck, resume=True)


RESUME_SCRIPT = """
import os, signal, sys, torch
import vaecourse as vc
from vaecourse.losses import vae_loss
from vaecourse.nets import make_vae
torch.set_num_threads(1)
# a process started in the background inherits SIGINT ignored (nohup, CI runners): Stop needs Python's handler
signal.signal(signal.SIGINT, signal.default_int_handler)
mode, ck, out = sys.argv[1], sys.argv[2], sys.argv[3]
x = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
calls = {"n": 0}
def loss(m, batch):  # a variational model: every step draws noise from torch's global generator
    calls["n"] += 1
    if mode == "stop" and calls["n"] == 11:
        os.kill(os.getpid(), signal.SIGINT)  # Stop pressed in epoch 2 (4 steps per epoch), during step 10
    return vae_loss()(m, batch)
vc.seed_everything(0 if mode != "resume" else 123)  # a fresh process seeded otherwise: the state must come back
model = make_vae((1, 8, 8), 2, hidden=(16,))
kw = dict(epochs=4, batch_size=64, progress=False, checkpoint=ck, seed=3)
if mode == "stop":
    try:
        vc.fit(model, loss, (x,), **kw)
    except vc.TrainingInterrupted as err:
        torch.save({"steps": len(err.history.steps), "seconds": err.history.seconds}, out)
    sys.exit(0)
h = vc.fit(model, loss, (x,), resume=(mode == "resume"), **kw)
torch.save({"model": model.state_dict(), "loss": h.series("loss"), "steps": h.series("loss", per="step"),
            "seconds": h.seconds, "epoch_rows": h.epochs}, out)
"""


def test_a_run_stopped_mid_epoch_and_resumed_in_a_fresh_process_equals_an_uninterrupted_one(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)

    def run(mode, ck):
        subprocess.run([sys.executable, str(script), mode, str(ck), str(tmp_path / f"{mode}.pt")], check=True,
                       env={**__import__("os").environ, "VAECOURSE_PROGRESS": "0"}, capture_output=True)
        return torch.load(tmp_path / f"{mode}.pt", weights_only=True)

    whole = run("whole", tmp_path / "whole.pt")  # (in a third process: the same thread count and start)
    stopped = run("stop", tmp_path / "ck.pt")
    assert stopped["steps"] == 11  # the step in progress was finished, then training stopped
    resumed = run("resume", tmp_path / "ck.pt")
    assert resumed["steps"] == whole["steps"] and resumed["loss"] == whole["loss"]
    assert all(torch.equal(whole["model"][k], v) for k, v in resumed["model"].items())
    assert resumed["seconds"] >= stopped["seconds"] > 0  # elapsed time carries over
    assert not any("partial" in row for row in resumed["epoch_rows"])


def test_an_older_checkpoint_stopped_mid_epoch_restarts_that_epoch(tmp_path):
    model = make_vae((1, 8, 8), 2)
    hist = vc.History(steps=[{"step": i, "epoch": i // 4, "loss": 1.0} for i in range(6)],
                      epochs=[{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 1.0, "partial": 1.0}])
    ck = vc.save_checkpoint(tmp_path / "old.pt", model, history=hist)  # no resume point: written before it existed
    h = vc.fit(model, vae_loss(), (small_data(),), epochs=3, batch_size=64, progress=False, checkpoint=ck,
               resume=True)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3] and len(h.steps) == 12


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs must be ≥ 1, got 0"), (dict(epochs=-3), "epochs must be ≥ 1"),
    (dict(epochs=2.5), "epochs must be a whole number"), (dict(batch_size=0), "batch_size must be ≥ 1"),
    (dict(batch_size=2.5), "batch_size must be a whole number"),
    (dict(batch_size=300, drop_last=True), "leaves no batch"),
])
def test_sizes_that_would_train_nothing_are_errors_naming_the_value(kwargs, match):
    args = {"epochs": 1, "batch_size": 64, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        vc.fit(make_vae((1, 8, 8), 2), vae_loss(), (small_data(),), **args)


def test_a_nan_in_any_term_is_reported_and_the_message_says_what_the_weights_took():
    def with_nan(at, key):
        calls = {"n": 0}

        def loss(m, batch):
            calls["n"] += 1
            terms = vae_loss()(m, batch)
            if calls["n"] >= at:
                terms[key] = torch.tensor(float("nan"))
            return terms
        return loss

    with pytest.raises(vc.NonFiniteLossError, match=r"step 1 .*probe is not finite.*before this step"):
        vc.fit(make_vae((1, 8, 8), 2), with_nan(2, "probe"), (small_data(),), epochs=1, batch_size=32,
               progress=False)
    # checked every 3 steps (as on a GPU): found at step 3, first bad at step 1, steps 1-2 were taken
    with pytest.raises(vc.NonFiniteLossError, match=r"step 1 .*every 3 steps.*steps 1–2") as err:
        vc.fit(make_vae((1, 8, 8), 2), with_nan(2, "kl"), (small_data(),), epochs=1, batch_size=32,
               progress=False, check_every=3)
    assert len(err.value.history.steps) == 1
    # the tail of an epoch after the last periodic check is checked before it enters the history
    with pytest.raises(vc.NonFiniteLossError, match=r"step 7 .*took step 7 with"):
        vc.fit(make_vae((1, 8, 8), 2), with_nan(8, "kl"), (small_data(),), epochs=1, batch_size=32,
               progress=False, check_every=5)
    model = make_vae((1, 8, 8), 2)
    opt = torch.optim.Adam(model.parameters())
    step_loss = with_nan(3, "loss")

    def train_step(batch):
        terms = step_loss(model, batch)
        opt.zero_grad()
        terms["rec"].mean().backward()
        opt.step()
        return terms

    with pytest.raises(vc.NonFiniteLossError, match="train_step had already taken its optimiser step"):
        vc.fit(model, None, (small_data(),), train_step=train_step, optimizers={"main": opt}, epochs=1,
               batch_size=32, progress=False)


def test_checkpoints_are_readable_by_others_as_the_umask_allows(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = vc.save_checkpoint(tmp_path / "m.pt", make_vae((1, 8, 8), 2))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PermissionError, match="VAECOURSE_CACHE"):  # e.g. the oracle's cache on a read-only disk
        vc.save_checkpoint(tmp_path / "a-file" / "m.pt", make_vae((1, 8, 8), 2))


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
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="latent_dim must be"):
            make_vae((1, 28, 28), bad)


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


def test_the_course_adam_takes_bitwise_the_steps_of_the_per_parameter_loop():
    from vaecourse.face_vae import FaceVAE, face_vae_loss

    def trained(make_optimizer):
        torch.manual_seed(0)
        model = FaceVAE(32, 8, 4)  # convolutions in the channels-last layout, linear layers
        opt = make_optimizer([{"params": list(model.encoder.parameters())},
                              {"params": list(model.decoder.parameters()), "lr": 3e-3}])
        x = torch.rand(16, 3, 32, 32)
        for _ in range(15):
            loss = face_vae_loss()(model, (x,))["loss"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    options = {"lr": 1e-3, "betas": (0.5, 0.99), "weight_decay": 1e-4}
    ours = trained(lambda groups: vc.train.adam(groups, **options))
    loop = trained(lambda groups: torch.optim.Adam(groups, foreach=False, **options))
    assert vc.train.adam([torch.zeros(1, requires_grad=True)]).defaults["foreach"] is True
    assert torch.equal(ours, loop)
