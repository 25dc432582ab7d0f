"""CelebA loading, offline, on a tiny CelebA-shaped folder the test writes itself."""

import numpy as np
import pytest
import torch
from PIL import Image

from vaecourse import celeba
from vaecourse.celeba import CELEBA_ATTRIBUTES, CELEBA_CCVAE_ATTRIBUTES, CelebAQuotaError, load_celeba
from vaecourse.data import DataNotFoundError, load_dataset

# (file, partition, attributes set to 1)
ROWS = [
    ("000001.jpg", 0, {"Eyeglasses", "Male", "Smiling"}),
    ("000002.jpg", 0, {"No_Beard", "Young"}),
    ("000003.jpg", 0, {"No_Beard", "Mustache", "Male"}),
    ("000004.jpg", 0, {"No_Beard", "Goatee"}),
    ("000005.jpg", 0, {"No_Beard", "Eyeglasses"}),
    ("000006.jpg", 0, {"No_Beard", "Blond_Hair"}),
    ("000007.jpg", 1, {"No_Beard"}),
    ("000008.jpg", 2, {"Male"}),
    ("000009.jpg", 2, {"No_Beard", "Eyeglasses"}),
]


def write_fake_celeba(root, rows=ROWS, with_images=True, with_partition=True):
    """A CelebA-shaped folder: 178x218 JPEGs and the attribute / partition files in the real formats."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [str(len(rows)), " ".join(CELEBA_ATTRIBUTES) + " "]
    for i, (name, _, on) in enumerate(rows):
        if with_images:
            pixels = np.full((218, 178, 3), 20 * i, np.uint8)
            pixels[35:183, 15:163] = rng.integers(0, 256, 3)  # the centre crop has one colour
            Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
        values = "".join(f"{(1 if a in on else -1):>3}" for a in CELEBA_ATTRIBUTES)
        lines.append(f"{name} {values}")
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if with_partition:
        (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p, _ in rows))
    return folder


def test_loads_the_fake_folder_offline(tmp_path):
    write_fake_celeba(tmp_path)
    d = load_celeba("train", root=tmp_path, size=64)
    assert d.images.shape == (6, 3, 64, 64) and d.images.dtype == torch.float32
    assert 0 <= float(d.images.min()) and float(d.images.max()) <= 1
    assert d.classes == list(CELEBA_CCVAE_ATTRIBUTES) and d.labels.shape == (6, 18)
    glasses = d.labels[:, d.classes.index("Eyeglasses")]
    assert glasses.tolist() == [1, 0, 0, 0, 1, 0]
    # the centre crop kept the flat square: each image is nearly one colour
    assert float(d.images.std(dim=(2, 3)).max()) < 0.03
    val = load_dataset("celeba", "val", root=tmp_path, size=32, verbose=False)
    assert len(val) == 1 and val.images.shape[-1] == 32
    assert len(load_celeba("test", root=tmp_path, size=64)) == 2


def test_facial_hair_group_and_subsets(tmp_path):
    write_fake_celeba(tmp_path)
    d = load_celeba("train", root=tmp_path, subset="facial")
    # not No_Beard (row 1), or Mustache (row 3), or Goatee (row 4)
    assert d.classes == ["facial_hair"] and d.labels[:, 0].tolist() == [1, 0, 1, 1, 0, 0]
    ef = load_celeba("train", root=tmp_path, subset="eyefacial")
    assert ef.classes == ["Eyeglasses", "facial_hair"]
    balanced = load_celeba("train", root=tmp_path, subset="eye", neg_pos_ratio=2)
    assert int(balanced.labels.sum()) == 2 and len(balanced) == 6  # 2 positives, 4 negatives
    two = load_celeba("train", root=tmp_path, n=3, attributes=["Smiling", "glasses"])
    assert len(two) == 3 and two.subset and two.labels[0].tolist() == [1, 1]


def test_unknown_attribute_and_bad_arguments(tmp_path):
    write_fake_celeba(tmp_path)
    with pytest.raises(ValueError, match="unknown CelebA attribute 'Sunglasses'"):
        load_celeba("train", root=tmp_path, attributes=["Sunglasses"])
    with pytest.raises(ValueError, match="'train', 'val' or 'test'"):
        load_celeba("dev", root=tmp_path)
    with pytest.raises(ValueError, match="eye, facial, eyefacial"):
        load_celeba("train", root=tmp_path, subset="hats")


def test_partial_files_are_named(tmp_path):
    write_fake_celeba(tmp_path, with_partition=False)
    with pytest.raises(DataNotFoundError, match="list_eval_partition.txt") as err:
        load_celeba("train", root=tmp_path)
    assert "only partly present" in str(err.value) and "img_align_celeba" in str(err.value)


def test_missing_images_are_counted(tmp_path):
    folder = write_fake_celeba(tmp_path)
    (folder / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataNotFoundError, match="1 CelebA images .* missing.*000002.jpg"):
        load_celeba("train", root=tmp_path)


def test_nothing_found_offline_lists_the_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(celeba, "REPO_DATA", tmp_path / "empty")
    monkeypatch.delenv("VAECOURSE_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="Place CelebA by hand") as err:
        load_celeba("train", root=tmp_path / "nowhere", download=False)
    assert "procedural faces" in str(err.value)


QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body>Sorry, you can't view or download this file at this time. Too many users have viewed or
downloaded this file recently.</body></html>"""


def test_quota_page_is_recognised_and_explained(tmp_path, monkeypatch):
    import torchvision

    def fake_download(root, split, target_type, download):  # what torchvision + gdown leave behind
        folder = tmp_path / "celeba"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "img_align_celeba.zip").write_text(QUOTA_PAGE)
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, "CelebA", fake_download)
    monkeypatch.setattr(celeba, "REPO_DATA", tmp_path / "empty")
    monkeypatch.delenv("VAECOURSE_DATA", raising=False)
    with pytest.raises(CelebAQuotaError, match="quota") as err:
        load_celeba("train", root=tmp_path, download=True)
    assert "img_align_celeba.zip is a Google Drive web page" in str(err.value)
    assert "list_eval_partition.txt" in str(err.value)  # the manual instructions
    assert celeba.is_quota_page(tmp_path / "celeba" / "img_align_celeba.zip")
    real = tmp_path / "real.zip"
    real.write_bytes(b"PK\x03\x04" + bytes(100))
    assert not celeba.is_quota_page(real)
