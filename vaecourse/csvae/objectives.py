"""CSVAE's objectives: the weights, the terms of CVAE and CSVAE, and the adversarial step (the adversary learns y
from z, the encoder makes z uninformative).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..face_vae import equivalent_c
from ..losses import (
    bernoulli_entropy,
    bernoulli_nll,
    binary_labels,
    gaussian_kl,
    gaussian_kl_between,
    squared_error,
)
from ..train import adam
from .models import (
    CSVAE,
    CVAE,
    LABELS_FIX,
    Terms,
    _LabelledVAE,
)

# ----------------------------------------------------------------------------- objectives
PAPER_REC_WEIGHT = 20.0  # the paper's β₁, on ‖x − x̂‖² summed over an example's pixels
PAPER_C = equivalent_c(PAPER_REC_WEIGHT, 1.0)  # = 0.025: the decoder variance β₁ stands for (next to β₂ = 1)


@dataclass(frozen=True)
class Weights:
    """The weights of the objective's terms; defaults are the CSVAE paper's β₂ … β₅ (arXiv 1812.06190).

    The paper's β₁ = 20 on ‖x − x̂‖² is a Gaussian decoder of variance c = 1/(2·20) = 0.025
    (:data:`PAPER_C`); here the decoder's variance lives on the model (``c=``), calibrated by default.
    ``kl_w`` weighs KL(q(w|x,y) ‖ p(w|y)); ``kl_z`` KL(q(z|x) ‖ N(0, I)); ``adv_enc`` the adversarial term
    in the encoder's loss (CSVAE: −entropy of q(y|z); CVAE-info: −cross-entropy of r(z)); ``adv`` the
    adversary's own cross-entropy.
    """

    kl_w: float = 1.0
    kl_z: float = 0.2
    adv_enc: float = 10.0
    adv: float = 1.0

    def __post_init__(self):
        for name in ("kl_w", "kl_z", "adv_enc", "adv"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"weight {name} must be a non-negative number, got {v}")

    def scaled(self, factor: float) -> Weights:
        """The same objective at a decoder variance ``factor`` times larger: β₂, β₃ and β₄ times ``factor``.

        −log N(x; x̂, k·c) is −log N(x; x̂, c) divided by k (plus a constant), so multiplying every term beside
        the reconstruction by k trains the model with variance k·c, up to an overall scale that Adam ignores.
        The paper balanced its weights against c = 0.025; a calibrated c near 0.0015 makes the reconstruction
        about 17 times heavier, and ``scaled`` gives the other terms back part of that weight. ``adv`` (the
        adversary's own loss, a separate objective) is unchanged.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be a positive number, got {factor}")
        return Weights(kl_w=self.kl_w * factor, kl_z=self.kl_z * factor, adv_enc=self.adv_enc * factor, adv=self.adv)


def _reconstruction(model: _LabelledVAE, x: torch.Tensor, x_hat: torch.Tensor) -> Terms:
    """−log p(x|·) per example with the model's c, and the squared error beside it (for the logs)."""
    nll, c = model.likelihood(x, x_hat)
    return {"nll": nll, "sq_err": squared_error(x, x_hat).detach(), "c": c.detach()}


def cvae_terms(model: CVAE, x: torch.Tensor, y: torch.Tensor, weights: Weights = Weights()) -> Terms:
    """CVAE's negative ELBO per batch: −log N(x; x̂, c·I) + kl_z·KL(q(z|x,y) ‖ N(0, I)) (means over the batch)."""
    out = model(x, y)
    rec = _reconstruction(model, x, out["x_hat"])
    kl = gaussian_kl(out["mu_z"], out["logvar_z"])
    loss = rec["nll"] + weights.kl_z * kl
    return {"loss": loss.mean(), "nll": rec["nll"].mean().detach(), "sq_err": rec["sq_err"].mean(), "c": rec["c"],
            "kl_z": kl.mean(), "out": out}


def csvae_terms(model: CSVAE, x: torch.Tensor, y: torch.Tensor, weights: Weights = Weights()) -> Terms:
    """CSVAE's M₁ without the adversary: −log N(x; x̂, c·I) + kl_w·KL(q(w|x,y) ‖ p(w|y)) + kl_z·KL(q(z|x) ‖ N(0, I))."""
    out = model(x, y)
    rec = _reconstruction(model, x, out["x_hat"])
    p_mu, p_logvar = model.prior_w(y)
    kl_w = gaussian_kl_between(out["mu_w"], out["logvar_w"], p_mu, p_logvar)
    kl_z = gaussian_kl(out["mu_z"], out["logvar_z"])
    loss = rec["nll"] + weights.kl_w * kl_w + weights.kl_z * kl_z
    return {"loss": loss.mean(), "nll": rec["nll"].mean().detach(), "sq_err": rec["sq_err"].mean(), "c": rec["c"],
            "kl_w": kl_w.mean(), "kl_z": kl_z.mean(), "out": out}


def model_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: Weights = Weights()) -> Terms:
    """The VAE part of the objective of any of the three models."""
    if isinstance(model, CSVAE):
        return csvae_terms(model, x, y, weights)
    if isinstance(model, CVAE):
        return cvae_terms(model, x, y, weights)
    raise TypeError(f"expected a CVAE or CSVAE, got {type(model).__name__}")


def make_optimizers(model: nn.Module, lr: float = 1e-3, adversary_lr: float | None = None
                    ) -> dict[str, torch.optim.Optimizer]:
    """Adam for the VAE's parameters and (if the model has one) a separate Adam for the adversary's."""
    opts = {"vae": adam(model.vae_parameters(), lr=lr)}
    if getattr(model, "adversary", None) is not None:
        opts["adversary"] = adam(model.adversary.parameters(), lr=adversary_lr or lr)
    return opts


def adversarial_step(model: nn.Module, optimizers: dict[str, torch.optim.Optimizer], weights: Weights = Weights(),
                     adversary_steps: int = 1) -> Callable[[tuple[torch.Tensor, ...]], Terms]:
    """A ``train_step(batch)`` for ``vaecourse.fit``: batch = (x, y); returns the logged terms.

    1. One forward pass of the VAE (encoder → z, w → decoder).
    2. Adversary step (touches only the adversary): minimise adv·(−log q(y|z)) on ``z.detach()``,
       so no gradient reaches the encoder — the encoder must not learn to *help* the adversary.
    3. VAE step (touches only encoder + decoder): a fresh adversary forward on the live z with the
       adversary's parameters frozen (requires_grad off), then minimise
       CSVAE: M₁-loss − adv_enc·H(q(y|z));  CVAE-info: ELBO-loss − adv_enc·(−log r(y|z));  CVAE: ELBO-loss.
    Reusing the adversary's step-1 logits in step 3 would fail: its weights were changed in place by
    the adversary's optimiser after autograd saved them ("modified by an inplace operation").
    """
    opt_vae = optimizers["vae"]
    opt_adv = optimizers.get("adversary")
    adversary = getattr(model, "adversary", None)
    if (adversary is None) != (opt_adv is None):
        raise ValueError("give an 'adversary' optimiser exactly when the model has an adversary "
                         "(use make_optimizers(model))")

    def step(batch: tuple[torch.Tensor, ...]) -> Terms:
        x, y = batch[0], binary_labels(batch[1], model.n_labels, LABELS_FIX)
        terms = model_terms(model, x, y, weights)
        out = terms.pop("out")
        logged: Terms = {k: v.detach() for k, v in terms.items() if k != "loss"}
        loss = terms["loss"]
        if adversary is not None:
            z_fixed = out["z"].detach()
            for _ in range(adversary_steps):
                logits = adversary(z_fixed)
                adv_loss = weights.adv * bernoulli_nll(y, logits).mean()
                opt_adv.zero_grad(set_to_none=True)
                adv_loss.backward()
                opt_adv.step()
            with torch.no_grad():
                logged["adv_acc"] = ((logits > 0).float() == y).float().mean()
            adversary.requires_grad_(False)
            try:
                logits = adversary(out["z"])
                if isinstance(model, CSVAE):
                    entropy = bernoulli_entropy(logits).mean()
                    loss = loss - weights.adv_enc * entropy
                    logged["entropy"] = entropy.detach()
                else:
                    ce = bernoulli_nll(y, logits).mean()
                    loss = loss - weights.adv_enc * ce
                    logged["enc_ce"] = ce.detach()
            finally:
                adversary.requires_grad_(True)
            logged["adv_ce"] = adv_loss.detach() / max(weights.adv, 1e-12)
        opt_vae.zero_grad(set_to_none=True)
        loss.backward()
        opt_vae.step()
        logged["loss"] = loss.detach()
        return logged

    return step
