"""The checks that follow the exercises of lesson 07 (CSVAE): the KL of w against its prior, the prior p(w|y)
itself, and the adversary's step. Each runs the student's code on a fixed input, compares it with the package's
function, and when it is wrong says what (shape, value, gradient, parameters after the step) with a hint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from ..losses import gaussian_kl, gaussian_kl_between
from .common import _close, _diagnose, _fail, _grads, _pair, _tensor_out

__all__ = ["check_kl_diagonal_gaussians", "check_subspace_prior", "check_adversary_step"]


# ----------------------------------------------------------------------------- exercise 1
def _kl_slips(mq: torch.Tensor, lq: torch.Tensor, mp: torch.Tensor, lp: torch.Tensor) -> dict[str, torch.Tensor]:
    """The usual wrong versions of KL(q ‖ p), each with the hint that names it."""
    ratio, d2 = (lq - lp).exp(), (mq - mp).pow(2)
    return {
        "you computed KL(p ‖ q): the KL is not symmetric; the lesson's term is KL(q(w|x,y) ‖ p(w|y)), the posterior "
        "first (the squared distance is divided by the prior's variance σ_p²)": gaussian_kl_between(mp, lp, mq, lq),
        "you compared with N(0, I): use the prior's μ_p and log σ_p² (the prior of w depends on y)":
            gaussian_kl(mq, lq),
        "the factor ½ is missing": 2 * gaussian_kl_between(mq, lq, mp, lp),
        "the −1 per dimension is missing (KL(q ‖ q) must be 0)": 0.5 * (ratio + d2 / lp.exp() - lq + lp).sum(1),
        "(μ_q − μ_p)² is divided by the posterior's variance; the prior's σ_p² belongs there":
            0.5 * (ratio + d2 / lq.exp() - 1 - (lq - lp)).sum(1),
        "the log term has the wrong sign: −log(σ_q²/σ_p²) = −(logvar_q − logvar_p)":
            0.5 * (ratio + d2 / lp.exp() - 1 + (lq - lp)).sum(1),
        "you used σ where σ² belongs (exp(logvar) is already the variance)":
            0.5 * ((0.5 * (lq - lp)).exp() + d2 / (0.5 * lp).exp() - 1 - 0.5 * (lq - lp)).sum(1),
        "you averaged over the dimensions; the KL of independent dimensions is their sum":
            gaussian_kl_between(mq, lq, mp, lp) / mq.shape[1],
    }


def check_kl_diagonal_gaussians(fn: Callable[..., torch.Tensor]) -> None:
    """KL(N(μ_q, diag σ_q²) ‖ N(μ_p, diag σ_p²)) per row, against the package's, its gradient and the usual slips."""
    name = "KL between diagonal Gaussians"
    f64 = dict(dtype=torch.float64)
    mq = torch.tensor([[0.5, -1.0], [2.0, 0.3], [1.0, -1.0]], **f64)
    lq = torch.tensor([[0.0, -1.0], [1.2, -0.4], [0.5, -0.3]], **f64)
    mp = torch.tensor([[0.0, 0.0], [3.0, 3.0], [1.0, -1.0]], **f64)
    lp = torch.tensor([[math.log(0.1)] * 2, [0.0, 0.0], [0.5, -0.3]], **f64)  # row 3: q = p, so KL = 0
    inputs = {k: t.clone().requires_grad_(True) for k, t in
              (("mu_q", mq), ("logvar_q", lq), ("mu_p", mp), ("logvar_p", lp))}
    out = _tensor_out(name, fn(*inputs.values()), (3,), "one KL per row",
                      "sum over the dimensions (dim=1), and over nothing else")
    want = gaussian_kl_between(mq, lq, mp, lp)
    if not _close(out.detach(), want):
        _fail(name, f"values {out.detach().numpy().round(4).tolist()}, expected {want.numpy().round(4).tolist()}",
              _diagnose(out.detach(), _kl_slips(mq, lq, mp, lp))
              or "KL = ½ Σⱼ (σ_q²/σ_p² + (μ_q − μ_p)²/σ_p² − 1 − log(σ_q²/σ_p²)), with σ² = exp(logvar)")
    grads = _grads(name, out, {k: v for k, v in inputs.items() if k in ("mu_q", "logvar_q")})
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    want_grads = torch.autograd.grad(gaussian_kl_between(*ref.values()).sum(), [ref["mu_q"], ref["logvar_q"]])
    if not all(_close(g, w) for g, w in zip(grads, want_grads)):
        _fail(name, "the values are right but the gradient to μ_q or log σ_q² is not",
              "avoid in-place edits, clamps and detach on the inputs")
    print(f"{name}: correct on 3 rows (values to 1e-8, KL(q ‖ q) = 0, gradients to μ_q and log σ_q²)")


# ----------------------------------------------------------------------------- exercise 2
def _prior_slips(prior, y: torch.Tensor, w_dim: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from ..csvae import SubspacePrior

    mu, logvar = prior.params(y, w_dim)
    swapped = SubspacePrior(prior.mean1, prior.var1, prior.mean0, prior.var0).params(y, w_dim)
    tiled = prior.params(y.repeat(1, w_dim), 1)  # columns y₀ y₁ y₀ y₁ … instead of y₀ y₀ y₁ y₁ …
    return {
        "the label values are swapped: y = 0 (attribute absent) gets N(mean0, var0), y = 1 gets N(mean1, var1)":
            swapped,
        "the columns are in the wrong order: attribute i owns columns i·w_dim … (i+1)·w_dim − 1, so repeat each "
        "label w_dim times in place (repeat_interleave), not the whole row (repeat)": tiled,
        "the second output is the variance; return its log, log σ² (the encoder's heads give log-variances too)":
            (mu, logvar.exp()),
        "that is log σ, half of log σ²: return the log of the variance": (mu, 0.5 * logvar),
    }


def _prior_pair(name: str, out: object, shape: tuple[int, ...], w_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = _pair(name, out, "mu, logvar")
    hint = f"one column per coordinate of every subspace: each label repeated w_dim = {w_dim} times"
    return tuple(_tensor_out(name, t, shape, "N × (k·w_dim)", hint) for t in out)


def check_subspace_prior(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """(μ, log σ²) of p(w|y) for a batch of labels, against ``SubspacePrior.params`` and the usual slips."""
    from ..csvae import SubspacePrior

    name = "prior p(w|y)"
    prior = SubspacePrior(mean0=-0.5, var0=0.2, mean1=2.0, var1=1.5)  # not the lesson's: every number is distinct
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    for w_dim in (2, 3):
        mu, logvar = _prior_pair(name, fn(y, w_dim, prior), (3, 2 * w_dim), w_dim)
        want = prior.params(y, w_dim)
        if not (_close(mu, want[0], 1e-6) and _close(logvar, want[1], 1e-6)):
            slip = next((hint for hint, (m, v) in _prior_slips(prior, y, w_dim).items()
                         if _close(mu, m, 1e-6) and _close(logvar, v, 1e-6)), None)
            bad = "μ" if not _close(mu, want[0], 1e-6) else "log σ²"
            _fail(name, f"{bad} is wrong for y = {y.int().tolist()}, w_dim = {w_dim} (prior {prior}): got "
                        f"{(mu if bad == 'μ' else logvar).detach().double().numpy().round(3).tolist()}, expected "
                        f"{(want[0] if bad == 'μ' else want[1]).double().numpy().round(3).tolist()}",
                  slip or "per column: μ = mean0 where the label is 0 and mean1 where it is 1; log σ² = log var0 "
                          "or log var1 the same way")
    print(f"{name}: correct for 3 label rows of 2 attributes, w_dim = 2 and 3 (means, log-variances, column order)")


# ----------------------------------------------------------------------------- exercise 3
def _adversary_setup() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    """A fixed encoder (x → z), adversary (z → 2 logits), batch and labels, in float64."""
    gen = torch.Generator().manual_seed(0)
    encoder = nn.Linear(4, 3).double()
    adversary = nn.Sequential(nn.Linear(3, 5), nn.ELU(), nn.Linear(5, 2)).double()
    with torch.no_grad():
        for p in [*encoder.parameters(), *adversary.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    return encoder, adversary, x, y


def _stepped(adversary: nn.Module, z: torch.Tensor, loss_of: Callable, stale: float = 0.0, lr: float = 0.5):
    """The adversary's parameters after one SGD step on loss_of(logits) (with ``stale`` left in the gradients)."""
    twin = copy.deepcopy(adversary)
    grads = torch.autograd.grad(loss_of(twin(z.detach())), list(twin.parameters()))
    return [p.detach() - lr * (g + stale) for p, g in zip(twin.parameters(), grads)]


def check_adversary_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """One step of the adversary on weight·E[−log q(y|z)]: the returned logits and loss, no gradient to the encoder,
    and the adversary's parameters after one SGD step, against the usual slips (sign, detach, zero_grad, weight)."""
    name = "adversary step"
    weight, lr, stale = 3.0, 0.5, 0.25
    encoder, adversary, x, y = _adversary_setup()
    z = encoder(x)

    def bce(logits: torch.Tensor) -> torch.Tensor:  # −log q(yᵢ|z) per example and attribute
        return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")

    want_logits = adversary(z).detach()
    want_loss = weight * bce(want_logits).sum(1).mean()
    after = {"right": _stepped(adversary, z, lambda lg: weight * bce(lg).sum(1).mean(), lr=lr),
             "ascent": _stepped(adversary, z, lambda lg: -weight * bce(lg).sum(1).mean(), lr=lr),
             "stale": _stepped(adversary, z, lambda lg: weight * bce(lg).sum(1).mean(), stale, lr)}
    for p in adversary.parameters():  # what an earlier step left behind: zero_grad must clear it
        p.grad = torch.full_like(p, stale)
    optimizer = torch.optim.SGD(adversary.parameters(), lr=lr)
    before = [p.detach().clone() for p in adversary.parameters()]
    out = fn(adversary, optimizer, z, y, weight)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        _fail(name, f"returned {type(out).__name__}", "return the pair: return logits, loss")
    logits = _tensor_out(name, out[0], (6, 2), "one logit per example and attribute", "return adversary(z) as it is")
    loss = _tensor_out(name, out[1], (), "one number", "sum −log q(y|z) over the attributes, average over the batch")
    if not _close(logits.detach(), want_logits):
        _fail(name, "the logits are not the adversary's on this z", "return the logits the loss was computed from")
    if not _close(loss.detach(), want_loss):
        per = bce(want_logits)
        slip = _diagnose(loss.detach(), {
            "the sign: the adversary *minimises* its cross-entropy −log q(y|z) (it learns to predict y); the minus "
            "belongs to the encoder's term": -want_loss,
            "you averaged over the attributes too: −log q(y|z) of independent labels is their sum (.sum(1), then "
            "the batch mean)": weight * per.mean(),
            "the weight (β₅) is missing: multiply the cross-entropy by weight": per.sum(1).mean(),
            "the weight (β₅) is missing and the attributes are averaged": per.mean(),
        })
        _fail(name, f"loss {float(loss.detach()):.5f}, expected {float(want_loss):.5f}",
              slip or "loss = weight · mean over the batch of Σ over attributes of −log q(yᵢ|z); "
                      "F.binary_cross_entropy_with_logits(logits, y, reduction='none') is −log q(yᵢ|z)")
    if encoder.weight.grad is not None or encoder.bias.grad is not None:
        _fail(name, "gradients reached the encoder's parameters through z",
              "call the adversary on z.detach(): the encoder must not learn to help the adversary, and its "
              "gradients would pile up with the VAE step's")
    moved = list(adversary.parameters())
    if all(torch.equal(p.detach(), b) for p, b in zip(moved, before)):
        _fail(name, "the adversary's parameters did not move", "call loss.backward(), then optimizer.step()")
    if not all(_close(p.detach(), w) for p, w in zip(moved, after["right"])):
        got = [p.detach() for p in moved]
        if all(_close(p, w) for p, w in zip(got, after["stale"])):
            hint = "the gradients of an earlier step were added to this one: call optimizer.zero_grad() before backward"
        elif all(_close(p, w) for p, w in zip(got, after["ascent"])):
            hint = "the step went up the cross-entropy: the adversary minimises it (no minus sign in its loss)"
        else:
            hint = "one optimizer.zero_grad(), loss.backward(), optimizer.step(), on the loss you return"
        _fail(name, "the parameters after the step are not those of one SGD step on the returned loss", hint)
    print(f"{name}: correct (loss {float(want_loss):.4f}, nothing reaches the encoder, the parameters after one SGD "
          "step to 1e-8)")
