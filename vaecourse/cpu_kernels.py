"""Which of ATen's CPU kernel sets torch runs: the AVX2 set, also on machines with AVX-512.

torch compiles its element-wise CPU kernels several times (plain, AVX2, AVX-512) and picks one set
the first time a kernel runs, from the environment variable ``ATEN_CPU_CAPABILITY`` or else from the
processor. In the torch this course pins, the AVX-512 set computes ``expm1`` and ``log1p`` about as
slowly as the unvectorised set does (expm1 on 128 × 512 floats, two threads: 412, unvectorised 451,
AVX2 57 µs), so ELU (every MLP of the course), softplus and log-sigmoid (the Bernoulli likelihood)
run 4-6x slower there than with the AVX2 set (ELU 423 against 67 µs, log-sigmoid 428 against 96 µs;
``python -m benchmarks.bench_cpu_kernels``, 2026-12-03).
A training step of the course's MLP VAE (512-256 layers, batch 128) takes 8.9 instead of 11.1 ms; an
epoch of lesson 05's MNIST CCVAE 10.3 instead of 11.8 s (medians of eight back-to-back pairs, AVX2
faster in seven: the host's speed drifts by more than that within the hour). When torch is upgraded,
run the benchmark again: a torch whose AVX-512 set vectorises these functions makes this choice moot.

Both sets compute these functions alike: on 10^5 numbers ELU, softplus, log-sigmoid, exp, sigmoid,
leaky ReLU and binary cross-entropy, values and gradients, agree to the bit but for a few elements at
the ends of each thread's share, which differ by one unit in the last place (tests/test_cpu_kernels.py);
softmax and log-softmax differ in the last bits more often. A training run therefore repeats exactly
under one set and drifts in the last digits under the other (lesson 05's MNIST numbers moved by at
most 0.4 points). With the AVX2 set an AVX-512 machine runs the element-wise kernels an AVX2-only
laptop runs (matrix products and convolutions still go through MKL and oneDNN, which pick their own
instructions).

The choice is made when this module is imported (``vaecourse`` imports it first), before torch's
first kernel, and only where it is free to make: a processor with AVX-512 and AVX2, and no
``ATEN_CPU_CAPABILITY`` set by the user (set it, e.g. to ``avx512``, to keep torch's own choice).
Once torch has run a CPU kernel its choice is fixed for the process; ``kernel_set()`` says which one
runs, and each lesson records it in its results (``machine.cpu_kernels``).
"""

from __future__ import annotations

import os

import torch

CAPABILITY_VARIABLE = "ATEN_CPU_CAPABILITY"
PREFERRED = "avx2"


def cpu_has(name: str) -> bool:
    """Whether the processor has ``name`` ("avx2" or "avx512"), asked without fixing torch's kernel set."""
    probe = getattr(getattr(torch, "cpu", None), f"_is_{name}_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # an unusual build: make no choice rather than a wrong one
        return False


def prefer_avx2_kernels() -> bool:
    """Ask torch for its AVX2 kernels on an AVX-512 processor unless the user chose; True when asked.

    Effective only before torch runs its first CPU kernel in this process (``vaecourse`` calls it on import).
    """
    if CAPABILITY_VARIABLE in os.environ:
        return False
    if not (cpu_has("avx512") and cpu_has("avx2")):  # only ever a step down, never to a set the CPU lacks
        return False
    os.environ[CAPABILITY_VARIABLE] = PREFERRED
    return True


def kernel_set() -> str:
    """The kernel set torch runs in this process ("AVX2", "AVX512", "DEFAULT", ...); asking fixes it."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return "unknown"


prefer_avx2_kernels()  # on import: later the kernel set may already be fixed
