import pytest
import torch

from vaecourse.config import PROFILES, ProfileError, by_profile, pick_device, resolve_profile, seed_everything


def test_profile_defaults_follow_the_environment(monkeypatch):
    monkeypatch.delenv("VAECOURSE_PROFILE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert resolve_profile() == "smoke"
    monkeypatch.setenv("CI", "false")
    assert resolve_profile() == ("full" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("VAECOURSE_PROFILE", "full")
    assert resolve_profile() == "full"
    assert resolve_profile("smoke") == "smoke"  # an explicit choice wins over the environment


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ProfileError) as err:
        resolve_profile("fast")
    for p in PROFILES:
        assert p in str(err.value)


def test_by_profile_override_and_missing_value():
    assert by_profile("cpu", None, smoke=1, cpu=5, full=15) == 5
    assert by_profile("cpu", 7, smoke=1, cpu=5, full=15) == 7
    with pytest.raises(ValueError, match="missing"):
        by_profile("cpu", None, smoke=1, cpu=5)


def test_device_choice(monkeypatch):
    monkeypatch.delenv("VAECOURSE_DEVICE", raising=False)
    dev = pick_device()
    assert dev.type in ("cuda", "mps", "cpu")
    assert pick_device("cpu").type == "cpu"


def test_seeding_repeats_exactly():
    g = seed_everything(3)
    a = (torch.randn(4), torch.randperm(10, generator=g))
    g = seed_everything(3)
    b = (torch.randn(4), torch.randperm(10, generator=g))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_results_accept_numpy_and_torch_values(tmp_path, monkeypatch):
    import json

    import numpy as np

    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    lesson = vc.start_lesson("00_test", profile="smoke")
    lesson.record(array=np.arange(3), scalar=np.float32(0.5), tensor=torch.ones(2), nested={"a": np.int64(2)})
    lesson.finish()
    saved = json.loads((tmp_path / "00_test.smoke.json").read_text())
    assert saved["numbers"] == {"array": [0, 1, 2], "scalar": 0.5, "tensor": [1.0, 1.0], "nested": {"a": 2}}
    with pytest.raises(vc.CheckFailed):
        lesson.check("a number that misses", 1.0, below=0.5)
    assert json.loads((tmp_path / "00_test.smoke.json").read_text())["checks"][-1]["passed"] is False
    assert vc.widgets.latent_sliders and vc.plots.show_images  # reachable from the top-level import


def test_a_rehearsal_reports_missed_checks_and_anything_else_raises(tmp_path, monkeypatch, capsys):
    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    lesson = vc.start_lesson("00_test", profile="full", device="cpu")
    monkeypatch.setenv("VAECOURSE_CHECKS", "report")
    assert lesson.check("a number that misses", 1.0, below=0.5) is None  # printed and recorded, the run goes on
    assert "[FAIL] a number that misses" in capsys.readouterr().out
    assert lesson.checks[-1]["passed"] is False
    monkeypatch.setenv("VAECOURSE_CHECKS", "raise")
    with pytest.raises(vc.CheckFailed):
        lesson.check("a number that misses", 1.0, below=0.5)
    monkeypatch.setenv("VAECOURSE_CHECKS", "warn")
    with pytest.raises(ValueError, match="'raise' or 'report'"):
        lesson.check("a number that misses", 1.0, below=0.5)


def test_results_name_the_data_source_even_when_the_lesson_describes_its_data(tmp_path, monkeypatch):
    import json

    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    lesson = vc.start_lesson("00_test", profile="smoke", device="cpu")
    digits = vc.load_dataset("digits", "train", limit=100)
    lesson.note(data=digits.describe())
    lesson.finish()
    saved = json.loads((tmp_path / "00_test.smoke.json").read_text())
    assert saved["notes"]["data"] == digits.describe() and saved["notes"]["data_source"].startswith("digits")
