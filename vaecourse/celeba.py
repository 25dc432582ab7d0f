"""CelebA for users who have it: read from disk (placed by hand or downloaded by torchvision).

The files follow torchvision's layout, ``<root>/celeba/``::

    img_align_celeba/000001.jpg ...   the aligned 178x218 JPEGs
    list_attr_celeba.txt              40 attributes per image, 1 / -1
    list_eval_partition.txt           0 train, 1 val, 2 test

Only these three are needed (torchvision's own class also wants the identity, bounding-box
and landmark files and checks their MD5s, so hand-placed copies often fail it); they are read
directly. Images are centre-cropped and resized to ``size`` (64 by default) and held as one
tensor, so pass ``n`` to decode only what a lesson needs. A download goes through
``torchvision.datasets.CelebA(download=True)``, which fetches from Google Drive: when Drive
answers with its quota page instead of a file, the error says so and explains the manual route.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .data import REPO_DATA, DataNotFoundError, ImageData, network_available

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
# the 18 attributes CCVAE (Joy et al., ICLR 2021) models on CelebA
CELEBA_CCVAE_ATTRIBUTES: tuple[str, ...] = (
    "Arched_Eyebrows", "Bags_Under_Eyes", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Eyeglasses", "Heavy_Makeup", "Male", "No_Beard", "Pale_Skin", "Receding_Hairline", "Smiling",
    "Wavy_Hair", "Wearing_Necktie", "Young",
)
# derived labels: IntroVAC's facial hair is a beard, a goatee or a moustache
DERIVED = {"facial_hair": "not No_Beard, or Goatee, or Mustache", "glasses": "Eyeglasses"}
SUBSETS: dict[str, tuple[str, ...]] = {"eye": ("Eyeglasses",), "facial": ("facial_hair",),
                                       "eyefacial": ("Eyeglasses", "facial_hair")}
REQUIRED = ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
SPLITS = {"train": 0, "val": 1, "valid": 1, "test": 2}
ORIGINAL = (178, 218)  # width, height of the aligned images
DEFAULT_CROP = 148  # centre square kept before resizing (the face without most of the background)

MANUAL = (
    "Place CelebA by hand: from the CelebA page (mmlab.ie.cuhk.edu.hk/projects/CelebA.html, 'Align&Cropped "
    "Images' and 'Anno' / 'Eval' folders on its Google Drive or Baidu mirror) download img_align_celeba.zip, "
    "list_attr_celeba.txt and list_eval_partition.txt, then unzip so that you have\n"
    "    {root}/celeba/img_align_celeba/000001.jpg ...\n"
    "    {root}/celeba/list_attr_celeba.txt\n"
    "    {root}/celeba/list_eval_partition.txt\n"
    "(or pass root= / set VAECOURSE_DATA to a folder with that layout). Offline, use the procedural faces "
    "instead: load_dataset('faces', subset='eye' | 'facial' | 'eyefacial')."
)


class CelebAQuotaError(DataNotFoundError):
    """Google Drive answered with its 'quota exceeded' / warning page instead of the CelebA file."""


def _candidates(root: str | Path | None) -> list[Path]:
    bases = [b for b in (root, os.environ.get("VAECOURSE_DATA"), REPO_DATA) if b]
    out: list[Path] = []
    for base in bases:
        base = Path(base).expanduser()
        out += [base / "celeba", base]
    return out


def _missing(folder: Path) -> list[str]:
    return [name for name in REQUIRED if not (folder / name).exists()]


def find_celeba(root: str | Path | None = None) -> Path | None:
    """The first folder holding all CelebA files; a folder holding only some raises, naming what is missing."""
    for folder in _candidates(root):
        if not folder.is_dir():
            continue
        missing = _missing(folder)
        if not missing:
            return folder
        if len(missing) < len(REQUIRED):
            _raise_if_quota_page(folder)
            present = [n for n in REQUIRED if n not in missing]
            raise DataNotFoundError(
                f"CelebA is only partly present in {folder}: found {', '.join(present)} but not "
                f"{', '.join(missing)}.\n" + MANUAL.format(root=folder.parent))
    return None


def is_quota_page(path: Path) -> bool:
    """True when ``path`` is an HTML page from Google Drive (quota exceeded / virus-scan warning), not data."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    text = head.decode("utf-8", errors="ignore").lower()
    is_html = text.lstrip().startswith(("<!doctype html", "<html")) or "<html" in text[:2048]
    return is_html and ("google drive" in text or "quota" in text or "drive.google" in text)


def _raise_if_quota_page(folder: Path) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in (".zip", ".txt", "") and is_quota_page(path):
            raise CelebAQuotaError(
                f"{path} is a Google Drive web page, not the CelebA file: Drive's download quota for CelebA "
                "is exhausted (a known, frequent problem of torchvision's CelebA download). Delete it, try "
                "again in a day, or place the files by hand.\n" + MANUAL.format(root=folder.parent))


def _read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, (N, 40) int8 in {0, 1}) from list_attr_celeba.txt."""
    with open(path) as fh:
        lines = fh.read().splitlines()
    names = lines[1].split()
    files, rows = [], []
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise ValueError(f"{path}: line {line[:40]!r}... has {len(parts) - 1} values, expected {len(names)}")
        files.append(parts[0])
        rows.append(parts[1:])
    values = (np.asarray(rows, dtype=np.int8) > 0).astype(np.int8)
    return files, names, values


def _read_partition(path: Path) -> dict[str, int]:
    with open(path) as fh:
        return {p[0]: int(p[1]) for p in (line.split() for line in fh) if len(p) >= 2}


def attribute_columns(attributes: Sequence[str], table: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Columns for ``attributes`` (CelebA names or the derived 'facial_hair' / 'glasses'), as (N, A) float32."""
    index = {n: i for i, n in enumerate(names)}
    cols = []
    for name in attributes:
        if name == "facial_hair":
            beard = (1 - table[:, index["No_Beard"]]) | table[:, index["Goatee"]] | table[:, index["Mustache"]]
            cols.append(beard)
        elif name == "glasses":
            cols.append(table[:, index["Eyeglasses"]])
        elif name in index:
            cols.append(table[:, index[name]])
        else:
            raise ValueError(f"unknown CelebA attribute {name!r}; use one of the 40 CelebA names "
                             f"(e.g. Eyeglasses, Smiling, Male) or a derived one: {', '.join(DERIVED)}")
    return np.stack(cols, 1).astype(np.float32) if cols else np.zeros((len(table), 0), np.float32)


def _decode(path: Path, size: int, crop: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        c = min(crop, w, h)
        left, top = (w - c) // 2, (h - c) // 2
        im = im.crop((left, top, left + c, top + c)).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        return np.asarray(im, dtype=np.uint8)


def _download(root: Path) -> None:
    import torchvision

    target = root / "celeba"
    try:
        torchvision.datasets.CelebA(str(root), split="all", target_type="attr", download=True)
    except Exception as err:
        _raise_if_quota_page(target)
        text = str(err).lower()
        if "quota" in text or "too many users" in text or "cannot retrieve the public link" in text:
            raise CelebAQuotaError(f"Google Drive refused the CelebA download ({err}).\n"
                                   + MANUAL.format(root=root)) from err
        raise DataNotFoundError(f"the CelebA download failed ({type(err).__name__}: {err}).\n"
                                + MANUAL.format(root=root)) from err
    _raise_if_quota_page(target)


def _celeba_folder(root: str | Path | None, download: bool | None) -> Path:
    """The folder holding CelebA (downloaded into ``root`` or the data folder when allowed), or a clear error."""
    folder = find_celeba(root)
    if folder is None:
        want = network_available() if download is None else download
        target = Path(root).expanduser() if root else REPO_DATA
        if want:
            _download(target)
            folder = find_celeba(target)
        if folder is None:
            looked = "; ".join(str(p) for p in _candidates(root))
            raise DataNotFoundError(f"CelebA was not found (looked in {looked}) and could not be downloaded "
                                    f"{'(offline)' if not want else ''}.\n" + MANUAL.format(root=target))
    return folder


def _chosen_rows(labels: np.ndarray, n: int | None, neg_pos_ratio: float | None, seed: int) -> np.ndarray:
    """Which rows of the split to decode: all, the first ``n``, or (with ``neg_pos_ratio``) images with any of
    the labels and ``neg_pos_ratio`` times as many without, shuffled with ``seed``."""
    order = np.arange(len(labels))
    if neg_pos_ratio is not None:
        pos = np.flatnonzero(labels.max(1) > 0.5)
        neg = np.flatnonzero(labels.max(1) <= 0.5)
        n_pos = len(pos) if n is None else min(len(pos), int(round(n / (1 + neg_pos_ratio))))
        n_neg = min(len(neg), int(round(n_pos * neg_pos_ratio)))
        rng = np.random.default_rng(seed)
        order = rng.permutation(np.concatenate([pos[:n_pos], neg[:n_neg]]))
    return order if n is None else order[:n]


def load_celeba(split: str = "train", root: str | Path | None = None, size: int = 64,
                attributes: Sequence[str] | None = None, subset: str | None = None, n: int | None = None,
                neg_pos_ratio: float | None = None, crop: int = DEFAULT_CROP, download: bool | None = None,
                seed: int = 0) -> ImageData:
    """CelebA's official ``split`` as tensors: centre crop ``crop`` px, resized to ``size``, labels = ``attributes``.

    ``attributes`` defaults to CCVAE's 18; ``subset`` picks IntroVAC's ``eye`` / ``facial`` /
    ``eyefacial`` labels, and ``neg_pos_ratio=2`` keeps two images without them per image with
    them. ``n`` decodes only that many images (decoding all 162,770 training JPEGs takes minutes).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train', 'val' or 'test'")
    if not 8 <= int(size) <= 218:
        raise ValueError(f"size must be between 8 and 218 pixels (the lessons use 64), got {size}")
    if subset is not None:
        if subset not in SUBSETS:
            raise ValueError(f"unknown CelebA subset {subset!r}; choose one of {', '.join(SUBSETS)}")
        attributes = SUBSETS[subset]
    attributes = list(CELEBA_CCVAE_ATTRIBUTES if attributes is None else attributes)
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if neg_pos_ratio is not None and not neg_pos_ratio > 0:
        raise ValueError(f"neg_pos_ratio must be > 0 (IntroVAC uses 2), got {neg_pos_ratio}")
    folder = _celeba_folder(root, download)
    files, names, table = _read_attributes(folder / "list_attr_celeba.txt")
    attribute_columns(attributes, table[:1], names)  # unknown names fail before any decoding
    partition = _read_partition(folder / "list_eval_partition.txt")
    part = SPLITS[split]
    keep = np.array([partition.get(f, -1) == part for f in files])
    files = [f for f, k in zip(files, keep) if k]
    labels = attribute_columns(attributes, table[keep], names)
    order = _chosen_rows(labels, n, neg_pos_ratio, seed)
    img_dir = folder / "img_align_celeba"
    absent = [files[i] for i in order if not (img_dir / files[i]).is_file()]
    if absent:
        raise DataNotFoundError(f"{len(absent)} CelebA images listed for the {split} split are missing from "
                                f"{img_dir} (e.g. {', '.join(absent[:3])}); the folder is incomplete - unzip "
                                "img_align_celeba.zip again.\n" + MANUAL.format(root=folder.parent))
    pixels = np.stack([_decode(img_dir / files[i], int(size), crop) for i in order]) if len(order) else \
        np.zeros((0, size, size, 3), np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    subset_flag = n is not None or neg_pos_ratio is not None
    name = f"celeba-{subset}" if subset else "celeba"
    return ImageData(images, torch.from_numpy(labels[order]), name, split,
                     f"CelebA files in {folder} (centre crop {crop}px -> {size}px)", subset=subset_flag,
                     classes=attributes)
