"""Shared test setup: CPU, the smoke profile, no network probes, results in a temp folder."""

import os

os.environ.setdefault("VAECOURSE_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("VAECOURSE_PROGRESS", "0")

# One torch thread per test process unless told otherwise: CI runs two pytest workers on two cores,
# and busy-waiting OpenMP threads that outnumber the cores slow torch down many times over.
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("VAECOURSE_THREADS", "1")))
