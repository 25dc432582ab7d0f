"""The trainer benchmark runs end to end on a tiny data set it writes itself (not a timed test)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import bench_trainer as bm


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """Write a uint8 array as an IDX file (MNIST's format), gzipped when asked."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def fake_source(tmp_path: Path) -> Path:
    """A folder with the four Fashion-MNIST IDX files (gzipped, as Debian ships them), 300/50 random images."""
    rng = np.random.default_rng(0)
    src = tmp_path / "source"
    src.mkdir()
    for (img, lab), n in ((bm.IDX_FILES["train"], 300), (bm.IDX_FILES["test"], 50)):
        write_idx(src / img, rng.integers(0, 256, (n, 28, 28)), gz=True)
        write_idx(src / lab, rng.integers(0, 10, (n,)), gz=True)
    return src


def test_prepare_root_decompresses_for_torchvision(tmp_path: Path, fake_source: Path) -> None:
    from torchvision import datasets

    root = bm.prepare_torchvision_root(tmp_path / "root", [fake_source])
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(bm.RAW_NAMES)
    ds = datasets.FashionMNIST(str(root), train=True, download=False)
    assert len(ds) == 300
    with gzip.open(fake_source / "train-images-idx3-ubyte.gz", "rb") as fh:
        first = np.frombuffer(fh.read(), np.uint8, offset=16)[:784].reshape(28, 28)
    assert np.array_equal(ds.data[0].numpy(), first)
    # a second call finds the files and leaves them alone
    stamp = (raw / bm.RAW_NAMES[0]).stat().st_mtime_ns
    bm.prepare_torchvision_root(root, [tmp_path / "nowhere"])
    assert (raw / bm.RAW_NAMES[0]).stat().st_mtime_ns == stamp


def test_prepare_root_without_data_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        bm.prepare_torchvision_root(tmp_path / "root", [tmp_path / "empty"])


def test_example_loss_is_bce_plus_closed_form_kl() -> None:
    torch.manual_seed(0)
    model = bm.ExampleVAE()
    x = torch.rand(4, 1, 28, 28)
    terms = bm.example_loss(model, x)
    assert torch.allclose(terms["loss"], terms["bce"] + terms["kl"])
    # BCE of logits 0 is log 2 per pixel: a zeroed output layer must give exactly that
    with torch.no_grad():
        model.dec_out.weight.zero_()
        model.dec_out.bias.zero_()
        assert math.isclose(float(bm.example_loss(model, x)["bce"]), 784 * math.log(2), rel_tol=1e-5)


def test_benchmark_runs_both_ways_and_prints_a_table(tmp_path: Path, fake_source: Path, capsys) -> None:
    result = bm.main(["--data", str(tmp_path / "root"), "--source", str(fake_source), "--limit", "256",
                      "--device", "cpu"])
    out = capsys.readouterr().out
    print(out)  # the figures, for whoever runs pytest -s
    assert set(result["best"]) == {"dataloader", "vaecourse", "floor"}
    for run in result["best"].values():
        assert run.images == 256
        assert run.epoch_s > 0
        # one epoch on uniform noise: BCE near 784·E[H] ≈ 784·0.5 nats, nowhere near 0 or NaN
        assert 300 < run.loss < 800
    assert result["speedup"] > 0 and result["max_speedup"] > 0
    assert "DataLoader" in out and "vaecourse.fit" in out and "floor" in out and "speed-up" in out


def test_limit_below_a_batch_is_refused(tmp_path: Path, fake_source: Path) -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        bm.benchmark(tmp_path / "root", sources=[fake_source], limit=10)
