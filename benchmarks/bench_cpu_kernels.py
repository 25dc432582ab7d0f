"""How fast are torch's element-wise CPU kernels under each kernel set? ``python -m benchmarks.bench_cpu_kernels``.

For each set the processor has (``default``, ``avx2``, ``avx512``) a fresh interpreter is started
with ``ATEN_CPU_CAPABILITY`` set (torch fixes its set at the first kernel, so one process cannot
compare them) and times, on a 128 × 512 batch: ELU, expm1, exp, log-sigmoid and softplus, then one
training step of the course's MLP VAE on 784-pixel images (512-256 layers, ELU, Bernoulli decoder,
batch 128, Adam). It prints microseconds per call and milliseconds per step, one row per set.

``vaecourse.cpu_kernels`` explains why the course asks for the AVX2 set on AVX-512 processors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from vaecourse.cpu_kernels import cpu_has

SETS = ("default", "avx2", "avx512")
OPS = ("elu", "expm1", "exp", "logsigmoid", "softplus")

# Runs in the child interpreter: prints one JSON object of timings.
CHILD = r"""
import json, sys, time
import torch, torch.nn.functional as F
from torch import nn
threads, repeats, steps = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.randn(128, 512)
ops = {"elu": F.elu, "expm1": torch.expm1, "exp": torch.exp, "logsigmoid": F.logsigmoid, "softplus": F.softplus}
out = {"set": str(torch.backends.cpu.get_cpu_capability())}

def per_call(f, n):
    for _ in range(max(1, n // 10)):
        f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n

for name, op in ops.items():
    out[name + "_us"] = 1e6 * per_call(lambda: op(x), repeats)

from vaecourse.nets import MLPDecoder, MLPEncoder
from vaecourse.losses import bernoulli_nll, gaussian_kl, reparameterize
enc, dec = MLPEncoder((1, 28, 28), 32, (512, 256)), MLPDecoder((1, 28, 28), 32, (256, 512), logits=True)
opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
images = torch.rand(128, 1, 28, 28).round()

def step():
    mu, logvar = enc(images)
    loss = (bernoulli_nll(images, dec(reparameterize(mu, logvar))) + gaussian_kl(mu, logvar)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()

out["vae_step_ms"] = 1e3 * per_call(step, steps)
print(json.dumps(out))
"""


def available_sets() -> list[str]:
    """The kernel sets this processor can run (``default`` always)."""
    have = [s for s in SETS[1:] if cpu_has(s)]
    return ["default", *have]


def measure(kernel_set: str, threads: int, repeats: int, steps: int) -> dict:
    """Timings from a fresh interpreter that runs torch's ``kernel_set``."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": kernel_set}
    done = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(repeats), str(steps)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2: the course's CPU machines)")
    parser.add_argument("--repeats", type=int, default=2000, help="calls timed per element-wise op")
    parser.add_argument("--steps", type=int, default=100, help="VAE training steps timed")
    args = parser.parse_args(argv)
    rows = [measure(s, args.threads, args.repeats, args.steps) for s in available_sets()]
    print(f"torch {torch.__version__}, {args.threads} threads; element-wise ops on 128 × 512 floats (µs per call), "
          f"one MLP VAE step at batch 128 (ms)")
    print(f"{'kernel set':>10} | " + " | ".join(f"{op:>10}" for op in OPS) + f" | {'VAE step':>8}")
    for r in rows:
        cells = " | ".join(f"{r[op + '_us']:>10.1f}" for op in OPS)
        print(f"{r['set']:>10} | {cells} | {r['vae_step_ms']:>8.2f}")
    return rows


if __name__ == "__main__":
    main()
