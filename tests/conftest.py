"""Shared test setup: CPU, the smoke profile, no network probes, results in a temp folder."""

import os

os.environ.setdefault("VAECOURSE_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("VAECOURSE_PROGRESS", "0")
