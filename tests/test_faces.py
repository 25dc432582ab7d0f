"""The procedural faces: deterministic, the parameters mean what they say, bad inputs are refused."""

import hashlib

import pytest
import torch

from vaecourse import faces
from vaecourse.data import load_dataset
from vaecourse.faces import ATTRIBUTES, FACTOR_NAMES, FaceConfig, load_faces, render_faces, sample_split


def test_same_seed_same_tensors_and_splits_differ():
    a = load_faces("train", n=300, size=32, seed=3)
    b = load_faces("train", n=300, size=32, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.factors, b.factors)
    other_seed = load_faces("train", n=300, size=32, seed=4)
    val = load_faces("val", n=300, size=32, seed=3)
    assert not torch.equal(a.factors, other_seed.factors)
    assert not torch.equal(a.factors, val.factors)
    # the first n faces do not depend on how many are asked for (limit= and n= agree)
    more = load_faces("train", n=1500, size=32, seed=3)
    assert torch.equal(more.images[:300], a.images)


def test_contract_shapes_ranges_and_8bit_levels():
    for size in (32, 64):
        d = load_faces("test", n=64, size=size)
        assert d.images.shape == (64, 3, size, size) and d.images.dtype == torch.float32
        assert d.images.min() >= 0 and d.images.max() <= 1
        assert torch.equal(d.images, (d.images * 255).round() / 255)
        assert d.labels.shape == (64, len(ATTRIBUTES)) and set(d.labels.unique().tolist()) <= {0.0, 1.0}
        assert d.classes == list(ATTRIBUTES) and d.factor_names == list(FACTOR_NAMES)
        assert d.factors.shape == (64, len(FACTOR_NAMES)) and d.factors.min() >= 0 and d.factors.max() <= 1
    d = load_dataset("faces", "val", n=50, verbose=False)
    assert len(d) == 50 and d.name == "faces"


def test_known_checksum_of_a_small_batch():
    # the bits of FACES_VERSION 1: a change here means the version must be bumped (cached oracles go stale)
    d = load_faces("test", n=16, size=32, seed=0)
    digest = hashlib.sha256((d.images * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()[:16]
    assert digest == KNOWN_DIGEST, f"faces changed (digest {digest}); bump FACES_VERSION"


def test_rates_match_parameters():
    cfg = FaceConfig(rates={"glasses": 0.1, "facial_hair": 0.45, "smile": 0.7})
    attrs, _ = sample_split(cfg, "train", 20000)
    assert torch.allclose(attrs.mean(0), torch.tensor([0.1, 0.45, 0.7]), atol=0.015)


def test_facial_hair_correlates_with_face_width_as_asked():
    def corr(rho):
        cfg = FaceConfig(correlations={("facial_hair", "face_width"): rho})
        attrs, factors = sample_split(cfg, "train", 20000)
        x, y = attrs[:, 1], factors[:, FACTOR_NAMES.index("face_width")]
        return float(torch.corrcoef(torch.stack([x, y]))[0, 1])

    c0, c6, cneg = corr(0.0), corr(0.6), corr(-0.6)
    assert abs(c0) < 0.03
    assert 0.35 < c6 < 0.6 and -0.6 < cneg < -0.35
    # the default mirrors CelebA's facial hair / gender link
    assert FaceConfig().correlations[("facial_hair", "face_width")] == 0.6
    # other pairs stay independent
    attrs, factors = sample_split(FaceConfig(), "train", 20000)
    assert abs(float(torch.corrcoef(torch.stack([attrs[:, 0], factors[:, 0]]))[0, 1])) < 0.03


def test_subsets_and_neg_pos_ratio():
    eye = load_faces("train", n=900, subset="eye", neg_pos_ratio=2)
    assert eye.classes == ["glasses"] and eye.name == "faces-eye"
    assert abs(float(eye.labels.mean()) - 1 / 3) < 0.002
    # a prefix keeps roughly the ratio (positives are spread through the split)
    assert 0.2 < float(eye.labels[:150].mean()) < 0.47
    ef = load_faces("train", n=900, subset="eyefacial", neg_pos_ratio=2)
    assert ef.classes == ["glasses", "facial_hair"]
    assert abs(float((ef.labels.amax(1) > 0).float().mean()) - 1 / 3) < 0.002
    facial = load_faces("train", n=300, subset="facial")
    assert facial.labels.shape == (300, 1)
    picked = load_faces("train", n=10, attributes=["smile", "glasses"])
    assert picked.classes == ["smile", "glasses"]
    with pytest.raises(ValueError, match="unknown faces subset 'Eye'; choose one of eye, facial, eyefacial"):
        load_faces("train", n=10, subset="Eye")
    assert faces.check_subset("facial") == "facial"


def test_also_label_adds_columns_without_changing_the_draw():
    ef = load_faces("train", n=400, subset="eyefacial", neg_pos_ratio=1)
    more = load_faces("train", n=400, subset="eyefacial", neg_pos_ratio=1, also_label=["smile"])
    assert more.classes == ["glasses", "facial_hair", "smile"]
    assert torch.equal(more.images, ef.images) and torch.equal(more.labels[:, :2], ef.labels)
    # the three columns are every attribute in ATTRIBUTES' order: re-rendering from them gives the same faces
    assert torch.equal(render_faces(more.labels, more.factors, 32), more.images)
    assert 0.3 < float(more.labels[:, 2].mean()) < 0.7  # smile is drawn independently, about half the faces
    with pytest.raises(ValueError, match="repeats"):
        load_faces("train", n=10, subset="eyefacial", also_label=["glasses"])
    with pytest.raises(ValueError, match="lists of names"):
        load_faces("train", n=10, subset="eyefacial", also_label="smile")


def test_ground_truth_edit_changes_only_the_attribute_region():
    attrs, factors = sample_split(FaceConfig(), "test", 64)
    attrs[:, 0] = 0
    plain = render_faces(attrs, factors, 64)
    with_glasses = render_faces(faces.toggle(attrs, "glasses", 1), factors, 64)
    diff = (with_glasses - plain).abs().amax(1)  # (N, H, W)
    assert (diff.flatten(1).amax(1) > 0.2).all()  # every face visibly changed
    changed_rows = (diff > 0.02).any(2).float().mean(0)  # glasses live in the eye band only
    assert changed_rows[:12].max() == 0 and changed_rows[44:].max() == 0


@pytest.mark.parametrize("kwargs, words", [
    ({"size": 48}, "32 or 64"),
    ({"subset": "ears"}, "eye, facial, eyefacial"),
    ({"attributes": ["hat"]}, "glasses"),
    ({"rates": {"glasses": 1.0}}, "(0, 1)"),
    ({"rates": {"glasses": 0.0}}, "(0, 1)"),
    ({"rates": {"hat": 0.3}}, "unknown attribute"),
    ({"correlations": {("facial_hair", "face_width"): 1.5}}, "[-1, 1]"),
    ({"correlations": {("facial_hair", "nose"): 0.5}}, "unknown name"),
    ({"neg_pos_ratio": 0}, "neg_pos_ratio"),
    ({"split": "dev"}, "'train', 'val' or 'test'"),
])
def test_bad_inputs_name_the_fix(kwargs, words):
    with pytest.raises(ValueError, match=None) as err:
        load_faces(**{"n": 10, **kwargs})
    assert words in str(err.value)


def test_inconsistent_correlations_are_refused():
    bad = {("facial_hair", "face_width"): 0.9, ("face_width", "smile"): 0.9, ("facial_hair", "smile"): -0.9}
    with pytest.raises(ValueError, match="positive definite"):
        FaceConfig(correlations=bad)


def test_config_key_changes_with_version_and_parameters(monkeypatch):
    base = FaceConfig().key()
    assert FaceConfig(rates={"smile": 0.4}).key() != base
    assert FaceConfig(size=64).key() != base
    monkeypatch.setattr(faces, "FACES_VERSION", "999")
    assert FaceConfig().key() != base


KNOWN_DIGEST = "9a3eb5a7ff37cbae"
