"""How fast the procedural faces are drawn: images/s at 32 and 64 pixels, and 60k images at 64x64.

Run: ``python -m benchmarks.bench_faces [--n 20000] [--full]``. The target is at least 5,000
images/s at 64x64 on a 2-core CPU. Wall-clock rates depend on what else the machine runs, so
the CPU seconds are printed too (images per CPU-second x cores is the rate of an idle machine).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from vaecourse.faces import FaceConfig, render_faces, sample_split


def rate(n: int, size: int, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` (images/s wall, images per CPU-second) for drawing ``n`` faces at ``size``."""
    attrs, factors = sample_split(FaceConfig(size=size), "train", n)
    render_faces(attrs[:256], factors[:256], size)  # warm-up
    best_wall, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        render_faces(attrs, factors, size)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        best_wall, best_cpu = max(best_wall, n / wall), max(best_cpu, n / max(cpu, 1e-9))
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10000, help="images per timing")
    parser.add_argument("--full", action="store_true", help="also time 60,000 images at 64x64 end to end")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for size in (32, 64):
        wall, cpu = rate(args.n, size)
        print(f"{size}x{size}: {wall:,.0f} images/s (wall), {cpu:,.0f} images per CPU-second")
    if args.full:
        t = time.perf_counter()
        attrs, factors = sample_split(FaceConfig(size=64), "train", 60000)
        images = render_faces(attrs, factors, 64)
        dt = time.perf_counter() - t
        print(f"60,000 faces at 64x64 (sampling + drawing): {dt:.1f} s, {images.numel() * 4 / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
