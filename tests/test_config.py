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
    assert json.loads((tmp_path / "00_test.smoke.failed.json").read_text())["checks"][-1]["passed"] is False
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


def test_results_are_written_only_by_a_completed_passing_run(tmp_path, monkeypatch, capsys):
    import json

    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    good = vc.start_lesson("00_test", profile="smoke", device="cpu")
    capsys.readouterr()
    good.check("a number that passes", 1.0, below=2.0)
    assert capsys.readouterr().out == ""  # a passing check is listed by finish(), not printed in the lesson's flow
    good.reproduce("final loss", 300.0, 307, "report 004", "z=2")
    assert not list(tmp_path.glob("*.json"))  # nothing until finish()
    good.check("a number that passes", 1.5, below=2.0)  # the cell run again: replaced, not repeated
    good.reproduce("final loss", 301.0, 307, "report 004", "z=2, run again")
    good.reproduce("final loss", 229.0, 229, "report 004", "Fashion-MNIST")  # another source value: its own row
    good.finish()
    saved = json.loads((tmp_path / "00_test.smoke.json").read_text())
    assert saved["completed"] and [c["value"] for c in saved["checks"]] == [1.5]
    assert [r["ours"] for r in saved["reproduction"]] == [301.0, 229.0]
    out = capsys.readouterr().out
    assert "1/1 checks passed" in out and "✓ a number that passes: 1.5 (want < 2)" in out

    bad = vc.start_lesson("00_test", profile="smoke", device="cpu")
    with pytest.raises(vc.CheckFailed, match="00_test.smoke.failed.json"):
        bad.check("a number that misses", 1.0, below=0.5)
    assert json.loads((tmp_path / "00_test.smoke.json").read_text()) == saved  # the passing file is untouched
    failed = json.loads((tmp_path / "00_test.smoke.failed.json").read_text())
    assert failed["completed"] is False and failed["checks"][0]["passed"] is False
    good.finish()  # a later passing run supersedes the failed attempt
    assert not (tmp_path / "00_test.smoke.failed.json").exists()


def test_a_rehearsal_with_missed_checks_finishes_into_the_failed_file(tmp_path, monkeypatch):
    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    monkeypatch.setenv("VAECOURSE_CHECKS", "report")
    lesson = vc.start_lesson("00_test", profile="smoke", device="cpu")
    lesson.check("a number that misses", 1.0, below=0.5)
    lesson.finish()
    assert [p.name for p in tmp_path.glob("*.json")] == ["00_test.smoke.failed.json"]


def test_a_lesson_variant_keeps_its_own_results_file(tmp_path, monkeypatch):
    import json

    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    default = vc.start_lesson("00_test", profile="smoke", device="cpu")
    default.check("a number that passes", 1.0, below=2.0)
    default.finish()
    eye = vc.start_lesson("00_test", profile="smoke", device="cpu", variant="eye")
    eye.check("a number that passes", 1.2, below=2.0)
    eye.finish()  # next to the default run's file, not over it
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["00_test.smoke.eye.json", "00_test.smoke.json"]
    assert json.loads((tmp_path / "00_test.smoke.eye.json").read_text())["variant"] == "eye"
    assert "variant" not in json.loads((tmp_path / "00_test.smoke.json").read_text())
    assert vc.results.load_results("00_test", "smoke", tmp_path, variant="eye")["checks"][0]["value"] == 1.2
    with pytest.raises(ValueError, match="lower-case letters"):
        vc.start_lesson("00_test", profile="smoke", device="cpu", variant="../eye")


def test_parameter_overrides_are_recorded_by_name(tmp_path, monkeypatch):
    import json

    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    lesson = vc.start_lesson("00_test", profile="smoke", device="cpu")
    EPOCHS, N_TRAIN, LATENT = 7, None, 2  # noqa: N806 (notebook parameters)
    assert lesson.pick(EPOCHS, smoke=3, cpu=10, full=100) == 7
    assert lesson.pick(N_TRAIN, smoke=500, cpu=1000, full=6000) == 500
    assert lesson.pick(LATENT, smoke=2, cpu=2, full=2) == 2  # the profile's own value: not an override
    lesson.finish()
    saved = json.loads((tmp_path / "00_test.smoke.json").read_text())
    assert saved["overrides"] == {"EPOCHS": {"value": 7, "profile": 3}}
    for EPOCHS in (-3, 2.5, "3"):  # noqa: N806
        with pytest.raises(ValueError, match="EPOCHS must be"):
            lesson.pick(EPOCHS, smoke=3, cpu=10, full=100)
    assert lesson.pick(0.5, smoke=0.1, cpu=0.2, full=0.3) == 0.5  # not a count: taken as given


def test_a_seed_that_is_not_a_whole_number_is_named(monkeypatch):
    import vaecourse as vc

    for seed in ("abc", 2.5, -1):
        with pytest.raises(ValueError, match="SEED"):
            vc.start_lesson("00_test", profile="smoke", seed=seed, device="cpu")


def test_full_on_a_cpu_runs_cpu_with_an_estimate_unless_asked_for_explicitly(monkeypatch, capsys):
    import vaecourse as vc

    monkeypatch.delenv("VAECOURSE_PROFILE", raising=False)
    assert vc.start_lesson("04_geco", profile="full", device="cpu").profile == "cpu"
    out = capsys.readouterr().out
    assert "about 150 min" in out and "VAECOURSE_PROFILE=full" in out
    assert vc.start_lesson("07_csvae", profile="full", device="cpu").profile == "cpu"
    assert "hours" in capsys.readouterr().out
    assert vc.start_lesson("01_elbo", profile="full", device="cpu").profile == "full"  # measured: 1.5 min
    assert "about 1.5 min" in capsys.readouterr().out
    monkeypatch.setenv("VAECOURSE_PROFILE", "full")
    assert vc.start_lesson("04_geco", device="cpu").profile == "full"


def test_outside_a_checkout_files_go_under_the_working_folder_or_vaecourse_home(tmp_path, monkeypatch):
    from vaecourse import config

    for var in ("VAECOURSE_RESULTS", "VAECOURSE_HOME", "VAECOURSE_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert config.source_checkout() is not None and config.results_home() == config.source_checkout() / "results"
    monkeypatch.setattr(config, "PACKAGE_PARENT", tmp_path / "site-packages")  # as after pip install
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert config.source_checkout() is None
    assert config.results_home() == tmp_path / "results"
    assert config.data_home() == tmp_path / "xdg" / "vaecourse" / "data"
    monkeypatch.setenv("VAECOURSE_HOME", str(tmp_path / "class"))
    assert config.results_home() == tmp_path / "class" / "results"
    assert config.data_home() == tmp_path / "class" / "data"


def test_an_unwritable_results_folder_names_the_variable_to_set(tmp_path, monkeypatch):
    import vaecourse as vc
    from vaecourse.config import NotWritableError

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path / "a-file" / "results"))
    lesson = vc.start_lesson("00_test", profile="smoke", device="cpu")
    with pytest.raises(NotWritableError, match="set VAECOURSE_RESULTS"):
        lesson.finish()
    with pytest.raises(vc.CheckFailed, match="not saved: .*set VAECOURSE_RESULTS"):  # the miss still reads as one
        lesson.check("a number that misses", 1.0, below=0.5)


def test_results_files_are_readable_by_others_as_the_umask_allows(tmp_path, monkeypatch):
    import os

    import vaecourse as vc

    monkeypatch.setenv("VAECOURSE_RESULTS", str(tmp_path))
    old = os.umask(0o022)
    try:
        vc.start_lesson("00_test", profile="smoke", device="cpu").finish()
    finally:
        os.umask(old)
    assert (tmp_path / "00_test.smoke.json").stat().st_mode & 0o777 == 0o644


def test_printed_paths_read_the_same_on_every_machine(tmp_path, monkeypatch):
    from vaecourse import config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".cache").mkdir(parents=True)
    assert config.shown_path(tmp_path / "home" / ".cache" / "x.pt") == "~/.cache/x.pt"
    checkout = config.source_checkout()
    if checkout is not None:
        assert config.shown_path(checkout / "data" / "mnist") == "data/mnist"
    assert config.shown_path(tmp_path / "elsewhere") == str((tmp_path / "elsewhere").resolve())
