"""Maintainer tools, kept outside the installed package: the reproduction table (``python -m tools.reproduction``)
and the gallery of every lesson's widget that the browser test and ``python -m benchmarks.bench_widgets`` drive."""
