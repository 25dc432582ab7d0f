"""The CCVAE model: encoder, decoder, the conditional prior p(z_c|y), the classifier q(y|z_c) and p(y), for both
label kinds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batching import batched_apply
from ..face_vae import FaceDecoder, FaceEncoder, GaussianLikelihood, check_c
from ..losses import (
    bernoulli_entropy,
    bernoulli_nll,
    categorical_entropy,
)
from ..nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from ..train import model_mode

LABEL_KINDS = ("categorical", "binary")
NET_KINDS = ("mlp", "conv", "face")


def _nets(image_shape: Sequence[int], latent_dim: int, kind: str, hidden: Sequence[int],
          channels: Sequence[int], width: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and logit decoder: the course's MLPs or convs, or the faces backbone (``vaecourse.face_vae``)."""
    if kind == "mlp":
        return (MLPEncoder(image_shape, latent_dim, hidden),
                MLPDecoder(image_shape, latent_dim, tuple(hidden)[::-1], logits=True))
    if kind == "conv":
        return (ConvEncoder(image_shape, latent_dim, channels),
                ConvDecoder(image_shape, latent_dim, channels, logits=True))
    if kind == "face":
        if len(image_shape) != 3 or image_shape[0] != 3 or image_shape[1] != image_shape[2]:
            raise ValueError(f"the faces backbone takes square RGB faces (3, size, size), got {tuple(image_shape)}; "
                             "use kind='mlp' or 'conv' for other images")
        size = image_shape[-1]
        return FaceEncoder(size, latent_dim, width), FaceDecoder(size, latent_dim, width, logits=True)
    raise ValueError(f"unknown net kind {kind!r}; choose one of {', '.join(NET_KINDS)}")


class CCVAE(nn.Module):
    """Encoder to (z_c, z_\\c), logit decoder, conditional prior p(z_c|y), classifier q(y|z_c), prior p(y).

    ``n_labels`` is the number of classes (categorical) or of attributes (binary; then ``c_dim``
    must equal it: one characteristic dimension per attribute). The first ``c_dim`` latent
    coordinates are z_c, the remaining ``s_dim`` are the style z_\\c.

    ``kind="face"`` builds the faces backbone (``FaceEncoder``/``FaceDecoder`` of ``width`` channels).
    ``likelihood`` is "bernoulli" (pixels as probabilities, Benyahia et al. on MNIST) or a Gaussian decoder
    variance c as ``face_vae.GaussianLikelihood`` takes it: "optimal" (the σ-VAE's calibrated c, lesson 03),
    "learned", or a fixed number.
    """

    def __init__(self, image_shape: Sequence[int], n_labels: int, c_dim: int, s_dim: int, *,
                 labels: str = "categorical", kind: str = "mlp", hidden: Sequence[int] = (512, 256),
                 channels: Sequence[int] = (32, 64, 64), width: int = 32, likelihood: str | float = "bernoulli"):
        super().__init__()
        if labels not in LABEL_KINDS:
            raise ValueError(f"unknown label kind {labels!r}; choose 'categorical' (one K-class label) or "
                             "'binary' (several 0/1 attributes)")
        if n_labels < (2 if labels == "categorical" else 1):
            raise ValueError(f"n_labels must be at least 2 classes (categorical) or 1 attribute (binary), "
                             f"got {n_labels}")
        if c_dim < 1 or s_dim < 0:
            raise ValueError(f"need c_dim >= 1 and s_dim >= 0, got c_dim={c_dim}, s_dim={s_dim}")
        if labels == "binary" and c_dim != n_labels:
            raise ValueError(f"the binary (paper's) form has one z_c dimension per attribute: pass c_dim={n_labels}")
        self.image_shape = tuple(image_shape)
        self.labels, self.n_labels, self.c_dim, self.s_dim = labels, n_labels, c_dim, s_dim
        self.latent_dim = c_dim + s_dim
        self.kind = kind
        self.encoder, self.decoder = _nets(image_shape, self.latent_dim, kind, hidden, channels, width)
        self.likelihood = None if likelihood == "bernoulli" else GaussianLikelihood(check_c(likelihood))
        if labels == "categorical":
            # one Gaussian per class over all of z_c; means spread at random so the classes start apart
            self.prior_mu = nn.Parameter(torch.randn(n_labels, c_dim))
            self.prior_logvar = nn.Parameter(torch.zeros(n_labels, c_dim))
            self.classifier: nn.Module | None = nn.Linear(c_dim, n_labels)
            self.register_buffer("log_py", torch.full((n_labels,), -math.log(n_labels)))
        else:
            # column 0: y_i = 0, column 1: y_i = 1; start at -1 / +1 so the attribute has a direction
            self.prior_mu = nn.Parameter(torch.tensor([-1.0, 1.0]).repeat(n_labels, 1))
            self.prior_logvar = nn.Parameter(torch.zeros(n_labels, 2))
            self.classifier = None
            self.clf_weight = nn.Parameter(torch.ones(n_labels))
            self.clf_bias = nn.Parameter(torch.zeros(n_labels))
            self.register_buffer("log_py", torch.full((n_labels,), math.log(0.5)))  # log p(y_i = 1)

    # ------------------------------------------------------------------ pieces
    def set_label_prior(self, y: torch.Tensor) -> None:
        """Estimate p(y) from the labelled data: class frequencies, or each attribute's rate."""
        y = self.check_labels(y)
        if self.labels == "categorical":
            counts = torch.bincount(y.cpu(), minlength=self.n_labels).float() + 1.0
            self.log_py.copy_((counts / counts.sum()).log())
        else:
            rate = (y.float().cpu().sum(0) + 1.0) / (y.shape[0] + 2.0)
            self.log_py.copy_(rate.log())

    def check_labels(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as this model needs it, or a ValueError saying what shape was expected."""
        if self.labels == "categorical":
            if y.dim() != 1 or y.dtype.is_floating_point:
                raise ValueError(f"categorical labels are class indices of shape (N,) and an integer dtype, "
                                 f"got {tuple(y.shape)} {y.dtype}")
            return y
        if y.dim() != 2 or y.shape[1] != self.n_labels:
            raise ValueError(f"binary labels are (N, {self.n_labels}) 0/1 attributes, got {tuple(y.shape)}")
        return y.float()

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_c, z_\\c) from a full latent."""
        return z[:, :self.c_dim], z[:, self.c_dim:]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x) over the whole latent (z_c first)."""
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruction_nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) in nats per image: Bernoulli on the logits, or Gaussian around the pixel means."""
        logits = self.decoder(z)
        if self.likelihood is None:
            return bernoulli_nll(x, logits)
        return self.likelihood(x, torch.sigmoid(logits))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] for latents z (N × (c_dim + s_dim))."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the decoder takes latents of shape N×{self.latent_dim} (z_c then z_\\c), "
                             f"got {tuple(z.shape)}")
        return torch.sigmoid(self.decoder(z))

    def cond_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(z_c|y) for each row of ``y`` (N × c_dim each)."""
        y = self.check_labels(y)
        if self.labels == "categorical":
            return self.prior_mu[y], self.prior_logvar[y]
        mu = torch.where(y > 0.5, self.prior_mu[:, 1], self.prior_mu[:, 0])
        lv = torch.where(y > 0.5, self.prior_logvar[:, 1], self.prior_logvar[:, 0])
        return mu, lv

    def logits(self, zc: torch.Tensor) -> torch.Tensor:
        """Classifier logits from z_c: K class logits, or one logit per attribute (diagonal)."""
        if self.labels == "categorical":
            return self.classifier(zc)
        return zc * self.clf_weight + self.clf_bias

    def log_qy(self, zc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|z_c) per example (for binary labels: Σᵢ log q(yᵢ|z_cᵢ))."""
        lg = self.logits(zc)
        if self.labels == "categorical":
            return -F.cross_entropy(lg, y, reduction="none")
        return -bernoulli_nll(y.float(), lg)

    def label_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """H(q(y|z_c)) in nats per example from the classifier's logits (summed over attributes when binary)."""
        return categorical_entropy(logits) if self.labels == "categorical" else bernoulli_entropy(logits)

    def log_prior_y(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) per example."""
        if self.labels == "categorical":
            return self.log_py[y]
        log_p1, log_p0 = self.log_py, torch.log1p(-self.log_py.exp())
        return (y * log_p1 + (1 - y) * log_p0).sum(1)

    def mixture_components(self, zc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(z_c|y) and log p(y) for every value of y, shaped to be added: the mixture prior's components.

        Categorical: (N × K, K), one Gaussian over all of z_c per class. Binary: (N × A × 2, A × 2),
        the density of z_cᵢ given yᵢ = 0 and given yᵢ = 1 (last axis), since everything factorises
        per attribute. ``log_marginal_prior_c`` sums them out; the paper's unlabelled bound weighs them.
        """
        lv, mu = self.prior_logvar.unsqueeze(0), self.prior_mu.unsqueeze(0)
        if self.labels == "categorical":
            log_p_zc = -0.5 * (math.log(2 * math.pi) + lv + (zc.unsqueeze(1) - mu).pow(2) / lv.exp()).sum(-1)
            return log_p_zc, self.log_py
        log_p_zc = -0.5 * (math.log(2 * math.pi) + lv + (zc.unsqueeze(-1) - mu).pow(2) / lv.exp())
        return log_p_zc, torch.stack([torch.log1p(-self.log_py.exp()), self.log_py], dim=-1)

    def log_marginal_prior_c(self, zc: torch.Tensor) -> torch.Tensor:
        """log p(z_c) = log Σ_y p(z_c|y) p(y): the mixture prior that unlabelled data see."""
        log_p_zc, log_py = self.mixture_components(zc)
        log_p = torch.logsumexp(log_p_zc + log_py, dim=-1)
        return log_p if self.labels == "categorical" else log_p.sum(1)  # binary: Σ over attributes

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Labels from q(y|z_c) at the posterior mean of z_c: class indices, or 0/1 attributes."""
        def one(xb: torch.Tensor) -> torch.Tensor:
            lg = self.logits(self.split(self.encode(xb)[0])[0])
            return lg.argmax(1) if self.labels == "categorical" else (lg > 0).float()

        with model_mode(self, training=False):
            return batched_apply(one, x, batch_size)

    @torch.no_grad()
    def sample_conditional(self, y: torch.Tensor, generator: torch.Generator | None = None,
                           style: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Images for labels ``y``: z_c ~ p(z_c|y), z_\\c ~ N(0, I) (or the given ``style``), decoded."""
        mu, lv = self.cond_prior(y)
        dev = mu.device
        zc = mu + temperature * (0.5 * lv).exp() * torch.randn(mu.shape, generator=generator).to(dev)
        if style is None:
            style = temperature * torch.randn(mu.shape[0], self.s_dim, generator=generator).to(dev)
        return self.decode(torch.cat([zc, style.to(dev).expand(mu.shape[0], -1)], 1))

    @torch.no_grad()
    def swap(self, x_style: torch.Tensor, x_char: torch.Tensor) -> torch.Tensor:
        """Characteristic swap: z_c of ``x_char`` with z_\\c of ``x_style`` (posterior means), decoded."""
        zs = self.split(self.encode(x_style)[0])[1]
        zc = self.split(self.encode(x_char)[0])[0]
        return self.decode(torch.cat([zc, zs], 1))
