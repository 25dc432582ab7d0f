"""How much faster is the course's trainer than the usual DataLoader pattern? ``python -m benchmarks.bench_trainer``.

It trains the same small VAE (the pytorch/examples model: 784-400-20, ReLU, Bernoulli decoder
with binary cross-entropy, batch 128, Adam 1e-3) for one epoch on the same Fashion-MNIST
files, twice:

* ``dataloader``: a torchvision dataset with ``ToTensor`` and a shuffling ``DataLoader`` (every
  image goes PIL → tensor → collate in Python, every batch);
* ``vaecourse``: the whole split as one tensor on the device, batched by index slicing in
  :func:`vaecourse.fit`.

It prints seconds per epoch of each and their ratio, and a third row, the floor: the same optimiser
steps on batches cut beforehand with no bookkeeping, which bounds what any trainer can gain.

torchvision wants the decompressed IDX files under ``ROOT/FashionMNIST/raw/``; the benchmark writes
them there from any copy it finds (Debian's ``.gz`` files in ``/usr/share/datasets/fashion-mnist``,
or ``--source``).

On a shared, busy CPU run it with ``OMP_WAIT_POLICY=PASSIVE`` (or ``VAECOURSE_THREADS=1``): torch's
OpenMP threads otherwise spin while they wait for each other, and a 2-thread epoch took 20x longer
here when other jobs held the cores. The variable must be set before Python starts.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vaecourse.config import pick_device, seed_everything, set_cpu_threads
from vaecourse.data import IDX_FILES, SYSTEM_DIRS, _idx_pair, load_dataset
from vaecourse.losses import bernoulli_nll, gaussian_kl

BATCH_SIZE = 128
LR = 1e-3
RAW_NAMES = [name for split in ("train", "test") for name in IDX_FILES[split]]


class ExampleVAE(nn.Module):
    """The pytorch/examples VAE's shape: 784 → 400 → (μ, log σ²) of 20, and 20 → 400 → 784 logits (ReLU)."""

    def __init__(self, pixels: int = 784, hidden: int = 400, latent_dim: int = 20):
        super().__init__()
        self.enc = nn.Linear(pixels, hidden)
        self.enc_mu = nn.Linear(hidden, latent_dim)
        self.enc_logvar = nn.Linear(hidden, latent_dim)
        self.dec = nn.Linear(latent_dim, hidden)
        self.dec_out = nn.Linear(hidden, pixels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits of the reconstruction, μ, log σ²) for a batch of images (any shape N×…)."""
        h = F.relu(self.enc(x.flatten(1)))
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.dec_out(F.relu(self.dec(z))), mu, logvar


def example_loss(model: ExampleVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image negative ELBO in nats: binary cross-entropy summed over pixels + KL(q(z|x) ‖ N(0, I))."""
    logits, mu, logvar = model(x)
    bce = bernoulli_nll(x.flatten(1), logits)
    kl = gaussian_kl(mu, logvar)
    return {"loss": (bce + kl).mean(), "bce": bce.mean(), "kl": kl.mean()}


# ----------------------------------------------------------------------------- data for torchvision
def default_cache() -> Path:
    """Where the decompressed files go by default: ``$XDG_CACHE_HOME/vaecourse/torchvision`` (or the temp dir)."""
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache" if Path.home().is_dir() else None)
    return Path(base or tempfile.gettempdir()) / "vaecourse" / "torchvision"


def prepare_torchvision_root(root: str | Path, sources: Sequence[str | Path] = ()) -> Path:
    """Make ``root/FashionMNIST/raw/`` hold the four decompressed IDX files torchvision reads; return ``root``.

    Files already there are kept; missing ones are decompressed (or copied) from the first of
    ``sources`` (default: Debian's ``/usr/share/datasets/fashion-mnist``) that has them all.
    """
    root = Path(root)
    raw = root / "FashionMNIST" / "raw"
    if all((raw / n).is_file() for n in RAW_NAMES):
        return root
    folders = [Path(s) for s in sources] or SYSTEM_DIRS["fashion_mnist"]
    for folder in folders:
        if all(_idx_pair(folder, split) for split in ("train", "test")):
            raw.mkdir(parents=True, exist_ok=True)
            for name in RAW_NAMES:
                target = raw / name
                if target.is_file():
                    continue
                src = folder / name if (folder / name).is_file() else folder / f"{name}.gz"
                opener = gzip.open if src.suffix == ".gz" else open
                fd, tmp = tempfile.mkstemp(prefix=name, dir=raw)
                with opener(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.replace(tmp, target)
            return root
    raise FileNotFoundError(
        f"no Fashion-MNIST IDX files found in {', '.join(map(str, folders))} (and none in {raw}). "
        "Install Debian's copy (sudo apt-get install dataset-fashion-mnist), pass --source FOLDER with the "
        "four train/t10k IDX files (.gz or not), or put them decompressed in ROOT/FashionMNIST/raw/ "
        "and pass --data ROOT.")


# ----------------------------------------------------------------------------- the two ways to train
@dataclass
class Run:
    """One timed epoch: how long loading took, the epoch itself, and the mean loss per image."""

    name: str
    load_s: float
    epoch_s: float
    loss: float
    images: int


def _warm_up(model: nn.Module, x: torch.Tensor, steps: int = 3) -> None:
    """A few steps on a throwaway copy, so one-time library start-up costs land in neither timing."""
    scratch = ExampleVAE().to(x.device)
    scratch.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(scratch.parameters(), lr=LR)
    for _ in range(steps):
        opt.zero_grad()
        example_loss(scratch, x)["loss"].backward()
        opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_dataloader(root: Path, device: torch.device, limit: int | None, seed: int) -> Run:
    """One epoch the pytorch/examples way: torchvision dataset + ToTensor + DataLoader, a loss.item() per step."""
    from torchvision import datasets, transforms

    t0 = time.perf_counter()
    dataset = datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), **kwargs)
    load_s = time.perf_counter() - t0
    seed_everything(seed)
    model = ExampleVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    _warm_up(model, torch.stack([dataset[i][0] for i in range(BATCH_SIZE)]).to(device))
    _sync(device)
    t0 = time.perf_counter()
    model.train()
    total = 0.0
    for data, _ in loader:
        data = data.to(device)
        optimizer.zero_grad()
        loss = example_loss(model, data)["loss"]
        loss.backward()
        total += loss.item() * data.shape[0]
        optimizer.step()
    _sync(device)
    return Run("dataloader", load_s, time.perf_counter() - t0, total / len(dataset), len(dataset))


def run_vaecourse(root: Path, device: torch.device, limit: int | None, seed: int) -> Run:
    """One epoch with the course's trainer: the split as one device tensor, batches by index slicing."""
    from vaecourse.train import fit

    t0 = time.perf_counter()
    data = load_dataset("fashion_mnist", "train", root=root, limit=limit, device=device, verbose=False)
    _sync(device)
    load_s = time.perf_counter() - t0
    seed_everything(seed)
    model = ExampleVAE().to(device)
    _warm_up(model, data.images[:BATCH_SIZE])
    _sync(device)
    t0 = time.perf_counter()
    history = fit(model, lambda m, batch: example_loss(m, batch[0]), [data.images], epochs=1,
                  batch_size=BATCH_SIZE, lr=LR, seed=seed, progress=False)
    _sync(device)
    return Run("vaecourse", load_s, time.perf_counter() - t0, history.last("loss"), len(data))


def run_floor(root: Path, device: torch.device, limit: int | None, seed: int) -> Run:
    """The floor for any trainer: the same optimiser steps on batches cut beforehand, no bookkeeping at all."""
    data = load_dataset("fashion_mnist", "train", root=root, limit=limit, device=device, verbose=False)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).to(device)
    batches = list(data.images[order].split(BATCH_SIZE))
    seed_everything(seed)
    model = ExampleVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    _warm_up(model, batches[0])
    _sync(device)
    t0 = time.perf_counter()
    losses = []
    for x in batches:
        optimizer.zero_grad()
        loss = example_loss(model, x)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    _sync(device)
    seconds = time.perf_counter() - t0
    return Run("floor", 0.0, seconds, float(torch.stack(losses).mean()), len(data))


RUNNERS: dict[str, Callable[[Path, torch.device, int | None, int], Run]] = {
    "dataloader": run_dataloader, "vaecourse": run_vaecourse, "floor": run_floor}


def benchmark(root: str | Path | None = None, *, device: str | torch.device | None = None, limit: int | None = None,
              repeats: int = 1, seed: int = 0, sources: Sequence[str | Path] = ()) -> dict:
    """Time one epoch of each way ``repeats`` times (alternating) and return the best of each and the ratios."""
    if limit is not None and limit < BATCH_SIZE:
        raise ValueError(f"--limit must be at least one batch ({BATCH_SIZE} images), got {limit}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    dev = pick_device(str(device) if device is not None else None)
    threads = set_cpu_threads() if dev.type == "cpu" else torch.get_num_threads()
    root = prepare_torchvision_root(root or default_cache(), sources)
    runs: dict[str, list[Run]] = {name: [] for name in RUNNERS}
    for _ in range(repeats):
        for name, runner in RUNNERS.items():
            runs[name].append(runner(root, dev, limit, seed))
    best = {name: min(rs, key=lambda r: r.epoch_s) for name, rs in runs.items()}
    return {"device": str(dev), "threads": threads, "root": str(root), "repeats": repeats,
            "images": best["vaecourse"].images, "runs": runs, "best": best,
            "speedup": best["dataloader"].epoch_s / best["vaecourse"].epoch_s,
            "max_speedup": best["dataloader"].epoch_s / best["floor"].epoch_s}


def format_table(result: dict) -> str:
    """The result as a plain-text table: one row per way to train, then the ratio."""
    lines = [f"One epoch of the pytorch/examples VAE (784-400-20, BCE, batch {BATCH_SIZE}, Adam {LR:g}) on "
             f"{result['images']} Fashion-MNIST images, device {result['device']}, {result['threads']} CPU thread(s), "
             f"best of {result['repeats']}",
             f"{'setup':<58} {'load s':>7} {'s / epoch':>10} {'all runs (s)':>20} {'loss / image (nats)':>20}"]
    labels = {"dataloader": "torchvision dataset + ToTensor + DataLoader (the example)",
              "vaecourse": "vaecourse.fit on one tensor, index slicing",
              "floor": "floor: the optimiser steps alone on pre-cut batches"}
    for name, run in result["best"].items():
        every = ", ".join(f"{r.epoch_s:.2f}" for r in result["runs"][name])
        lines.append(f"{labels[name]:<58} {run.load_s:>7.2f} {run.epoch_s:>10.2f} {every:>20} {run.loss:>20.1f}")
    lines.append(f"speed-up (DataLoader s / vaecourse s): {result['speedup']:.2f}x; the most any trainer could "
                 f"reach with this model here (DataLoader s / floor s): {result['max_speedup']:.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: parse options, run the benchmark, print the table; returns the result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None,
                        help=f"torchvision root: files go to DATA/FashionMNIST/raw/ (default {default_cache()})")
    parser.add_argument("--source", action="append", default=[],
                        help="folder with the four Fashion-MNIST IDX files (.gz or not) to copy from "
                             "(default /usr/share/datasets/fashion-mnist); repeatable")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (a quick run)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps... (default: the course's pick)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each way this many times, alternating; keep the best")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = benchmark(args.data, device=args.device, limit=args.limit, repeats=args.repeats, seed=args.seed,
                       sources=args.source)
    print(format_table(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
