"""Training speed of the face VAE backbone (lessons 05–07) on this machine: steps/s per variant.

Run: ``python -m benchmarks.bench_face_vae [--threads 2] [--steps 60] [--size 32]``. It times Adam
steps of ``FaceVAE`` (batch 64, the lessons' setting) as written (its convolutions run channels-last:
``face_vae.CONV_LAYOUT``), with the usual contiguous (N, C, H, W) layout instead, and with
``torch.compile``, and prints steps/s and CPU-seconds per step for each, so a change of net or of
memory format can be judged here, not in a timed test. The `cpu` profiles' budget is one
backbone in at most 4 minutes on 2 cores (about 4,000 steps).
"""

from __future__ import annotations

import argparse
import time

import torch

from vaecourse import face_vae
from vaecourse.face_vae import FaceVAE


def steps_per_second(model: torch.nn.Module, x: torch.Tensor, steps: int, warmup: int = 5) -> tuple[float, float]:
    """(steps/s wall, CPU-seconds per step) of ``steps`` Adam steps on batch ``x``, after ``warmup`` steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def one() -> None:
        loss = model.terms(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        one()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return steps / wall, cpu / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (slow to build)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(64, 3, args.size, args.size)
    print(f"face VAE backbone, {args.size}x{args.size}, width {args.width}, latent {args.latent}, batch 64, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    written = face_vae.CONV_LAYOUT
    variants = {"as written": (written, lambda m: m), "NCHW layout": (torch.contiguous_format, lambda m: m)}
    if not args.no_compile:
        variants["torch.compile"] = (written, lambda m: torch.compile(m))
    for name, (layout, wrap_model) in variants.items():
        face_vae.CONV_LAYOUT = layout  # read when the nets are built and at every forward pass
        torch.manual_seed(0)
        model = FaceVAE(args.size, args.latent, args.width)
        try:
            t0 = time.perf_counter()
            compiled = wrap_model(model)
            if name == "torch.compile":  # compile the whole objective: the nets and the loss
                model.terms = torch.compile(model.terms)
                compiled = model
            rate, cpu = steps_per_second(compiled, x, args.steps)
            print(f"  {name:14s} {rate:6.1f} steps/s, {1000 * cpu:6.1f} CPU-ms per step "
                  f"(set-up and warm-up {time.perf_counter() - t0 - args.steps / rate:.1f} s)")
        except Exception as err:  # a compiler missing on this machine is a result too
            print(f"  {name:14s} failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
        finally:
            face_vae.CONV_LAYOUT = written


if __name__ == "__main__":
    main()
