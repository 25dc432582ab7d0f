"""vaecourse asks torch for its AVX2 kernels on AVX-512 processors, and they compute what the AVX-512 ones do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vaecourse import cpu_kernels
from vaecourse.config import describe_machine

HAS_AVX512 = cpu_kernels.cpu_has("avx512") and cpu_kernels.cpu_has("avx2")
needs_avx512 = pytest.mark.skipif(not HAS_AVX512, reason="the choice is only made on processors with AVX-512")


def fresh_python(code: str, *args: str, **env: str) -> str:
    """The last line ``code`` prints in a new interpreter (torch's kernel set is fixed once per process)."""
    clean = {k: v for k, v in os.environ.items() if k != cpu_kernels.CAPABILITY_VARIABLE}
    done = subprocess.run([sys.executable, "-c", code, *args], env={**clean, **env}, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip().splitlines()[-1]


@needs_avx512
def test_importing_vaecourse_selects_the_avx2_kernels():
    assert fresh_python("import vaecourse, torch; print(torch.backends.cpu.get_cpu_capability())") == "AVX2"


def test_a_kernel_set_chosen_by_the_user_is_kept():
    code = "import vaecourse, torch; print(torch.backends.cpu.get_cpu_capability())"
    assert fresh_python(code, ATEN_CPU_CAPABILITY="default") == "DEFAULT"


def test_no_choice_without_avx512(monkeypatch):
    monkeypatch.delenv(cpu_kernels.CAPABILITY_VARIABLE, raising=False)
    monkeypatch.setattr(cpu_kernels, "cpu_has", lambda name: name == "avx2")
    assert cpu_kernels.prefer_avx2_kernels() is False
    assert cpu_kernels.CAPABILITY_VARIABLE not in os.environ


def test_results_record_the_kernel_set():
    assert describe_machine(torch.device("cpu"))["cpu_kernels"] == cpu_kernels.kernel_set() != "unknown"


# Values and gradients of the element-wise functions the course's models use, on 10^5 numbers in [-16, 16].
FUNCTION_VALUES = r"""
import sys, torch, torch.nn.functional as F
torch.manual_seed(0)
x = (torch.randn(100_000) * 4).clamp(-16, 16).requires_grad_()
t = torch.rand(100_000)
fns = {"elu": F.elu, "softplus": F.softplus, "logsigmoid": F.logsigmoid, "exp": torch.exp, "sigmoid": torch.sigmoid,
       "leaky_relu": lambda v: F.leaky_relu(v, 0.2),
       "bce_with_logits": lambda v: F.binary_cross_entropy_with_logits(v, t, reduction="none")}
out = {}
for name, f in fns.items():
    y = f(x)
    g, = torch.autograd.grad(y.sum(), x)
    out[name], out[name + " gradient"] = y.detach(), g
torch.save(out, sys.argv[1])
print(torch.backends.cpu.get_cpu_capability())
"""


@needs_avx512
def test_the_avx2_kernels_compute_the_course_functions_as_the_avx512_ones(tmp_path):
    values = {}
    for kernels in ("avx2", "avx512"):
        path = tmp_path / f"{kernels}.pt"
        assert fresh_python(FUNCTION_VALUES, str(path), ATEN_CPU_CAPABILITY=kernels) == kernels.upper()
        values[kernels] = torch.load(path)
    for name, a in values["avx2"].items():
        b = values["avx512"][name]
        f32 = torch.finfo(torch.float32)
        ulp = f32.eps * torch.maximum(a.abs(), b.abs()).clamp_min(f32.tiny)
        assert ((a - b).abs() <= ulp).all(), f"{name}: the kernel sets differ by more than one unit in the last place"
        share = (a != b).float().mean().item()
        assert share < 1e-3, f"{name}: {100 * share:.2f} % of the values differ between the kernel sets"


def test_the_benchmark_prints_a_row_per_kernel_set(capsys):
    from benchmarks import bench_cpu_kernels

    rows = bench_cpu_kernels.main(["--repeats", "5", "--steps", "2", "--threads", "1"])
    printed = capsys.readouterr().out
    assert [r["set"] for r in rows] == [s.upper() for s in bench_cpu_kernels.available_sets()]
    for r in rows:
        assert all(r[op + "_us"] > 0 for op in bench_cpu_kernels.OPS) and r["vae_step_ms"] > 0
        assert f"{r['set']:>10} |" in printed
