"""The CCVAE model: encoder, decoder, the conditional prior p(z_c|y), the classifier q(y|z_c) and p(y).

Two label kinds, two models sharing one base: ``CategoricalCCVAE`` (one K-class label, Benyahia et al. on
MNIST: a Gaussian per class over all of z_c, a softmax classifier) and ``BinaryCCVAE`` (several 0/1
attributes, the paper's form on faces: one z_c dimension per attribute, a Gaussian per value, a logistic
classifier on that dimension alone). ``CCVAE(..., labels="categorical" | "binary")`` builds the right one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batching import batched_apply
from ..face_vae import GaussianLikelihood, check_c
from ..losses import (
    bernoulli_entropy,
    bernoulli_nll,
    categorical_entropy,
)
from ..nets import build_decoder, build_encoder
from ..train import model_mode

LABEL_KINDS = ("categorical", "binary")


class CCVAE(nn.Module):
    """Encoder to (z_c, z_\\c), logit decoder, conditional prior p(z_c|y), classifier q(y|z_c), prior p(y).

    ``CCVAE(image_shape, n_labels, c_dim, s_dim, labels=...)`` returns a :class:`CategoricalCCVAE`
    (``labels="categorical"``: ``n_labels`` classes) or a :class:`BinaryCCVAE` (``"binary"``: ``n_labels``
    attributes, and ``c_dim`` must equal it: one characteristic dimension per attribute). This base
    holds what both share: the nets, the likelihood, the split of z (the first ``c_dim`` coordinates
    are z_c, the remaining ``s_dim`` the style z_\\c), decoding, the mixture prior and what is built on it.

    ``kind="face"`` builds the faces backbone (``FaceEncoder``/``FaceDecoder`` of ``width`` channels).
    ``likelihood`` is "bernoulli" (pixels as probabilities, Benyahia et al. on MNIST) or a Gaussian decoder
    variance c as ``face_vae.GaussianLikelihood`` takes it: "optimal" (the σ-VAE's calibrated c, lesson 03),
    "learned", or a fixed number.
    """

    labels = ""  # "categorical" or "binary": set by each subclass

    def __new__(cls, *args, labels: str = "categorical", **kwargs):
        if cls is CCVAE:  # the base builds the model of the asked label kind
            if labels not in LABEL_KINDS:
                raise ValueError(f"unknown label kind {labels!r}; choose 'categorical' (one K-class label) or "
                                 "'binary' (several 0/1 attributes)")
            cls = CategoricalCCVAE if labels == "categorical" else BinaryCCVAE
        return super().__new__(cls)

    def __init__(self, image_shape: Sequence[int], n_labels: int, c_dim: int, s_dim: int, *,
                 labels: str | None = None, kind: str = "mlp", hidden: Sequence[int] = (512, 256),
                 channels: Sequence[int] = (32, 64, 64), width: int = 32, likelihood: str | float = "bernoulli"):
        super().__init__()
        if labels is not None and labels != self.labels:
            raise ValueError(f"{type(self).__name__} has {self.labels} labels, not {labels!r}: "
                             f"build CCVAE(..., labels={labels!r})")
        if c_dim < 1 or s_dim < 0:
            raise ValueError(f"need c_dim >= 1 and s_dim >= 0, got c_dim={c_dim}, s_dim={s_dim}")
        self.image_shape = tuple(image_shape)
        self.n_labels, self.c_dim, self.s_dim = n_labels, c_dim, s_dim
        self.latent_dim = c_dim + s_dim
        self.kind = kind
        nets = {"hidden": hidden, "channels": channels, "width": width}
        self.encoder = build_encoder(image_shape, self.latent_dim, kind, **nets)
        self.decoder = build_decoder(image_shape, self.latent_dim, kind, logits=True, **nets)
        self.likelihood = None if likelihood == "bernoulli" else GaussianLikelihood(check_c(likelihood))
        self._build_label_parts()

    def _build_label_parts(self) -> None:
        """The conditional prior's parameters, the classifier and p(y). Each label kind builds its own and
        provides the methods that read them: ``set_label_prior``, ``check_labels``, ``cond_prior``, ``logits``,
        ``log_qy``, ``label_entropy``, ``log_prior_y``, ``mixture_components``, ``log_marginal_prior_c``,
        ``label_log_probs`` and ``hard_labels``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared pieces
    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_c, z_\\c) from a full latent."""
        return z[:, :self.c_dim], z[:, self.c_dim:]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x) over the whole latent (z_c first)."""
        return self.encoder(x)

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

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Labels from q(y|z_c) at the posterior mean of z_c: class indices, or 0/1 attributes."""
        def one(xb: torch.Tensor) -> torch.Tensor:
            return self.hard_labels(self.logits(self.split(self.encode(xb)[0])[0]))

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


class CategoricalCCVAE(CCVAE):
    """One K-class label: p(z_c|y) one learned Gaussian per class over all of z_c, q(y|z_c) a softmax layer."""

    labels = "categorical"

    def _build_label_parts(self) -> None:
        if self.n_labels < 2:
            raise ValueError(f"a categorical label needs at least 2 classes, got n_labels={self.n_labels}")
        # one Gaussian per class over all of z_c; means spread at random so the classes start apart
        self.prior_mu = nn.Parameter(torch.randn(self.n_labels, self.c_dim))
        self.prior_logvar = nn.Parameter(torch.zeros(self.n_labels, self.c_dim))
        self.classifier = nn.Linear(self.c_dim, self.n_labels)
        self.register_buffer("log_py", torch.full((self.n_labels,), -math.log(self.n_labels)))

    def set_label_prior(self, y: torch.Tensor) -> None:
        """Estimate p(y) from the labelled data: class frequencies (plus one, so no class has probability 0)."""
        counts = torch.bincount(self.check_labels(y).cpu(), minlength=self.n_labels).float() + 1.0
        self.log_py.copy_((counts / counts.sum()).log())

    def check_labels(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as this model needs it, or a ValueError saying what shape was expected."""
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ValueError(f"categorical labels are class indices of shape (N,) and an integer dtype, "
                             f"got {tuple(y.shape)} {y.dtype}")
        return y

    def cond_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(z_c|y) for each row of ``y`` (N × c_dim each): the class's Gaussian."""
        y = self.check_labels(y)
        return self.prior_mu[y], self.prior_logvar[y]

    def logits(self, zc: torch.Tensor) -> torch.Tensor:
        """The K class logits of q(y|z_c)."""
        return self.classifier(zc)

    def log_qy(self, zc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|z_c) per example."""
        return -F.cross_entropy(self.logits(zc), y, reduction="none")

    def label_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """H(q(y|z_c)) in nats per example from the classifier's logits."""
        return categorical_entropy(logits)

    def log_prior_y(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) per example."""
        return self.log_py[y]

    def mixture_components(self, zc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(z_c|y) for every class y (N × K), log p(y) (K)): the mixture prior's components, to be added."""
        lv, mu = self.prior_logvar.unsqueeze(0), self.prior_mu.unsqueeze(0)
        log_p_zc = -0.5 * (math.log(2 * math.pi) + lv + (zc.unsqueeze(1) - mu).pow(2) / lv.exp()).sum(-1)
        return log_p_zc, self.log_py

    def log_marginal_prior_c(self, zc: torch.Tensor) -> torch.Tensor:
        """log p(z_c) = log Σ_y p(z_c|y) p(y): the mixture prior that unlabelled data see."""
        log_p_zc, log_py = self.mixture_components(zc)
        return torch.logsumexp(log_p_zc + log_py, dim=-1)

    def label_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """log q(y|z_c) for each class (N × K)."""
        return F.log_softmax(logits, 1)

    def hard_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """The most probable class."""
        return logits.argmax(1)


class BinaryCCVAE(CCVAE):
    """Several 0/1 attributes (the paper's form): z_c,i alone carries attribute i, with a Gaussian per value
    p(z_c,i | y_i) and a logistic classifier q(y_i | z_c,i) on that one dimension."""

    labels = "binary"

    def _build_label_parts(self) -> None:
        if self.n_labels < 1:
            raise ValueError(f"binary labels need at least 1 attribute, got n_labels={self.n_labels}")
        if self.c_dim != self.n_labels:
            raise ValueError("the binary (paper's) form has one z_c dimension per attribute: "
                             f"pass c_dim={self.n_labels}")
        # column 0: y_i = 0, column 1: y_i = 1; start at -1 / +1 so the attribute has a direction
        self.prior_mu = nn.Parameter(torch.tensor([-1.0, 1.0]).repeat(self.n_labels, 1))
        self.prior_logvar = nn.Parameter(torch.zeros(self.n_labels, 2))
        self.clf_weight = nn.Parameter(torch.ones(self.n_labels))
        self.clf_bias = nn.Parameter(torch.zeros(self.n_labels))
        self.register_buffer("log_py", torch.full((self.n_labels,), math.log(0.5)))  # log p(y_i = 1)

    def set_label_prior(self, y: torch.Tensor) -> None:
        """Estimate p(y_i = 1) from the labelled data: each attribute's rate (plus-one smoothed)."""
        y = self.check_labels(y)
        rate = (y.float().cpu().sum(0) + 1.0) / (y.shape[0] + 2.0)
        self.log_py.copy_(rate.log())

    def check_labels(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as this model needs it (float), or a ValueError saying what shape was expected."""
        if y.dim() != 2 or y.shape[1] != self.n_labels:
            raise ValueError(f"binary labels are (N, {self.n_labels}) 0/1 attributes, got {tuple(y.shape)}")
        return y.float()

    def cond_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(z_c|y) for each row of ``y`` (N × c_dim each): z_c,i's Gaussian for y_i."""
        y = self.check_labels(y)
        mu = torch.where(y > 0.5, self.prior_mu[:, 1], self.prior_mu[:, 0])
        lv = torch.where(y > 0.5, self.prior_logvar[:, 1], self.prior_logvar[:, 0])
        return mu, lv

    def logits(self, zc: torch.Tensor) -> torch.Tensor:
        """One logit per attribute, each from its own z_c,i (a diagonal classifier)."""
        return zc * self.clf_weight + self.clf_bias

    def log_qy(self, zc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|z_c) = Σᵢ log q(yᵢ|z_c,i) per example."""
        return -bernoulli_nll(y.float(), self.logits(zc))

    def label_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """H(q(y|z_c)) in nats per example, summed over the attributes."""
        return bernoulli_entropy(logits)

    def log_prior_y(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) per example (the attributes independent)."""
        log_p1, log_p0 = self.log_py, torch.log1p(-self.log_py.exp())
        return (y * log_p1 + (1 - y) * log_p0).sum(1)

    def mixture_components(self, zc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(z_c,i|y_i) for y_i = 0 and 1 (N × A × 2), log p(y_i) (A × 2)): everything factorises per attribute."""
        lv, mu = self.prior_logvar.unsqueeze(0), self.prior_mu.unsqueeze(0)
        log_p_zc = -0.5 * (math.log(2 * math.pi) + lv + (zc.unsqueeze(-1) - mu).pow(2) / lv.exp())
        return log_p_zc, torch.stack([torch.log1p(-self.log_py.exp()), self.log_py], dim=-1)

    def log_marginal_prior_c(self, zc: torch.Tensor) -> torch.Tensor:
        """log p(z_c) = Σᵢ log Σ_{y_i} p(z_c,i|y_i) p(y_i): the mixture prior that unlabelled data see."""
        log_p_zc, log_py = self.mixture_components(zc)
        return torch.logsumexp(log_p_zc + log_py, dim=-1).sum(1)

    def label_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """log q(y_i|z_c,i) for y_i = 0 and 1 (N × A × 2)."""
        return torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], -1)

    def hard_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Each attribute present where its logit is positive."""
        return (logits > 0).float()
