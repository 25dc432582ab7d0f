"""Tests for vaecourse.label_sweep and vaecourse.probes: the probe, the classifier, the sweep's rows and table."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaecourse import label_sweep as ls
from vaecourse import probes
from vaecourse.classifier import Classifier
from vaecourse.faces import load_faces


def test_probe_separates_what_is_linearly_separable():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=gen)
    y = torch.stack([(x[:, 0] > 0), (x[:, 1] - x[:, 2] > 0)], 1).float()
    acc = probes.probe_accuracy(x[:200], y[:200], x[200:], y[200:], l2=1e-3, standardise=False)
    assert acc.shape == (2,) and (acc > 0.95).all()
    # a large penalty shrinks the weights towards zero, and the second label (two small weights) suffers first
    strong = probes.probe_accuracy(x[:200], y[:200], x[200:], y[200:], l2=1e4, standardise=False)
    assert strong[1] < acc[1] - 0.1


def test_the_sweep_probe_is_the_penalised_logistic_regression_it_was():
    # the sweep's penalty, weight · ‖W‖² on the mean log-loss over faces × attributes, fitted jointly by L-BFGS,
    # has the same optimum as probe_accuracy's per attribute with l2 = weight · faces · attributes
    gen = torch.Generator().manual_seed(1)
    w_true = torch.randn(8, 3, generator=gen)
    x = torch.randn(600, 8, dtype=torch.float64, generator=gen)
    y = ((x @ w_true.double() + torch.randn(600, 3, dtype=torch.float64, generator=gen)) > 0).double()
    n, weight = 100, 1e-2
    probe = torch.nn.Linear(8, 3).double()
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(probe(x[:n]), y[:n]) + weight * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        joint = ((probe(x[n:]) > 0).double() == y[n:]).double().mean(0).numpy()
    ours = probes.probe_accuracy(x[:n], y[:n], x[n:], y[n:], l2=weight * n * 3, standardise=False)
    assert abs(ours - joint).max() <= 2 / 500  # the same boundary, up to a face or two on it


def test_probe_options_and_the_majority_floor():
    x, y = np.arange(12.0).reshape(6, 2), np.array([0, 0, 0, 1, 1, 1])
    assert probes.probe_accuracy(x, y, x, y)[0] == 1.0
    assert probes.probe_accuracy(x, np.ones(6), x, y)[0] == 0.5       # one value in training: predicted as is
    assert probes.probe_accuracy(x, y, x, y, max_train=3)[0] == 0.5   # the first three rows are all 0
    with pytest.raises(ValueError, match="kind"):
        probes.probe_accuracy(x, y, x, y, kind="tree")
    with pytest.raises(ValueError, match="l2"):
        probes.probe_accuracy(x, y, x, y, l2=-1.0)
    assert probes.probe_accuracy(x, y, x, y, l2=0.0)[0] == 1.0
    assert probes.majority_rate(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                                torch.tensor([[1.0, 1.0], [0.0, 1.0]])).tolist() == [0.5, 0.0]


def test_face_classifier_has_the_backbone_trunk():
    clf = Classifier((3, 32, 32), 3, binary=True, kind="face", width=4)
    assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    convs = [m for m in clf.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16]  # face_channels(32, 4)
    with pytest.raises(ValueError, match="square RGB faces"):
        Classifier((1, 28, 28), 10, kind="face")


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="positive"):
        ls.SweepSettings(steps=0)
    with pytest.raises(ValueError, match="alpha"):
        ls.SweepSettings(alpha=0.0)
    with pytest.raises(ValueError, match="vae_steps"):
        ls.SweepSettings(vae_steps=0)


@pytest.fixture(scope="module")
def tiny_sweep():
    train, test = load_faces("train", n=160, seed=0), load_faces("test", n=60, seed=0)
    settings = ls.SweepSettings(width=4, steps=4, batch_size=32, k=2)
    rows = ls.run_sweep(train, test, [0.1, 1.0], [0, 1], settings, extra_seeds_at=0.1, progress=False)
    return train, rows


def test_sweep_rows_cover_every_model_fraction_and_seed(tiny_sweep):
    train, rows = tiny_sweep
    keys = {(r["model"], r["fraction"], r["seed"]) for r in rows}
    expected = {(m, f, 0) for m in ls.MODELS for f in (0.1, 1.0)} | {(m, 0.1, 1) for m in ls.MODELS}
    assert keys == expected and len(rows) == len(expected)
    for r in rows:
        assert r["data"] == "faces" and r["labels"] == (16 if r["fraction"] == 0.1 else 160)
        assert list(r["per_attribute"]) == list(train.classes)
        assert math.isclose(r["accuracy"], sum(r["per_attribute"].values()) / len(r["per_attribute"]))
        assert 0.0 <= r["accuracy"] <= 1.0
    assert math.isclose(ls.mean_accuracy(rows, "classifier", 0.1),
                        sum(r["accuracy"] for r in rows if r["model"] == "classifier" and r["fraction"] == 0.1) / 2)
    assert math.isnan(ls.mean_accuracy(rows, "classifier", 0.5))


def test_only_at_limits_a_model_to_some_fractions_and_the_first_seed():
    train, test = load_faces("train", n=80, seed=0), load_faces("test", n=20, seed=0)
    settings = ls.SweepSettings(width=4, steps=2, batch_size=32, k=2)
    rows = ls.run_sweep(train, test, [0.25, 1.0], [0, 1], settings, models=["classifier", "CCVAE-report"],
                        extra_seeds_at=0.25, only_at={"CCVAE-report": [1.0]}, progress=False)
    keys = {(r["model"], r["fraction"], r["seed"]) for r in rows}
    assert keys == {("classifier", 0.25, 0), ("classifier", 1.0, 0), ("classifier", 0.25, 1), ("CCVAE-report", 1.0, 0)}


def test_paired_gap_sets_each_seed_against_the_same_seed():
    rows = [{"model": m, "fraction": 0.01, "seed": s, "accuracy": a}
            for m, s, a in [("classifier", 0, 0.8), ("classifier", 1, 0.9), ("classifier", 2, 0.7),
                            ("CCVAE", 0, 0.85), ("CCVAE", 1, 0.9), ("CCVAE", 2, 0.75), ("CCVAE-report", 0, 0.6)]]
    gap, n = ls.paired_gap(rows, "CCVAE", 0.01)
    assert n == 3 and math.isclose(gap, (0.05 + 0.0 + 0.05) / 3)
    gap, n = ls.paired_gap(rows, "CCVAE-report", 0.01)  # one seed: against seed 0's classifier, not the mean of three
    assert n == 1 and math.isclose(gap, 0.6 - 0.8)
    assert ls.paired_gap(rows, "VAE+probe", 0.01)[1] == 0


def test_sweep_table_has_a_row_per_split_and_a_column_per_model(tiny_sweep):
    _, rows = tiny_sweep
    table = ls.sweep_markdown(rows)
    lines = table.splitlines()
    assert all(m in lines[0] for m in ls.MODELS)
    assert sum(line.startswith("| 16 (10 %)") for line in lines) == 2
    assert sum(line.startswith("| 160 (100 %)") for line in lines) == 1


def test_sweep_bad_input_names_the_fix():
    train, test = load_faces("train", n=40, seed=0), load_faces("test", n=20, seed=0)
    settings = ls.SweepSettings(width=4, steps=1)
    with pytest.raises(ValueError, match="unknown sweep model"):
        ls.run_sweep(train, test, [0.5], [0], settings, models=["M2"])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ls.run_sweep(train, test, [0.0], [0], settings)
    with pytest.raises(ValueError, match="at least one seed"):
        ls.run_sweep(train, test, [0.5], [], settings)
