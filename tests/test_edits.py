"""The faces lessons' edit schema: free successes are visible, a perfect edit scores as one, bad input is named."""

import math

import pytest
import torch

from vaecourse import edits, faces
from vaecourse.faces import load_faces
from vaecourse.oracle import load_oracle
from vaecourse.results import CheckFailed

ATTRS = ["glasses", "facial_hair"]


@pytest.fixture(scope="module")
def oracle():
    return load_oracle(32, device="cpu", verbose=False, progress=False)  # cached by .ci/run


@pytest.fixture(scope="module")
def test_faces():
    return load_faces("test", n=300)  # every attribute: the ground truth is re-rendered from them


def identity(x, *_):
    return x


def perfect_edit(data):
    """An 'edit' that re-renders the faces it is given with the attribute set: what a perfect model would draw."""
    def edit(x, attribute, direction):
        j = faces.attribute_index(attribute)
        want = direction == "add"
        keep = (data.labels[:, j] > 0.5) != want
        assert x.shape[0] == int(keep.sum())  # one batch holds the whole (attribute, direction) group
        return faces.render_faces(faces.toggle(data.labels[keep], attribute, float(want)), data.factors[keep], 32)
    return edit


class Recorder:
    """A stand-in for vaecourse.Lesson that keeps the checks and raises like it on a miss."""

    def __init__(self):
        self.checks = []

    def check(self, name, value, *, above=None, below=None):
        ok = (above is None or value > above) and (below is None or value < below)
        self.checks.append((name, value, ok))
        if not ok:
            raise CheckFailed(name)


def test_doing_nothing_succeeds_only_where_it_is_free(oracle, test_faces):
    d = test_faces
    rows = edits.measure_edits(oracle, "identity", ATTRS, d.images, d.labels, d.factors, reconstruct=identity,
                               edit=identity, random_edit=identity)
    assert {r["method"] for r in rows} == set(edits.METHODS)
    assert len(rows) == len(ATTRS) * 2 * 4 and all(set(r) == set(edits.ROW_KEYS) for r in rows)
    for attr in ATTRS:
        for direction in edits.DIRECTIONS:
            group = int(((d.labels[:, faces.attribute_index(attr)] > 0.5) != (direction == "add")).sum())
            for method in ("edit", "random", "none"):
                r = edits.row(rows, "identity", attr, direction, method)
                assert r["n"] == group
                assert r["success"] < 0.08, r  # the crisp face keeps what it has (the oracle misses ~5 % of beards)
                assert r["attribute_leakage"] < 0.02, r
                flips = r["attribute_flips"]  # per other attribute; attribute_leakage is their mean
                assert set(flips) == {a for a in faces.ATTRIBUTES if a != attr}, flips
                assert sum(flips.values()) / len(flips) == pytest.approx(r["attribute_leakage"], abs=1e-6)
            truth = edits.row(rows, "identity", attr, direction, "ground_truth")
            assert truth["success"] > 0.9, truth  # the oracle's recall bound (>= 90 % per attribute; facial hair ~95 %)
            assert truth["attribute_leakage"] < 0.05, truth
    with pytest.raises(CheckFailed):
        edits.check_edits(Recorder(), rows, "identity", ATTRS, success_above=90, leakage_below=10, gain_above=50)


def test_a_perfect_edit_passes_the_checks(oracle, test_faces):
    d = test_faces
    rows = edits.measure_edits(oracle, "perfect", ATTRS, d.images, d.labels, d.factors, reconstruct=identity,
                               edit=perfect_edit(d), ground_truth=False, batch_size=len(d))
    assert {r["method"] for r in rows} == {"edit", "none"}
    rec = Recorder()
    edits.check_edits(rec, rows, "perfect", ATTRS, success_above=90, leakage_below=10, gain_above=50)
    assert len(rec.checks) == len(ATTRS) * 2 * 3  # per attribute and direction, never averaged
    # reconstructions computed once and handed over as a tensor give the same rows as the callable
    given = edits.measure_edits(oracle, "perfect", ATTRS, d.images, d.labels, d.factors, reconstruct=d.images.clone(),
                                edit=perfect_edit(d), ground_truth=False, batch_size=len(d))
    assert given == rows
    # the edited images can be kept for a further look: each group's, in the order of the faces it edits
    kept = {}
    again = edits.measure_edits(oracle, "perfect", ATTRS, d.images, d.labels, d.factors, reconstruct=identity,
                                edit=perfect_edit(d), ground_truth=False, batch_size=len(d), keep_edited=kept)
    assert again == rows and set(kept) == {(a, di) for a in ATTRS for di in edits.DIRECTIONS}
    for (attr, direction), images in kept.items():
        keep = (d.labels[:, faces.attribute_index(attr)] > 0.5) != (direction == "add")
        assert torch.equal(images, perfect_edit(d)(d.images[keep], attr, direction))
    with pytest.raises(TypeError, match="keep_edited must be a dict"):
        edits.measure_edits(oracle, "perfect", ATTRS, d.images, d.labels, d.factors, reconstruct=identity,
                            edit=perfect_edit(d), keep_edited=[])
    with pytest.raises(ValueError, match="one reconstruction per image"):
        edits.measure_edits(oracle, "perfect", ATTRS, d.images, d.labels, d.factors, reconstruct=d.images[:5],
                            edit=perfect_edit(d), ground_truth=False)
    # a per-edit leakage threshold applies to that edit only; a dict without a default is refused
    strict = {("glasses", "add"): -1.0, "default": 10}
    with pytest.raises(CheckFailed, match="add glasses: attribute leakage"):
        edits.check_edits(Recorder(), rows, "perfect", ATTRS, success_above=90, leakage_below=strict, gain_above=50)
    with pytest.raises(ValueError, match="default"):
        edits.check_edits(Recorder(), rows, "perfect", ATTRS, success_above=90, leakage_below={}, gain_above=50)
    with pytest.raises(CheckFailed, match="remove facial_hair: oracle success"):
        edits.check_edits(Recorder(), rows, "perfect", ATTRS, leakage_below=10, gain_above=50,
                          success_above={("facial_hair", "remove"): 101, "default": 90})
    assert "| perfect | glasses | add | edit |" in edits.edits_markdown(rows)


def test_readback_rows(oracle, test_faces):
    d = test_faces
    rows = edits.readback(oracle, "crisp", ATTRS, d.images, d.labels)
    assert [r["attribute"] for r in rows] == ATTRS and all(r["accuracy"] > 0.95 for r in rows)
    assert "| crisp |" in edits.readback_markdown(rows)
    with pytest.raises(ValueError, match="same order"):
        edits.readback(oracle, "crisp", ATTRS, d.images[:10], d.labels)


def test_bad_input_names_the_fix(oracle, test_faces):
    d = test_faces
    kw = dict(reconstruct=identity, edit=identity)
    with pytest.raises(ValueError, match="same faces"):
        edits.measure_edits(oracle, "m", ATTRS, d.images[:10], d.labels, d.factors, **kw)
    with pytest.raises(ValueError, match="attributes=None"):
        edits.measure_edits(oracle, "m", ATTRS, d.images, d.labels[:, :2], d.factors, **kw)
    with pytest.raises(ValueError, match="not trained on 'smile'"):
        edits.measure_edits(oracle, "m", ["smile"], d.images, d.labels, d.factors, trained_on=ATTRS, **kw)
    with pytest.raises(ValueError, match="load_oracle"):
        big = torch.zeros(len(d), 3, 64, 64)
        edits.measure_edits(oracle, "m", ATTRS, big, d.labels, d.factors, **kw)
    with pytest.raises(ValueError, match="finite"):
        edits.latent_step(torch.ones(4), float("nan"))
    with pytest.raises(ValueError, match="non-zero"):
        edits.latent_step(torch.zeros(4), 1.0)


def test_latent_step_and_the_smallest_confident_delta():
    step = edits.latent_step(torch.tensor([3.0, 4.0]), 5.0)
    z = torch.zeros(2, 2)
    assert torch.allclose(step(z, "add"), torch.tensor([[3.0, 4.0]] * 2))
    assert torch.allclose(step(z, "remove"), torch.tensor([[-3.0, -4.0]] * 2))
    # logit 2·z0 from z0 = -1: 90 % confidence needs 2·z0 > log 9, i.e. δ > 1 + log(9)/2 ≈ 2.10 → 2.25 on the grid
    logit = lambda z: 2 * z[:, 0]  # noqa: E731
    codes = torch.full((5, 2), -1.0)
    assert edits.smallest_confident_delta(logit, codes, torch.tensor([1.0, 0.0]), "add") == 2.25
    assert math.isclose(1 + math.log(9) / 2, 2.0986, rel_tol=1e-4)
    with pytest.raises(ValueError, match="no δ"):
        edits.smallest_confident_delta(logit, codes, torch.tensor([0.0, 1.0]), "add")


def test_confident_steps_move_each_face_only_as_far_as_it_needs():
    # logit 2·z0: 90 % confidence needs z0 > log(9)/2 ≈ 1.10; faces start at z0 = -1, 0 and 1
    logit = lambda z: 2 * z[:, 0]  # noqa: E731
    codes = torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    u = torch.tensor([1.0, 0.0])
    deltas = edits.confident_steps(logit, codes, u, "add", confidence=0.9)
    assert deltas.tolist() == [2.25, 1.25, 0.25]  # the smallest grid step past 1.10 - z0, face by face
    moved = edits.per_face_step(u, deltas)(codes, "add")
    assert bool((torch.sigmoid(logit(moved)) > 0.9).all())
    assert torch.allclose(edits.per_face_step(u, deltas)(codes, "remove")[:, 0], codes[:, 0] - deltas)
    # a surer classifier means a longer step; a face nothing convinces gets the grid's last value
    assert bool((edits.confident_steps(logit, codes, u, "add", confidence=0.99) >= deltas).all())
    assert edits.confident_steps(logit, codes, torch.tensor([0.0, 1.0]), "add").tolist() == [10.0] * 3
    # the random baseline can match each face's length
    rnd = edits.random_latent_step(deltas, torch.Generator().manual_seed(0))(torch.zeros(3, 2), "add")
    assert torch.allclose(rnd.norm(dim=1), deltas, atol=1e-5)
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        edits.confident_steps(logit, codes, u, "add", confidence=1.0)
    with pytest.raises(ValueError, match="one δ per face"):
        edits.per_face_step(u, deltas)(torch.zeros(5, 2), "add")
    with pytest.raises(ValueError, match="finite"):
        edits.per_face_step(u, torch.tensor([1.0, float("nan")]))


def test_the_random_baseline_draws_a_direction_per_face():
    step = edits.random_latent_step(2.0, torch.Generator().manual_seed(0))
    z = torch.zeros(500, 8)
    moved = step(z, "add")
    assert torch.allclose(moved.norm(dim=1), torch.full((500,), 2.0), atol=1e-5)  # the edit's length
    cos = torch.nn.functional.normalize(moved, dim=1) @ torch.nn.functional.normalize(moved, dim=1).T
    assert float(cos.triu(1).abs().max()) < 0.999  # not one shared direction
    assert float(moved.mean(0).norm()) < 0.3  # directions spread over the sphere (one shared would give 2.0)
    with pytest.raises(ValueError, match="'add' or 'remove'"):
        step(z, "flip")


def test_conditional_models_get_each_batchs_labels(oracle, test_faces):
    d = test_faces
    seen = []

    def edit(x, attribute, direction, *, labels):
        seen.append((attribute, direction, labels.clone()))
        return x

    edits.measure_edits(oracle, "conditional", ["glasses"], d.images, d.labels, d.factors,
                        reconstruct=lambda x, *, labels: x, edit=edit, ground_truth=False, pass_labels=True,
                        batch_size=64)
    for direction in edits.DIRECTIONS:
        got = torch.cat([y for a, dr, y in seen if dr == direction])
        keep = (d.labels[:, 0] > 0.5) != (direction == "add")
        assert torch.equal(got, d.labels[keep])  # the rows of the faces edited, in order, across batches


def test_leakage_is_compared_on_the_faces_every_model_edited(oracle, test_faces):
    d = test_faces
    g, s = faces.attribute_index("glasses"), faces.attribute_index("smile")
    keep = d.labels[:, g] <= 0.5  # "add glasses" applies to the faces without
    x, labels, factors = d.images[keep], d.labels[keep], d.factors[keep]
    with_glasses = faces.toggle(labels, "glasses", 1.0)
    clean = faces.render_faces(with_glasses, factors, 32)
    smile_flipped = with_glasses.clone()
    smile_flipped[:, s] = 1 - smile_flipped[:, s]
    leaky = faces.render_faces(smile_flipped, factors, 32)  # adds the glasses and flips the smile on every face
    half = len(x) // 2
    timid = torch.cat([clean[:half], x[half:]])  # edits only the first half
    res = edits.leakage_where_all_succeed(oracle, "glasses", "add", {"clean": clean, "timid": timid, "leaky": leaky},
                                          {"clean": x, "timid": x, "leaky": x})
    assert res["of"] == len(x) and 0.8 * half < res["faces"] <= half  # the oracle misses a few re-rendered glasses
    assert res["leakage"]["clean"] < 0.05 and res["leakage"]["timid"] == res["leakage"]["clean"]
    assert res["flips"]["leaky"]["smile"] > 0.9 and res["leakage"]["leaky"] > 0.4
    with pytest.raises(ValueError, match="same faces in the same order"):
        edits.leakage_where_all_succeed(oracle, "glasses", "add", {"clean": clean}, {"clean": x[:-1]})
    with pytest.raises(ValueError, match="under the same names"):
        edits.leakage_where_all_succeed(oracle, "glasses", "add", {"clean": clean}, {"other": x})
    with pytest.raises(ValueError, match="'add' or 'remove'"):
        edits.leakage_where_all_succeed(oracle, "glasses", "plus", {"clean": clean}, {"clean": x})
