"""How long each lesson's live widget takes to redraw after a control moves (target: under 100 ms).

Run: ``python benchmarks/bench_widgets.py [--repeats 7] [--threads 1]``. Every widget of the course
(``vaecourse.widget_gallery``: each lesson's own builder on an untrained model of the lesson's
sizes, which decodes as fast as the trained one) has each of its moves made ``repeats`` times
there and back; the median decode milliseconds (render + PNG encoding, as the widget's status
line reports them) are printed per move, and the slowest against the target. The browser test
reports the same kernel figures plus the round trip a browser sees.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from vaecourse.widget_gallery import GALLERY, status_text, time_moves

TARGET_MS = 100.0


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
    verdict = "met" if slowest < TARGET_MS else "NOT met"
    print(f"slowest decode: {slowest:.1f} ms; target < {TARGET_MS:.0f} ms {verdict}")
    return 0 if slowest < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
