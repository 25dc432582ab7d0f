"""How long each lesson's live widget takes to redraw after a control moves (target: under 100 ms).

Run: ``python -m benchmarks.bench_widgets [--repeats 7] [--threads 1]``. Every widget of the course
(``tools.widget_gallery``: each lesson's own builder on an untrained model of the lesson's
sizes, which decodes as fast as the trained one) has each of its moves made ``repeats`` times
there and back; the median decode milliseconds (render + PNG encoding, as the widget's status
line reports them) are printed per move, and the slowest against the target. A reference decoder
(an MLP 2-400-784 behind ``latent_sliders``, the course's smallest image VAE) is timed the same way.
The browser test reports the same kernel figures plus the round trip a browser sees.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from tools.widget_gallery import GALLERY, status_text, time_moves
from vaecourse.widgets import latent_sliders

TARGET_MS = 100.0


def reference_decode_ms(moves: int = 20) -> float:
    """Median decode milliseconds of one slider of an MLP decoder (2-400-784, 28×28) over ``moves`` moves."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 400), torch.nn.ReLU(), torch.nn.Linear(400, 784), torch.nn.Sigmoid())
    w = latent_sliders(lambda z: net(z).view(-1, 1, 28, 28), 2)
    times = []
    for v in np.linspace(-2, 2, moves):
        w.set(z0=float(v))
        times.append(w.last_decode_ms)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed moves per control (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a kernel on a laptop: 1-4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'lesson':<18}{'widget':<38}{'move':<28}{'decode ms (median)':>20}")
    slowest = 0.0
    torch.manual_seed(0)
    for build in GALLERY:
        t0 = time.perf_counter()
        items = build()
        built = time.perf_counter() - t0
        for item in items:
            for move, ms in zip(item.moves, time_moves(item, args.repeats)):
                slowest = max(slowest, ms)
                print(f"{item.lesson:<18}{item.name:<38}{status_text(item, move):<28}{ms:>20.1f}")
        print(f"{'':<18}(built in {built:.1f} s)")
    ms = reference_decode_ms()
    slowest = max(slowest, ms)
    print(f"{'reference':<18}{'MLP 2-400-784 latent sliders':<38}{'z0 over [-2, 2]':<28}{ms:>20.1f}")
    verdict = "met" if slowest < TARGET_MS else "NOT met"
    print(f"slowest decode: {slowest:.1f} ms; target < {TARGET_MS:.0f} ms {verdict}")
    return 0 if slowest < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
