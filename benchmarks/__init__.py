"""Benchmarks that print their figures (``python -m benchmarks.bench_…``); never timed tests."""
