"""Lesson 07: CVAE, CVAE with information factorisation, and the Conditional Subspace VAE (CSVAE).

Three ways to put binary labels y ∈ {0, 1}^k into a VAE so that an attribute can be edited:

* :class:`CVAE` — q(z|x, y), p(x|z, y); edit by decoding with another y.
* :class:`CVAE` with ``info=True`` (CVAE-info) — q(z|x) without y, plus an adversary r(z) that
  predicts y while the encoder is trained to maximise its cross-entropy (Creswell et al. 2017).
* :class:`CSVAE` — latent (z, w) with one low-dimensional subspace Wᵢ per attribute: q(w|x, y)
  with a fixed prior p(wᵢ|yᵢ) per label value, q(z|x) with N(0, I), and an adversary q(y|z) whose
  entropy the encoder maximises so that z keeps no label information (Klys, Snell & Zemel 2018).

The two adversarial models train with two optimisers: :func:`adversarial_step` builds the
``train_step`` for ``vaecourse.fit`` (the adversary learns on a *detached* z first, then the VAE
learns against the freshly updated, frozen adversary). The same nets work on vectors (the
swiss-roll toy: ``data_shape=(3,)``) and on images (``data_shape=(3, 32, 32)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from . import faces
from .batching import iterate
from .face_vae import FaceDecoder, FaceEncoder, GaussianLikelihood, equivalent_c
from .faces import SIZES
from .losses import (
    bernoulli_entropy,
    bernoulli_nll,
    binary_labels,
    gaussian_kl,
    gaussian_kl_between,
    reparameterize,
    squared_error,
)
from .nets import MLPDecoder, check_images, variance_to_logvar
from .train import model_mode
from .widgets import LiveImage

Terms = dict[str, torch.Tensor]
LABELS_FIX = "pass data.labels[:, columns] for the attributes the model was built for"  # advice on a wrong shape


# ----------------------------------------------------------------------------- building blocks
def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear/ELU layers through ``sizes`` (no activation after the last one)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


def _check_shape(data_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in data_shape)
    if len(shape) == 1:
        return shape
    if len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2] and shape[1] in SIZES:
        return shape
    raise ValueError(f"data_shape must be (D,) for vectors or (3, S, S) for faces with S in {SIZES}, got {shape}; "
                     "pass tuple(images.shape[1:]) of the faces (load them with size=32 or 64)")


def make_trunk(data_shape: Sequence[int], hidden: Sequence[int] = (64, 64), width: int = 32) -> tuple[nn.Module, int]:
    """The encoders' shared feature extractor: an MLP for vectors, the face backbone's conv trunk for images."""
    shape = _check_shape(data_shape)
    if len(shape) == 1:
        return nn.Sequential(mlp([shape[0], *hidden]), nn.ELU()), int(hidden[-1])
    backbone = FaceEncoder(shape[1], 1, width)  # its trunk only: the models put their own heads on it
    return backbone.trunk, backbone.feature_dim


def make_decoder(data_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (64, 64),
                 width: int = 32) -> nn.Module:
    """p(x|latent)'s mean: a linear-output MLP for vectors (standardised data), the face backbone's decoder."""
    shape = _check_shape(data_shape)
    if len(shape) == 1:
        return MLPDecoder(shape, latent_dim, tuple(hidden)[::-1], logits=True)
    return FaceDecoder(shape[1], latent_dim, width)


class Adversary(nn.Module):
    """r(z) / q_δ(y|z): an MLP from z to one logit per binary attribute."""

    def __init__(self, z_dim: int, n_labels: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.net = mlp([z_dim, *hidden, n_labels])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class _LabelledVAE(nn.Module):
    """What the three models share: the data shape, the trunk, the likelihood, the VAE/adversary split."""

    def _build(self, data_shape: Sequence[int], n_labels: int, z_dim: int, hidden: Sequence[int], width: int,
               c: str | float) -> int:
        if n_labels < 1 or z_dim < 1:
            raise ValueError(f"n_labels and z_dim must be at least 1, got {n_labels} and {z_dim}")
        self.data_shape = _check_shape(data_shape)
        self.n_labels, self.z_dim = n_labels, z_dim
        self.trunk, feat = make_trunk(self.data_shape, hidden, width)
        self.likelihood = GaussianLikelihood(c)
        return feat

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.data_shape) == 3:
            check_images(x, self.data_shape, f"this {type(self).__name__}")
        return self.trunk(x)

    def vae_parameters(self) -> list[nn.Parameter]:
        """Encoder, decoder and likelihood parameters (what the VAE optimiser steps; never the adversary's)."""
        skip = {id(p) for p in (self.adversary.parameters() if self.adversary is not None else [])}
        return [p for p in self.parameters() if id(p) not in skip]


# ----------------------------------------------------------------------------- CVAE / CVAE-info
class CVAE(_LabelledVAE):
    """Conditional VAE: q(z|x, y) (or q(z|x) with ``info=True``) and p(x|z, y) = N(x̂(z, y), c·I).

    With ``info=True`` the model also owns ``adversary`` r(z) → y, trained by
    :func:`adversarial_step`; the encoder then never sees y, so y can only enter through the decoder.
    ``c`` is the decoder variance: "optimal" (calibrated, the default), "learned", or a fixed number.
    """

    def __init__(self, data_shape: Sequence[int], n_labels: int, z_dim: int = 8, *, info: bool = False,
                 hidden: Sequence[int] = (64, 64), width: int = 32, c: str | float = "optimal",
                 adversary_hidden: Sequence[int] = (64, 64)):
        super().__init__()
        feat = self._build(data_shape, n_labels, z_dim, hidden, width, c)
        self.info = info
        self.head_z = nn.Linear(feat + (0 if info else n_labels), 2 * z_dim)
        self.decoder = make_decoder(self.data_shape, z_dim + n_labels, hidden, width)
        self.adversary = Adversary(z_dim, n_labels, adversary_hidden) if info else None

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x, y), or of q(z|x) for CVAE-info (y ignored)."""
        h = self.features(x)
        y = binary_labels(y, self.n_labels, LABELS_FIX)
        if not self.info:
            h = torch.cat([h, y], 1)
        mu, raw = self.head_z(h).chunk(2, dim=1)
        return mu, variance_to_logvar(raw)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z, y)."""
        return self.decoder(torch.cat([z, binary_labels(y, self.n_labels, LABELS_FIX)], 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar) if self.training else mu
        return {"mu_z": mu, "logvar_z": logvar, "z": z, "x_hat": self.decode(z, y)}

    @torch.no_grad()
    def transfer(self, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor) -> torch.Tensor:
        """Attribute transfer: encode with the true labels, decode with ``y_new``."""
        mu, _ = self.encode(x, y)
        return self.decode(mu, y_new)

    @torch.no_grad()
    def latents(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The posterior means, for probes and plots: {'z': ...}."""
        return {"z": self.encode(x, y)[0]}


# ----------------------------------------------------------------------------- CSVAE
@dataclass(frozen=True)
class SubspacePrior:
    """p(wᵢ|yᵢ): a fixed isotropic Gaussian per label value in every subspace Wᵢ (same for every i).

    Defaults: yᵢ = 0 (attribute absent) → N(0, 0.1·I): a tight blob, "no glasses" has little to vary;
    yᵢ = 1 (present) → N(3·1, I): a unit-variance cloud far from it, room for the kinds of glasses.
    The means are ~4 standard deviations apart, so the two priors barely overlap and setting wᵢ to
    the other prior's mean is a clean edit; the different scales are the paper's tight/broad choice.
    """

    mean0: float = 0.0
    var0: float = 0.1
    mean1: float = 3.0
    var1: float = 1.0

    def __post_init__(self):
        if not (self.var0 > 0 and self.var1 > 0):
            raise ValueError(f"the prior variances must be positive, got var0={self.var0}, var1={self.var1}")

    def params(self, y: torch.Tensor, w_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of p(w|y) for N×k labels: N×(k·w_dim), attribute i in columns i·w_dim … (i+1)·w_dim − 1."""
        y = y.float().repeat_interleave(w_dim, dim=1)
        mu = self.mean0 + (self.mean1 - self.mean0) * y
        var = self.var0 + (self.var1 - self.var0) * y
        return mu, var.log()


class CSVAE(_LabelledVAE):
    """Conditional Subspace VAE: q(z|x), q(w|x, y) with w = (w₁ … w_k), wᵢ ∈ R^w_dim, p(x|z, w), adversary q(y|z).

    Both encoders share one trunk (the face backbone's for images) and have their own heads;
    p(x|z, w) = N(x̂(z, w), c·I) with ``c`` "optimal" (calibrated, the default), "learned" or fixed.
    """

    def __init__(self, data_shape: Sequence[int], n_labels: int, z_dim: int = 8, w_dim: int = 2, *,
                 prior: SubspacePrior = SubspacePrior(), hidden: Sequence[int] = (64, 64), width: int = 32,
                 c: str | float = "optimal", adversary_hidden: Sequence[int] = (64, 64), w_hidden: int = 64):
        super().__init__()
        if w_dim < 1:
            raise ValueError(f"w_dim must be at least 1, got {w_dim}")
        feat = self._build(data_shape, n_labels, z_dim, hidden, width, c)
        self.w_dim, self.prior = w_dim, prior
        self.head_z = nn.Linear(feat, 2 * z_dim)
        self.head_w = nn.Sequential(nn.Linear(feat + n_labels, w_hidden), nn.ELU(),
                                    nn.Linear(w_hidden, 2 * n_labels * w_dim))
        self.decoder = make_decoder(self.data_shape, z_dim + n_labels * w_dim, hidden, width)
        self.adversary = Adversary(z_dim, n_labels, adversary_hidden)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(μ_z, log σ²_z) of q(z|x) and (μ_w, log σ²_w) of q(w|x, y)."""
        h = self.features(x)
        mu_z, raw_z = self.head_z(h).chunk(2, dim=1)
        mu_w, raw_w = self.head_w(torch.cat([h, binary_labels(y, self.n_labels, LABELS_FIX)], 1)).chunk(2, dim=1)
        return mu_z, variance_to_logvar(raw_z), mu_w, variance_to_logvar(raw_w)

    def decode(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z, w)."""
        return self.decoder(torch.cat([z, w], 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        mu_z, logvar_z, mu_w, logvar_w = self.encode(x, y)
        z = reparameterize(mu_z, logvar_z) if self.training else mu_z
        w = reparameterize(mu_w, logvar_w) if self.training else mu_w
        return {"mu_z": mu_z, "logvar_z": logvar_z, "mu_w": mu_w, "logvar_w": logvar_w, "z": z, "w": w,
                "x_hat": self.decode(z, w)}

    def subspace(self, i: int) -> slice:
        """The columns of w that make up Wᵢ."""
        if not 0 <= i < self.n_labels:
            raise ValueError(f"the model has {self.n_labels} subspace(s) W0..W{self.n_labels - 1}; no W{i}")
        return slice(i * self.w_dim, (i + 1) * self.w_dim)

    def prior_w(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of p(w|y)."""
        return self.prior.params(binary_labels(y, self.n_labels, LABELS_FIX), self.w_dim)

    @torch.no_grad()
    def transfer(self, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor, sample: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Attribute transfer: keep z and the unchanged wⱼ; set each changed wᵢ to p(wᵢ|yᵢ')'s mean (or a draw)."""
        y, y_new = binary_labels(y, self.n_labels, LABELS_FIX), binary_labels(y_new, self.n_labels, LABELS_FIX)
        mu_z, _, mu_w, _ = self.encode(x, y)
        p_mu, p_logvar = self.prior_w(y_new)
        target = reparameterize(p_mu, p_logvar, generator=generator) if sample else p_mu
        changed = (y != y_new).repeat_interleave(self.w_dim, dim=1)
        return self.decode(mu_z, torch.where(changed, target, mu_w))

    @torch.no_grad()
    def latents(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The posterior means, for probes and plots: {'z': ..., 'w': ...}."""
        mu_z, _, mu_w, _ = self.encode(x, y)
        return {"z": mu_z, "w": mu_w}


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
    opts = {"vae": torch.optim.Adam(model.vae_parameters(), lr=lr)}
    if getattr(model, "adversary", None) is not None:
        opts["adversary"] = torch.optim.Adam(model.adversary.parameters(), lr=adversary_lr or lr)
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


# ----------------------------------------------------------------------------- measuring
def _in_order(tensors: Sequence[torch.Tensor], batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The rows of ``tensors`` in batches, in order (for measuring, not training)."""
    return iterate(tensors, batch_size, shuffle=False)


@torch.no_grad()
def encode_all(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Posterior means of every latent (z, and w for CSVAE) for a whole data set, on the CPU."""
    with model_mode(model, training=False):
        parts = [{k: v.cpu() for k, v in model.latents(xb, yb).items()} for xb, yb in _in_order([x, y], batch_size)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def batched_transfer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor,
                     batch_size: int = 500, **kwargs) -> torch.Tensor:
    """``model.transfer`` over a whole data set in batches (eval mode), on the CPU."""
    with model_mode(model, training=False):
        return torch.cat([model.transfer(xb, yb, nb, **kwargs).cpu()
                          for xb, yb, nb in _in_order([x, y, y_new], batch_size)])


@torch.no_grad()
def reconstruction_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Mean ‖x − x̂‖² per example with posterior means (eval mode)."""
    with model_mode(model, training=False):
        errors = torch.cat([squared_error(xb, model(xb, yb)["x_hat"]) for xb, yb in _in_order([x, y], batch_size)])
    return float(errors.mean())


def majority_rate(y_train: torch.Tensor | np.ndarray, y_test: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per attribute: the test accuracy of always predicting the training set's majority label."""
    ytr, yte = np.asarray(y_train, dtype=float), np.asarray(y_test, dtype=float)
    ytr, yte = ytr.reshape(len(ytr), -1), yte.reshape(len(yte), -1)
    majority = (ytr.mean(0) >= 0.5).astype(float)
    return (yte == majority).mean(0)


def probe_accuracy(train: torch.Tensor | np.ndarray, y_train: torch.Tensor | np.ndarray,
                   test: torch.Tensor | np.ndarray, y_test: torch.Tensor | np.ndarray, kind: str = "linear",
                   seed: int = 0, max_train: int = 3000) -> np.ndarray:
    """Per attribute: test accuracy of a fresh probe (``linear`` logistic regression or ``mlp``) trained on features.

    Used to measure how much label information a latent holds after training, independently of
    the adversary that was trained with it. At most ``max_train`` training rows are used (speed).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    xtr, xte = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    ytr, yte = np.asarray(y_train, dtype=float), np.asarray(y_test, dtype=float)
    ytr, yte = ytr.reshape(len(ytr), -1), yte.reshape(len(yte), -1)
    xtr, ytr = xtr[:max_train], ytr[:max_train]
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    accs = []
    for j in range(ytr.shape[1]):
        if kind == "linear":
            clf = LogisticRegression(max_iter=500)
        elif kind == "mlp":
            clf = MLPClassifier(hidden_layer_sizes=(32, 32), max_iter=200, early_stopping=True, random_state=seed)
        else:
            raise ValueError(f"unknown probe kind {kind!r}; choose 'linear' or 'mlp'")
        if len(np.unique(ytr[:, j])) < 2:
            accs.append(float((yte[:, j] == ytr[0, j]).mean()))
            continue
        clf.fit(xtr, ytr[:, j].astype(int))
        accs.append(float((clf.predict(xte) == yte[:, j].astype(int)).mean()))
    return np.array(accs)


# ----------------------------------------------------------------------------- faces: edits and probes
STYLE_CLASSES = {"glasses": ("square frames", "round frames"), "facial_hair": ("full beard", "goatee", "moustache")}


def hidden_style_classes(attribute: str, factors: torch.Tensor) -> torch.Tensor:
    """The kind of an attribute each face would draw (an int per face), from the faces' hidden styles.

    glasses: 0 square frames (style < 0.5), 1 round; facial hair: 0 full beard (< 0.4), 1 goatee (< 0.7),
    2 moustache. The kind is drawn only on faces that have the attribute (``faces.render_faces``).
    """
    if attribute not in STYLE_CLASSES:
        raise ValueError(f"no hidden style is drawn for {attribute!r}; the faces vary the kind of "
                         f"{' and '.join(STYLE_CLASSES)} only")
    style = faces.hidden_styles(factors)
    if attribute == "glasses":
        return (style[:, 0] >= 0.5).long()
    kind = style[:, 1]
    return (kind >= 0.4).long() + (kind >= 0.7).long()


@torch.no_grad()
def random_transfer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
    """The transfer's random baseline: move each face's latent code by the transfer's own step length along ``u``
    (one direction, or one row per face).

    CVAE / CVAE-info: the transfer moves the decoder's input by ‖y' − y‖ (through y); the baseline moves z
    that far along ``u`` (z_dim numbers) and keeps y. CSVAE: the transfer moves w by ‖w' − μ_w‖; the
    baseline moves (z, w) that far along ``u`` (z_dim + k·w_dim numbers).
    """
    y, y_new = binary_labels(y, model.n_labels, LABELS_FIX), binary_labels(y_new, model.n_labels, LABELS_FIX)
    if isinstance(model, CSVAE):
        mu_z, _, mu_w, _ = model.encode(x, y)
        changed = (y != y_new).repeat_interleave(model.w_dim, dim=1)
        target = torch.where(changed, model.prior_w(y_new)[0], mu_w)
        code = torch.cat([mu_z, mu_w], 1)
        length = (target - mu_w).norm(dim=1, keepdim=True)
    else:
        code = model.encode(x, y)[0]
        length = (y_new - y).norm(dim=1, keepdim=True)
    if u.shape not in ((code.shape[1],), (code.shape[0], code.shape[1])):
        raise ValueError(f"the random direction must have {code.shape[1]} numbers for this model (or one such row "
                         f"per face), got {tuple(u.shape)}")
    moved = code + length * (u / u.norm(dim=-1, keepdim=True)).to(code)
    if isinstance(model, CSVAE):
        return model.decode(moved[:, :model.z_dim], moved[:, model.z_dim:])
    return model.decode(moved, y)


def code_dim(model: nn.Module) -> int:
    """How many numbers :func:`random_transfer` moves: z (CVAE), or z and w (CSVAE)."""
    return model.z_dim + (model.n_labels * model.w_dim if isinstance(model, CSVAE) else 0)


def face_edit_functions(model: nn.Module, attributes: Sequence[str], seed: int = 0,
                        batch_size: int = 500) -> dict[str, Callable]:
    """``reconstruct``, ``edit`` and ``random_edit`` for ``edits.measure_edits(..., pass_labels=True)``.

    The CVAE and the CSVAE encode a face with its labels: measure_edits hands each function the faces'
    rows of every attribute (``labels=``, (N, 3)), and the model's ``attributes`` pick its columns. The
    edit is the model's transfer with one label flipped; the random baseline moves each face's code as
    far along a random direction of its own (drawn from ``seed``).
    """
    attributes = list(attributes)
    if len(attributes) != model.n_labels:
        raise ValueError(f"{len(attributes)} attribute names for a model with {model.n_labels} label(s)")
    columns = [faces.attribute_index(a) for a in attributes]
    gen = torch.Generator().manual_seed(seed)

    def own(labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim != 2 or labels.shape[1] != len(faces.ATTRIBUTES):
            raise ValueError(f"labels= must be the faces' rows of every attribute {faces.ATTRIBUTES}, got shape "
                             f"{tuple(labels.shape)}: call edits.measure_edits(..., pass_labels=True)")
        return labels[:, columns].float()

    def flipped(labels: torch.Tensor, attribute: str, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
        if attribute not in attributes:
            raise ValueError(f"the model was not trained on {attribute!r}; it knows {', '.join(attributes)}")
        if direction not in ("add", "remove"):
            raise ValueError(f"direction must be 'add' or 'remove', got {direction!r}")
        y = own(labels)
        y_new = y.clone()
        y_new[:, attributes.index(attribute)] = 1.0 if direction == "add" else 0.0
        return y, y_new

    def reconstruct(x: torch.Tensor, *, labels: torch.Tensor) -> torch.Tensor:
        y = own(labels)
        return batched_transfer(model, x, y, y, batch_size)

    def edit(x: torch.Tensor, attribute: str, direction: str, *, labels: torch.Tensor) -> torch.Tensor:
        y, y_new = flipped(labels, attribute, direction)
        return batched_transfer(model, x, y, y_new, batch_size)

    def random_edit(x: torch.Tensor, attribute: str, direction: str, *, labels: torch.Tensor) -> torch.Tensor:
        y, y_new = flipped(labels, attribute, direction)
        u = torch.randn(x.shape[0], code_dim(model), generator=gen).to(x.device)
        with model_mode(model, training=False):
            return torch.cat([random_transfer(model, xb, yb, nb, ub).cpu()
                              for xb, yb, nb, ub in _in_order([x, y, y_new, u], batch_size)])

    return {"reconstruct": reconstruct, "edit": edit, "random_edit": random_edit}


def style_probe(model: nn.Module, model_name: str, attributes: Sequence[str], train: tuple[torch.Tensor, ...],
                test: tuple[torch.Tensor, ...], seed: int = 0, kind: str = "mlp") -> list[dict]:
    """Rows ``{model, attribute, source, accuracy, chance}``: the kind of glasses / beard read from wᵢ and from z.

    ``train`` and ``test`` are (images, labels (N, k) in the model's order, factors (N, 12)). Only faces
    *with* the attribute count (the kind is drawn only on them); the probe is fitted on the training
    faces' posterior means and scored on the test faces'; ``chance`` is the test accuracy of always
    guessing the commonest kind of the training faces. Sources: ``w`` (the attribute's subspace, CSVAE
    only) and ``z``.
    """
    attributes = list(attributes)
    lat = {}
    for split, (x, y, f) in (("train", train), ("test", test)):
        if not x.shape[0] == y.shape[0] == f.shape[0]:
            raise ValueError(f"{split}: {x.shape[0]} faces, {y.shape[0]} label rows and {f.shape[0]} factor rows: "
                             "pass the images, labels and factors of the same faces")
        lat[split] = encode_all(model, x, y)
    rows = []
    for i, a in enumerate(attributes):
        if a not in STYLE_CLASSES:
            continue
        has = {s: (d[1][:, i] > 0.5) for s, d in (("train", train), ("test", test))}
        kinds = {s: hidden_style_classes(a, d[2])[has[s]].numpy() for s, d in (("train", train), ("test", test))}
        chance = float((kinds["test"] == np.bincount(kinds["train"]).argmax()).mean())
        sources = {"z": lambda L: L["z"]}
        if "w" in lat["train"]:
            sources = {"w": lambda L, i=i: L["w"][:, model.subspace(i)], **sources}
        for src, pick in sources.items():
            acc = probe_accuracy(pick(lat["train"])[has["train"]], kinds["train"], pick(lat["test"])[has["test"]],
                                 kinds["test"], kind=kind, seed=seed)[0]
            rows.append({"model": model_name, "attribute": a, "source": src, "accuracy": float(acc), "chance": chance})
    return rows


# ----------------------------------------------------------------------------- the toy
def swiss_roll(n: int, noise: float = 0.3, seed: int = 0, threshold: float = 10.5
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """sklearn's 3-D swiss roll, standardised, labelled y = [height > threshold].

    Returns (x N×3 float32, y N×1 0/1, t N the roll position, {'mean', 'std'} to undo the scaling).
    The height (the roll's 2nd coordinate, uniform in [0, 21]) is the labelled factor; the roll
    position t is the unlabelled factor z should keep.
    """
    from sklearn.datasets import make_swiss_roll

    pts, t = make_swiss_roll(n, noise=noise, random_state=seed)
    y = (pts[:, 1] > threshold).astype(np.float32)[:, None]
    mean, std = pts.mean(0), pts.std(0)
    x = ((pts - mean) / std).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(t.astype(np.float32)), {"mean": mean, "std": std}


def roll_coordinates(x: torch.Tensor | np.ndarray, scaling: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(height, radius) of standardised swiss-roll points: the labelled factor and the roll position (radius ≈ t)."""
    pts = np.asarray(x, dtype=np.float64) * scaling["std"] + scaling["mean"]
    return pts[:, 1], np.hypot(pts[:, 0], pts[:, 2])


# ----------------------------------------------------------------------------- the W pad
def _subspace_names(model: CSVAE, attributes: Sequence[str] | None) -> list[str]:
    names = list(attributes) if attributes is not None else [f"y{i}" for i in range(model.n_labels)]
    if len(names) != model.n_labels:
        raise ValueError(f"{len(names)} attribute names for a CSVAE with {model.n_labels} subspace(s)")
    return names


@torch.no_grad()
def face_latents(model: CSVAE, x: torch.Tensor, y: torch.Tensor, face: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ_z, μ_w) of one face, each 1 × size, on the model's device (eval mode)."""
    if not 0 <= face < len(x):
        raise ValueError(f"face {face} is not one of the {len(x)} images given")
    device = next(model.parameters()).device
    with model_mode(model, training=False):
        mu_z, _, mu_w, _ = model.encode(x[face:face + 1].to(device), y[face:face + 1].to(device))
    return mu_z, mu_w


def w_widget(model: CSVAE, x: torch.Tensor, y: torch.Tensor, attributes: Sequence[str] | None = None, *,
             face: int = 0, lim: tuple[float, float] = (-2.0, 6.0), step: float = 0.1, scale: int = 6,
             title: str | None = None) -> LiveImage:
    """A pad per attribute subspace: move wᵢ of one face while z and the other subspaces stay fixed.

    One FloatSlider per coordinate of each Wᵢ, named (and labelled) ``"{attribute}[{d}]"``, starting
    at the face's posterior mean μ_w and spanning ``lim`` (the no-attribute prior is centred at 0,
    the attribute prior at 3 in every coordinate). The picture decodes p(x | z = μ_z, w). The model
    is put in eval mode, as a trained model predicts.
    """
    names = _subspace_names(model, attributes)
    model.eval()
    mu_z, mu_w = face_latents(model, x, y, face)
    columns = {f"{a}[{d}]": i * model.w_dim + d for i, a in enumerate(names) for d in range(model.w_dim)}
    controls = {name: W.FloatSlider(value=float(mu_w[0, k]), min=lim[0], max=lim[1], step=step, description=name,
                                    continuous_update=True, readout_format="+.2f")
                for name, k in columns.items()}

    def render(**values: float) -> torch.Tensor:
        w = mu_w.clone()
        for name, k in columns.items():
            w[0, k] = float(values[name])
        return model.decode(mu_z, w).cpu()

    title = title if title is not None else "CSVAE: move " + " and ".join(f"w_{a}" for a in names)
    return LiveImage(render, controls, scale=scale, title=title)


@torch.no_grad()
def w_planes_figure(model: CSVAE, x: torch.Tensor, y: torch.Tensor, attributes: Sequence[str] | None = None, *,
                    face: int = 0, values: Sequence[float] = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)):
    """The static counterpart of :func:`w_widget` (2-D subspaces): per attribute, one face decoded over a grid
    of its W plane (first coordinate left to right, second bottom to top), z and the other subspaces fixed.
    The default grid holds the prior means (0, 0) and (3, 3); the ticks give the w value under each image."""
    import matplotlib.pyplot as plt

    from .plots import show_images

    if model.w_dim != 2:
        raise ValueError(f"a plane per subspace needs w_dim = 2, this CSVAE has w_dim = {model.w_dim}")
    names = _subspace_names(model, attributes)
    model.eval()
    mu_z, mu_w = face_latents(model, x, y, face)
    values = [float(v) for v in values]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for i, (ax, a) in enumerate(zip(axes[0], names)):
        w = mu_w.repeat(len(values) ** 2, 1)
        w[:, model.subspace(i)] = torch.tensor([[v0, v1] for v1 in values[::-1] for v0 in values], device=w.device)
        imgs = model.decode(mu_z.expand(len(w), -1), w).cpu()
        show_images(imgs, nrow=len(values), ax=ax)
        ax.set_axis_on()
        h, wd = imgs.shape[-2], imgs.shape[-1]  # tile() pads 1 pixel around each image
        ax.set_xticks([1 + k * (wd + 1) + (wd - 1) / 2 for k in range(len(values))], [f"{v:g}" for v in values])
        ax.set_yticks([1 + r * (h + 1) + (h - 1) / 2 for r in range(len(values))], [f"{v:g}" for v in values[::-1]])
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"w_{a}[0]")
        ax.set_ylabel(f"w_{a}[1]")
        ax.set_title(f"test face {face}: decoded over the W plane of {a}, z fixed", fontsize=9)
    fig.tight_layout()
    return fig
