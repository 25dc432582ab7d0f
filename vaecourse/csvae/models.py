"""CSVAE's models: the building blocks (MLP, trunk, decoder, adversary), CVAE / CVAE-info, and CSVAE with its per-
attribute subspace prior p(w|y).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..face_vae import FaceEncoder, GaussianLikelihood
from ..faces import SIZES
from ..losses import (
    binary_labels,
    reparameterize,
)
from ..nets import build_decoder, check_images, variance_to_logvar

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
        return build_decoder(shape, latent_dim, "mlp", hidden=hidden, logits=True)
    return build_decoder(shape, latent_dim, "face", width=width)


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
