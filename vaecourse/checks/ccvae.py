"""The checks that follow the exercises of lesson 05 (CCVAE, Joy et al. 2021, arXiv:2006.10102): the weight
q(y|z_c)/q(y|x), the conditional prior's log-density, and the supervised bound assembled from its terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..losses import gaussian_log_density
from .common import _close, _diagnose, _fail, _grads, _pair, _tensor_out

__all__ = ["check_label_weight", "check_log_cond_prior", "check_supervised_loss"]


def _same_grads(name: str, out: torch.Tensor, inputs: dict[str, torch.Tensor], want: torch.Tensor,
                ref_inputs: list[torch.Tensor], hint: str) -> None:
    """out.sum()'s gradients over ``inputs`` equal want.sum()'s over ``ref_inputs``, else a failed check naming one."""
    got = _grads(name, out, inputs)
    ref = torch.autograd.grad(want.sum(), ref_inputs)
    for (label, _), g, r in zip(inputs.items(), got, ref):
        if not _close(g, r):
            _fail(name, f"the values are right but the gradient with respect to {label} is not", hint)


# ----------------------------------------------------------------------------- exercise 1
def check_label_weight(fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """log q(y|x) from K draws (K × N) by log-mean-exp, and w = q(y|z_c)/q(y|x), against the closed form and slips."""
    name = "q(y|x) and the weight"
    draws = torch.tensor([[-0.1, -2.0, -800.0], [-0.5, -1.2, -803.0], [-1.5, -0.3, -801.0], [-0.2, -4.0, -806.0]],
                         dtype=torch.float64)   # K = 4 draws of z_c for N = 3 images; the third is very unlikely
    at_zc = torch.tensor([-0.3, -2.5, -802.0], dtype=torch.float64)
    d, a = draws.clone().requires_grad_(True), at_zc.clone().requires_grad_(True)
    log_qyx, w = _pair(name, fn(d, a), "log_qyx, w")
    log_qyx = _tensor_out(name + " (log q(y|x))", log_qyx, (3,), "one per image, from K = 4 draws each",
                          "average over the draws, the first axis (dim=0): log_qy_draws is K × N")
    w = _tensor_out(name + " (weight)", w, (3,), "one weight per image", "w = exp(log_qy_zc − log q(y|x)), elementwise")
    k = draws.shape[0]
    want_log = torch.logsumexp(draws, 0) - math.log(k)
    if not _close(log_qyx.detach(), want_log):
        slip = "a probability of e^−800 underflows to 0 in floating point, and its log is −inf: " \
               "stay in logs, torch.logsumexp(log_qy_draws, 0) − log K" if not torch.isfinite(log_qyx).all() else None
        slip = slip or _diagnose(log_qyx.detach(), {
            "you averaged the log-probabilities: that is the log of a geometric mean, below log q(y|x) (Jensen); "
            "average the probabilities, in logs: logsumexp − log K": draws.mean(0),
            "you summed the K probabilities: their mean needs − log K": torch.logsumexp(draws, 0),
            "you took the most likely draw: average all K (logsumexp − log K)": draws.max(0).values,
        })
        _fail(name, f"log q(y|x) = {log_qyx.detach().numpy().round(4).tolist()}, expected "
                    f"{want_log.numpy().round(4).tolist()}",
              slip or "q(y|x) = (1/K) Σₖ q(y|z_c⁽ᵏ⁾): in logs, torch.logsumexp(log_qy_draws, 0) − math.log(K)")
    want_w = (at_zc - want_log).exp()
    if not _close(w.detach(), want_w):
        slip = _diagnose(w.detach(), {
            "you returned the log of the weight: exponentiate it": at_zc - want_log,
            "the weight is upside down: q(y|z_c) over q(y|x), exp(log_qy_zc − log q(y|x))": (want_log - at_zc).exp(),
        })
        if slip is None and not torch.isfinite(w).all():
            slip = "exp(−802)/exp(−801) is 0/0 in floating point: take the ratio in logs, exp(log_qy_zc − log_qyx)"
        _fail(name, f"w = {w.detach().numpy().round(4).tolist()}, expected {want_w.numpy().round(4).tolist()}",
              slip or "w = q(y|z_c)/q(y|x) = exp(log_qy_zc − log q(y|x)), with your log q(y|x)")
    ref_d, ref_a = draws.clone().requires_grad_(True), at_zc.clone().requires_grad_(True)
    ref_log = torch.logsumexp(ref_d, 0) - math.log(k)
    _same_grads(name, log_qyx + w, {"log_qy_draws": d, "log_qy_zc": a}, ref_log + (ref_a - ref_log).exp(),
                [ref_d, ref_a], "keep both in the graph (no detach, no .item()): log q(y|x) trains the classifier")
    print(f"{name}: correct (log q(y|x) by log-mean-exp over K = {k} draws, finite even at log q = −800; "
          f"w = {', '.join(f'{v:.3f}' for v in want_w.tolist())}; gradients reach both inputs)")


# ----------------------------------------------------------------------------- exercise 2
def _cond_prior_slips(zc, y, mu, lv) -> dict[str, torch.Tensor]:
    m0, m1 = mu[:, 0].expand(zc.shape), mu[:, 1].expand(zc.shape)
    v0, v1 = lv[:, 0].expand(zc.shape), lv[:, 1].expand(zc.shape)
    m, v = torch.where(y > 0.5, m1, m0), torch.where(y > 0.5, lv[:, 1], lv[:, 0])
    c = math.log(2 * math.pi)
    return {
        "the columns are swapped: column 1 of prior_mu and prior_logvar is y_i = 1, column 0 is y_i = 0":
            gaussian_log_density(zc, torch.where(y > 0.5, m0, m1), torch.where(y > 0.5, v0, v1)),
        "every attribute used column 0 (the y_i = 0 Gaussian): the label y_i picks the column":
            gaussian_log_density(zc, m0, v0),
        "every attribute used column 1 (the y_i = 1 Gaussian): the label y_i picks the column":
            gaussian_log_density(zc, m1, v1),
        "the constant −½·log 2π per dimension is missing": -0.5 * (v + (zc - m).pow(2) / v.exp()).sum(1),
        "the normaliser −½·log σ² is missing (the prior's variances are learned, so it matters)":
            -0.5 * (c + (zc - m).pow(2) / v.exp()).sum(1),
        "you divided by σ where σ² belongs (exp(logvar) is already the variance)":
            -0.5 * (c + v + (zc - m).pow(2) / (0.5 * v).exp()).sum(1),
        "you averaged over the attributes: the log of a product of densities is their sum":
            -0.5 * (c + v + (zc - m).pow(2) / v.exp()).mean(1),
    }


def check_log_cond_prior(fn: Callable[..., torch.Tensor]) -> None:
    """Σᵢ log N(z_c,i; μᵢ(yᵢ), σᵢ²(yᵢ)) per row, against the package's density, its gradients and the usual slips."""
    name = "log p(z_c|y)"
    zc = torch.tensor([[0.8, -1.3, 0.2], [-0.4, 0.9, 1.7], [1.5, 0.1, -0.6], [-2.0, -0.7, 0.4]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    mu = torch.tensor([[-1.0, 1.2], [-0.5, 0.8], [0.3, 2.0]], dtype=torch.float64)
    lv = torch.tensor([[0.2, -0.6], [-1.0, 0.4], [0.5, -0.3]], dtype=torch.float64)
    z, m, v = (t.clone().requires_grad_(True) for t in (zc, mu, lv))
    out = _tensor_out(name, fn(z, y, m, v), (4,), "one log-density per row of z_c",
                      "sum over the attributes (dim=1): p(z_c|y) = Πᵢ p(z_c,i|y_i)")
    want = gaussian_log_density(zc, torch.where(y > 0.5, mu[:, 1], mu[:, 0]), torch.where(y > 0.5, lv[:, 1], lv[:, 0]))
    if not _close(out.detach(), want):
        _fail(name, f"values {out.detach().numpy().round(4).tolist()}, expected {want.numpy().round(4).tolist()}",
              _diagnose(out.detach(), _cond_prior_slips(zc, y, mu, lv))
              or "pick μᵢ(yᵢ) = prior_mu[i, yᵢ] and log σᵢ²(yᵢ) = prior_logvar[i, yᵢ] for every row "
                 "(torch.where(y > 0.5, prior_mu[:, 1], prior_mu[:, 0])), then Σᵢ −½(log 2π + log σ² + (z − μ)²/σ²)")
    ref = [t.clone().requires_grad_(True) for t in (zc, mu, lv)]
    _same_grads(name, out, dict(zip(("zc", "prior_mu", "prior_logvar"), (z, m, v))),
                gaussian_log_density(ref[0], torch.where(y > 0.5, ref[1][:, 1], ref[1][:, 0]),
                                     torch.where(y > 0.5, ref[2][:, 1], ref[2][:, 0])), ref,
                "select with torch.where or indexing, no in-place writes into prior_mu or prior_logvar")
    print(f"{name}: correct on 4 rows × 3 attributes (values to 1e-8; gradients reach z_c and both columns of the "
          "prior's means and log-variances)")


# ----------------------------------------------------------------------------- exercise 3
def _bound_slips(rec, kl, lqz, lqx, lpy, w, beta, alpha) -> dict[str, torch.Tensor]:
    inner = -rec - beta * kl - lqz
    return {
        "you returned the bound itself: the loss to minimise is its negative": w * inner + alpha * lqx + lpy,
        "the weight w multiplies only the expectation's bracket, not log q(y|x) or log p(y)":
            -(w * (inner + alpha * lqx + lpy)),
        "the weight w is missing: the expectation is under q(z|x, y), so each term is weighted by w":
            -(inner + alpha * lqx + lpy),
        "log q(y|z_c) has the wrong sign: it sits in the denominator inside the log": -(w * (inner + 2 * lqz)
                                                                                          + alpha * lqx + lpy),
        "α multiplies log q(y|x) only (it is the classifier's weight)": -(w * inner + lqx + lpy),
        "β multiplies the KL only, not the whole bracket": -(w * beta * (-rec - kl - lqz) + alpha * lqx + lpy),
        "log p(y) is missing (a constant for the gradient, but part of the bound)": -(w * inner + alpha * lqx),
        "the KL has the wrong sign: the bound subtracts β·KL": -(w * (inner + 2 * beta * kl) + alpha * lqx + lpy),
    }


def check_supervised_loss(fn: Callable[..., torch.Tensor]) -> None:
    """−(w·(log p(x|z) − β·KL − log q(y|z_c)) + α·log q(y|x) + log p(y)) per example, with its gradients and slips."""
    name = "supervised bound"
    terms = {"rec": [812.0, 790.5, 845.2], "kl": [31.0, 27.5, 40.2], "log_qy_zc": [-0.4, -2.1, -0.05],
             "log_qyx": [-0.6, -1.7, -0.1], "log_py": [-1.9, -2.3, -2.0], "w": [1.2, 0.67, 1.05]}
    base = {k: torch.tensor(v, dtype=torch.float64) for k, v in terms.items()}
    beta, alpha = 4.0, 100.0
    ins = {k: t.clone().requires_grad_(True) for k, t in base.items()}
    out = _tensor_out(name, fn(*ins.values(), beta, alpha), (3,), "one loss per example",
                      "no mean or sum over the batch: fit_ccvae takes the mean of the per-example losses")
    want = -(base["w"] * (-base["rec"] - beta * base["kl"] - base["log_qy_zc"]) + alpha * base["log_qyx"]
             + base["log_py"])
    if not _close(out.detach(), want):
        _fail(name, f"values {out.detach().numpy().round(3).tolist()}, expected {want.numpy().round(3).tolist()} "
                    f"(β = {beta:g}, α = {alpha:g})",
              _diagnose(out.detach(), _bound_slips(*base.values(), beta, alpha))
              or "loss = −(w·(−rec − β·kl − log_qy_zc) + α·log_qyx + log_py), with rec = −log p(x|z)")
    ref = {k: t.clone().requires_grad_(True) for k, t in base.items()}
    want_g = -(ref["w"] * (-ref["rec"] - beta * ref["kl"] - ref["log_qy_zc"]) + alpha * ref["log_qyx"] + ref["log_py"])
    _same_grads(name, out, ins, want_g, list(ref.values()),
                "build the loss from the inputs with torch operations, no detach (whether w carries a gradient is "
                "the objective's choice, not this function's)")
    print(f"{name}: correct on 3 examples with β = {beta:g}, α = {alpha:g} (values to 1e-8; gradients: "
          "∂/∂rec = w, ∂/∂kl = β·w, ∂/∂log q(y|x) = −α, ∂/∂w = −(the bracket))")
