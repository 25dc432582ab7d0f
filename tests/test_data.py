import gzip
import struct

import numpy as np
import pytest
import torch

from vaecourse import data as D


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


def test_mnist_offline_falls_back_to_the_packaged_subset(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "empty")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
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
    monkeypatch.setattr(D, "_ONLINE", None)
    monkeypatch.setenv("VAECOURSE_OFFLINE", "1")

    def boom(*a, **k):
        raise AssertionError("probed the network")

    monkeypatch.setattr(D.socket, "create_connection", boom)
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
    monkeypatch.setattr(D, "REPO_DATA", tmp_path / "empty")
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
    for name in ("mnist", "digits"):
        first = D.load_dataset(name, "train", limit=200)
        assert len(torch.unique(first.labels)) == 10, name
