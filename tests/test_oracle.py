"""The faces oracle: accurate on held-out faces, cached safely, and its metrics behave."""

import pytest
import torch
import torchvision.transforms.functional as TF

from vaecourse import faces, oracle
from vaecourse.faces import FaceConfig, render_faces, sample_split, toggle
from vaecourse.oracle import AttributeOracle, OracleNet, edit_metrics, frechet_distance, load_oracle


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real training run (about half a minute on two idle cores), cached in a temporary folder."""
    cache = tmp_path_factory.mktemp("oracle_cache")
    orc = load_oracle(32, device="cpu", cache=cache, verbose=False, progress=False)
    return orc, cache


@pytest.fixture(scope="module")
def held_out():
    attrs, factors = sample_split(FaceConfig(), "test", 1500)
    other_attrs, other_factors = sample_split(FaceConfig(), "val", 1500)
    return attrs, factors, render_faces(attrs, factors, 32), render_faces(other_attrs, other_factors, 32)


def test_accuracy_on_held_out_faces(trained, held_out):
    orc, _ = trained
    assert orc.trained_now
    for name, acc in orc.meta["accuracy"].items():
        assert acc >= 0.98, f"{name}: {acc:.3f}"
    attrs, _, images, _ = held_out
    fresh = orc.accuracy(images, attrs)
    assert min(fresh.values()) >= 0.97, fresh
    assert min(orc.meta["factor_r2"].values()) > 0.7  # the regression head reads every factor back


def test_cache_is_reused_and_loaded_safely(trained):
    orc, cache = trained
    again = load_oracle(32, cache=cache, verbose=False)
    assert not again.trained_now
    files = list(cache.glob("faces_oracle_32px_*.pt"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    blob = torch.load(files[0], weights_only=True)
    assert blob["meta"]["faces_version"] == faces.FACES_VERSION
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(again.predict_attributes(x), orc.predict_attributes(x), atol=1e-6)


def _stub_training(calls):
    def fake_train(config, **kwargs):
        calls.append(config.key())
        meta = {"oracle_version": oracle.ORACLE_VERSION, "faces_version": faces.FACES_VERSION,
                "key": oracle.oracle_key(config, kwargs["n_train"], kwargs["epochs"]), "size": config.size,
                "attributes": list(faces.ATTRIBUTES), "factor_names": list(faces.FACTOR_NAMES),
                "factor_std": [0.29] * len(faces.FACTOR_NAMES), "accuracy": {"glasses": 1.0}, "train_seconds": 0.0}
        return AttributeOracle(OracleNet(config.size), meta)
    return fake_train


def test_stale_or_corrupt_cache_is_retrained(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(oracle, "train_oracle", _stub_training(calls))
    load_oracle(32, cache=tmp_path, verbose=False)
    load_oracle(32, cache=tmp_path, verbose=False)
    assert len(calls) == 1  # the second call read the cache
    path = next(tmp_path.glob("*.pt"))
    # a file claiming another faces version under today's name is not trusted
    blob = torch.load(path, weights_only=True)
    blob["meta"]["faces_version"] = "0"
    torch.save(blob, path)
    assert load_oracle(32, cache=tmp_path, verbose=False).trained_now and len(calls) == 2
    # a new faces version gets a new key (and a new training)
    monkeypatch.setattr(faces, "FACES_VERSION", "2")
    assert load_oracle(32, cache=tmp_path, verbose=False).trained_now and len(calls) == 3
    # an unreadable file is replaced
    path.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(faces, "FACES_VERSION", "1")
    assert load_oracle(32, cache=tmp_path, verbose=False).trained_now
    assert load_oracle(32, cache=tmp_path, verbose=False, retrain=True).trained_now


def test_64px_oracle_and_wrong_sizes():
    net = OracleNet(64)
    logits, fpred, feats = net(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 3) and fpred.shape == (2, 12) and feats.shape == (2, 128)
    with pytest.raises(ValueError, match="32x32 or 64x64"):
        OracleNet(48)
    meta = {"attributes": list(faces.ATTRIBUTES), "factor_names": list(faces.FACTOR_NAMES),
            "factor_std": [0.29] * 12, "size": 32}
    with pytest.raises(ValueError, match=r"load_oracle\(size=...\)"):
        AttributeOracle(OracleNet(32), meta).predict_attributes(torch.rand(2, 3, 64, 64))


def test_ground_truth_edits_score_as_clean(trained, held_out):
    orc, _ = trained
    attrs, factors, _, _ = held_out
    for name in ("glasses", "facial_hair"):
        before = toggle(attrs, name, 0)
        original = render_faces(before, factors, 32)
        edited = render_faces(toggle(before, name, 1), factors, 32)
        m = edit_metrics(orc, edited, name, 1, original)
        assert m["success_rate"] >= 0.95, (name, m)
        assert m["attribute_leakage"] <= 0.03, (name, m)
        assert m["factor_leakage"] <= 0.2, (name, m)
    # an edit that also widens the face is caught on that factor
    wider = factors.clone()
    j = faces.FACTOR_NAMES.index("face_width")
    wider[:, j] = (wider[:, j] + 0.4).clamp(max=1.0)
    before = toggle(attrs, "facial_hair", 0)
    clean = edit_metrics(orc, render_faces(toggle(before, "facial_hair", 1), factors, 32), "facial_hair", 1,
                         render_faces(before, factors, 32))
    dragged = edit_metrics(orc, render_faces(toggle(before, "facial_hair", 1), wider, 32), "facial_hair", 1,
                           render_faces(before, factors, 32))
    assert dragged["factor_shift"]["face_width"] > 3 * clean["factor_shift"]["face_width"]
    # removing an attribute: target_value 0
    gone = edit_metrics(orc, render_faces(before, factors, 32), "facial_hair", 0)
    assert gone["success_rate"] >= 0.97
    with pytest.raises(ValueError, match="unknown attribute 'hat'"):
        edit_metrics(orc, edited, "hat")


def test_frechet_distance_behaves(trained, held_out):
    orc, _ = trained
    _, _, real, other = held_out
    base = frechet_distance(orc, real, other)
    assert frechet_distance(orc, real, real) < 1e-6
    blurred = [frechet_distance(orc, other, TF.gaussian_blur(real, 9, s)) for s in (0.5, 1.0, 2.0)]
    g = torch.Generator().manual_seed(0)
    noisy = [frechet_distance(orc, other, (real + s * torch.randn(real.shape, generator=g)).clamp(0, 1))
             for s in (0.1, 0.2, 0.3)]
    print(f"Fréchet distance: real vs real {base:.2f}, blur {blurred}, noise {noisy}")
    assert base < 0.2 * blurred[0] and base < 0.2 * noisy[0]
    assert blurred == sorted(blurred) and noisy == sorted(noisy)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(orc, real[:1], other)
