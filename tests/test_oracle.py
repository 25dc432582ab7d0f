"""The faces oracle: accurate on held-out faces, robust to blur and noise, cached safely, and its metrics behave."""

import math
import shutil

import pytest
import torch
import torchvision.transforms.functional as TF

from vaecourse import faces, oracle
from vaecourse.faces import FaceConfig, render_faces, sample_split, toggle
from vaecourse.oracle import (
    AttributeOracle,
    Augmentation,
    OracleNet,
    edit_metrics,
    format_robustness,
    frechet_distance,
    gaussian_blur,
    load_oracle,
    robustness_table,
    train_oracle,
)

# What the oracle must read on faces it was not trained on (issue 12: "an oracle that reads what the models draw").
# Over training seeds 0, 1 (tuned) and 2 (not tuned), on 1000 test faces: recall at blur 1 px >= 95 % per attribute
# (facial hair 95.5-97.2 %), false positives <= 2.2 % in every blurred condition and <= 1.7 % on toggled faces,
# the largest smile's under noise of std 0.1 (3.0-4.0 %; 4.8 % on the validation faces read here), crisp accuracy
# >= 98.5 % (facial hair 98.5-98.75 %; about 3 % of moustaches are nearly invisible at 32 px). The limits below
# leave room for another seed or machine.
MIN_RECALL = 0.90            # recall per attribute: crisp, blur 0.5 and 1 px, noise 0.05, toggled
MIN_RECALL_HARSH = 0.85      # blur 1.5 px and noise 0.1 (facial hair 92.0-94.8 %)
MAX_FALSE_POSITIVES = 0.05   # false positives per attribute in every condition but the noisiest
MAX_FALSE_POSITIVES_NOISE = 0.06  # noise of std 0.1 (three times a calibrated VAE's error per pixel)
MIN_CRISP_ACCURACY = 0.98    # per attribute on crisp faces


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The course's 32 px oracle: from the cache ``.ci/run`` fills, else trained now (about a minute) and cached.

    A copy of the cached file in a temporary folder is what the cache tests read.
    """
    orc = load_oracle(32, device="cpu", verbose=False, progress=False)
    cache = tmp_path_factory.mktemp("oracle_cache")
    key = orc.meta["key"]
    shutil.copy(oracle.cache_dir() / f"faces_oracle_32px_{key}.pt", cache)
    return orc, cache


@pytest.fixture(scope="module")
def held_out():
    attrs, factors = sample_split(FaceConfig(), "test", 1500)
    other_attrs, other_factors = sample_split(FaceConfig(), "val", 1500)
    return attrs, factors, render_faces(attrs, factors, 32), render_faces(other_attrs, other_factors, 32)


def test_accuracy_on_held_out_faces(trained, held_out):
    orc, _ = trained
    for name, acc in orc.meta["accuracy"].items():
        assert acc >= MIN_CRISP_ACCURACY, f"{name}: {acc:.3f}"
    attrs, _, images, _ = held_out
    fresh = orc.accuracy(images, attrs)
    assert min(fresh.values()) >= 0.97, fresh
    # the regression head reads every factor back; eye spacing, about a pixel at 32 px, is the faintest (R^2 0.80-0.82
    # over seeds 0-2; 0.07 when the blur/noise read-back weighed as much as the factors: QUALITY_WEIGHT)
    assert min(orc.meta["factor_r2"].values()) > 0.7, orc.meta["factor_r2"]


@pytest.fixture(scope="module")
def robustness(trained):
    """The robustness table recomputed on 1000 faces of the validation split (the oracle saw neither split)."""
    orc, _ = trained
    return {(r["condition"], r["attribute"]): r for r in robustness_table(orc, 1000, split="val")}


def test_oracle_reads_blurred_noisy_and_toggled_faces(trained, robustness):
    orc, _ = trained
    table = format_robustness(list(robustness.values()))
    print(table)
    conditions = {c for c, _ in robustness}
    assert conditions == {"crisp", "blur 0.5 px", "blur 1 px", "blur 1.5 px", "noise 0.05", "noise 0.1", "toggled"}
    failures = []
    for (condition, attribute), r in robustness.items():
        assert r["n_pos"] >= 150 and r["n_neg"] >= 150, r
        harsh = condition in ("blur 1.5 px", "noise 0.1")
        min_recall = MIN_RECALL_HARSH if harsh else MIN_RECALL
        max_fp = MAX_FALSE_POSITIVES_NOISE if condition == "noise 0.1" else MAX_FALSE_POSITIVES
        if r["recall"] < min_recall:
            failures.append(f"{attribute} at {condition}: recall {r['recall']:.3f} < {min_recall}")
        if r["false_positive_rate"] > max_fp:
            failures.append(f"{attribute} at {condition}: false positives {r['false_positive_rate']:.3f} > {max_fp}")
        if condition == "crisp" and r["accuracy"] < MIN_CRISP_ACCURACY:
            failures.append(f"{attribute} crisp: accuracy {r['accuracy']:.3f} < {MIN_CRISP_ACCURACY}")
    assert not failures, "\n".join(failures) + "\n" + table
    # the table made at training time is kept with the weights, in the same schema
    stored = orc.meta["robustness"]
    assert {(r["condition"], r["attribute"]) for r in stored} == set(robustness)
    assert set(stored[0]) == {"condition", "attribute", "recall", "false_positive_rate", "accuracy", "n_pos", "n_neg"}
    assert min(r["recall"] for r in stored if r["condition"] == "blur 1 px") >= MIN_RECALL


def test_oracle_reads_blur_and_noise_back(trained, held_out):
    """The quality head: what keeps blur in the features (and so in the Fréchet distance)."""
    orc, _ = trained
    _, _, real, _ = held_out
    g = torch.Generator().manual_seed(1)
    median = {}
    for name, x in (("crisp", real), ("blur 0.5", gaussian_blur(real, 0.5)), ("blur 1", gaussian_blur(real, 1.0)),
                    ("blur 1.5", gaussian_blur(real, 1.5)),
                    ("noise 0.05", (real + 0.05 * torch.randn(real.shape, generator=g)).clamp(0, 1))):
        median[name] = orc.blur_and_noise(x).median(0).values.tolist()
    print("median blur (px) and noise read back:", median)
    assert median["crisp"][0] < 0.3 and median["crisp"][1] < 0.02
    assert median["blur 0.5"][0] < median["blur 1"][0] < median["blur 1.5"][0]
    assert 0.7 < median["blur 1"][0] < 1.3
    assert 0.03 < median["noise 0.05"][1] < 0.08 and median["noise 0.05"][0] < 0.5


def test_robustness_table_counts_and_format(trained):
    orc, _ = trained
    rows = robustness_table(orc, 200, sigmas=(0, 1), noise=(), toggled=True)
    attrs, _ = sample_split(FaceConfig(), "test", 200)
    for r in rows:
        j = faces.ATTRIBUTES.index(r["attribute"])
        n_pos = int(attrs[:, j].sum()) if r["condition"] != "toggled" else 200 - int(attrs[:, j].sum())
        assert (r["n_pos"], r["n_neg"]) == (n_pos, 200 - n_pos), r
        assert abs(r["accuracy"] - (r["recall"] * n_pos + (1 - r["false_positive_rate"]) * (200 - n_pos)) / 200) < 1e-6
    text = format_robustness(rows)
    lines = text.splitlines()
    assert lines[0] == "| recall / false positives (%) | crisp | blur 1 px | toggled |"
    assert len(lines) == 2 + len(faces.ATTRIBUTES) and lines[2].startswith("| glasses | ")
    with pytest.raises(ValueError, match="n must be"):
        robustness_table(orc, 0)


def test_gaussian_blur_matches_torchvision_per_image():
    x = torch.rand(5, 3, 32, 32)
    for s in (0.5, 1.0, 1.5, 2.0):
        ref = TF.gaussian_blur(x, 2 * math.ceil(3 * s) + 1, s)
        assert torch.allclose(gaussian_blur(x, s), ref, atol=1e-5), s
    sigmas = torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0])
    mixed = gaussian_blur(x, sigmas)
    assert torch.equal(mixed[0], x[0])
    for i in range(1, 5):
        assert torch.allclose(mixed[i], gaussian_blur(x[i:i + 1], float(sigmas[i]))[0], atol=1e-5)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    with pytest.raises(ValueError, match="one per image"):
        gaussian_blur(x, torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_blur(x, -1.0)


def test_augmentation_degrades_appearance_only():
    x = render_faces(*sample_split(FaceConfig(), "train", 64), 32)
    aug = Augmentation()
    y1 = aug(x, torch.Generator().manual_seed(3))
    y2 = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2) and y1.shape == x.shape  # reproducible from the generator
    assert float(y1.min()) >= 0 and float(y1.max()) <= 1
    changed = (y1 - x).abs().flatten(1).amax(1) > 1e-6
    assert 0.5 < float(changed.float().mean()) < 1.0  # most faces degraded, some (p_clean) left as drawn
    assert torch.equal(Augmentation(p_clean=1.0)(x), x)


def test_augmentation_is_what_reads_blurred_faces():
    """Two small oracles, one budget (80 steps, about 20 s): only the augmented one sees blurred glasses."""
    recall = {}
    for augment in (None, Augmentation()):
        orc = train_oracle(FaceConfig(), n_train=5000, n_test=100, epochs=2, augment=augment, seed=0,
                           device="cpu", progress=False, n_robustness=0)
        rows = robustness_table(orc, 400, sigmas=(0, 1), noise=(), toggled=False, split="val")
        recall[augment is not None] = {(r["condition"], r["attribute"]): r["recall"] for r in rows}
    plain, augmented = recall[False], recall[True]
    print("recall without / with augmentation:", plain, augmented)
    assert plain["crisp", "glasses"] >= 0.9  # it has learnt glasses on crisp faces ...
    assert plain["blur 1 px", "glasses"] <= 0.3  # ... and misses them once blurred by 1 px
    # at this tiny budget the augmented oracle reaches 0.67 (the full oracle 0.98: the robustness test above)
    assert augmented["blur 1 px", "glasses"] >= plain["blur 1 px", "glasses"] + 0.3
    for a in faces.ATTRIBUTES:  # smile, a large feature, is read through blur either way (0.85 vs 0.86 measured)
        assert augmented["blur 1 px", a] >= plain["blur 1 px", a] - 0.05, a


def test_cache_is_reused_and_loaded_safely(trained):
    orc, cache = trained
    again = load_oracle(32, cache=cache, verbose=False)
    assert not again.trained_now and again.meta["key"] == orc.meta["key"]
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
    monkeypatch.setattr(oracle.model, "train_oracle", _stub_training(calls))  # load_oracle calls it there
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


def test_64px_oracle_and_bad_input_names_the_fix():
    net = OracleNet(64)
    logits, fpred, feats = net(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 3) and fpred.shape == (2, 12) and feats.shape == (2, 128)
    with pytest.raises(ValueError, match="32x32 or 64x64"):
        OracleNet(48)
    meta = {"attributes": list(faces.ATTRIBUTES), "factor_names": list(faces.FACTOR_NAMES),
            "factor_std": [0.29] * 12, "size": 32}
    orc = AttributeOracle(OracleNet(32), meta)
    bad = {  # input -> what the message must say
        "64 px": (torch.rand(2, 3, 64, 64), r"reads 32x32 faces.*got 64x64.*load_oracle\(64\)"),
        "48 px": (torch.rand(2, 3, 48, 48), r"got 48x48.*interpolate"),
        "grey": (torch.rand(2, 1, 32, 32), r"RGB.*got 1 channels.*expand\(-1, 3, -1, -1\)"),
        "RGBA": (torch.rand(2, 4, 32, 32), r"RGB.*got 4 channels"),
        "channels last": (torch.rand(2, 32, 32, 3), r"got 32 channels.*permute\(0, 3, 1, 2\)"),
        "one image": (torch.rand(3, 32, 32), r"batch.*x\[None\]"),
        "8-bit": (torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), r"uint8.*float\(\) / 255"),
        "NaN": (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
    }
    for x, message in bad.values():
        for call in (orc.read, orc.features, orc.predict_attributes):
            with pytest.raises(ValueError, match=message):
                call(x)
    orc.read(torch.rand(2, 3, 32, 32))  # the right input passes


def test_ground_truth_edits_score_as_clean(trained, held_out):
    orc, _ = trained
    attrs, factors, _, _ = held_out
    for name in ("glasses", "facial_hair"):
        before = toggle(attrs, name, 0)
        original = render_faces(before, factors, 32)
        edited = render_faces(toggle(before, name, 1), factors, 32)
        m = edit_metrics(orc, edited, name, 1, original)
        # facial hair is read on 95.0-96.5 % of re-rendered faces over seeds 0-2 (glasses 99.8-100 %): a thin moustache
        assert m["success_rate"] >= (0.95 if name == "glasses" else 0.92), (name, m)
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
    # a beard alone moves the face-width reading by 0.17-0.18 of its spread, a widened face by 1.05-1.09 (seeds 0-2)
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
    # The attribute head is trained to see through blur; the quality head keeps blur in the features. Over
    # seeds 0-2 blur 0.5 px gave 2.0-2.2 times, blur 1 px 16 times the distance between two real samples.
    assert base < 0.6 * blurred[0] and base < 0.2 * blurred[1] and base < 0.2 * noisy[0]
    assert blurred == sorted(blurred) and noisy == sorted(noisy)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(orc, real[:1], other)
