"""The VAC (a VAE with a linear latent classifier, Maggipinto et al. 2020) for faces, and its loss weights: the
paper's betas and the calibrated ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..face_vae import FaceDecoder, FaceEncoder, GaussianLikelihood
from ..losses import reparameterize

Terms = dict[str, torch.Tensor]
LABELS_FIX = "build the VAC with n_attributes matching the data set's classes"  # the advice a wrong label shape gets


@dataclass(frozen=True)
class Betas:
    """Weights of IntroVAC's terms: reconstruction, classification, KL, decoder's and encoder's adversarial."""

    ae: float = 100.0
    cl: float = 10.0
    reg: float = 3.0
    g: float = 5.0
    ec: float = 0.01

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.__dict__.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"the betas must be finite and non-negative, got {bad}")


PAPER_BETAS = Betas()  # Maggipinto et al. 2020, section 4.1 (CelebA)


@dataclass(frozen=True)
class Calibrated:
    """Weights of the calibrated objective, in nats per image next to a Gaussian likelihood and a KL of weight 1.

    The reconstruction term is −log N(x; G(z), c·I) with the σ-VAE's calibrated c (the batch's squared
    error per pixel), the KL has weight ``kl`` (1: the ELBO); ``cl`` weighs the classifier's BCE summed
    over its columns (−log p_w(y|z) in nats when ``cl`` = 1), ``g`` the decoder's adversarial terms
    and ``ec`` the encoder's (both batch means of BCEs, as in Algorithm 1). :func:`calibrated_weights`
    derives them from the paper's β's.
    """

    cl: float
    g: float
    ec: float
    kl: float = 1.0

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.__dict__.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"the weights must be finite and non-negative, got {bad}")

    def scaled(self, factor: float) -> Calibrated:
        """The same objective at a decoder variance ``factor`` times larger: every weight times ``factor``.

        −log N(x; x̂, k·c) is −log N(x; x̂, c)/k plus a constant, so multiplying the KL, classifier and
        adversarial weights by k trains the model as a Gaussian decoder of variance k·c (up to an overall
        scale that Adam ignores): lesson 03's β = k in another form. The paper balanced its β's against a
        Laplace decoder far wider than the calibrated c; the factor gives the other terms back part of
        the weight that calibrating took from them.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be a positive number, got {factor}")
        return Calibrated(cl=self.cl * factor, g=self.g * factor, ec=self.ec * factor, kl=self.kl * factor)


Weights = Betas | Calibrated


def calibrated_weights(latent_dim: int, n_attributes: int, betas: Betas = PAPER_BETAS, *, game: float = 1.0,
                       ec: float | None = None) -> Calibrated:
    """The paper's β's as weights next to the ELBO's KL of weight 1, with the reconstruction term calibrated.

    The paper weighs a KL *per latent dimension* by β_reg: one nat of KL costs β_reg/d. Dividing every
    β by that keeps each term's weight relative to the KL as the paper sets it: the classifier's BCE
    (a mean over ``n_attributes`` columns in the paper, a sum here) gets β_CL·d/(β_reg·A), the
    adversarial terms β_G·d/β_reg and β_E,C·d/β_reg. Only the reconstruction term changes: the paper's
    β_AE on a per-pixel L1 is a Laplace decoder far wider than the error (a blur); here it is the
    calibrated Gaussian. ``game`` multiplies both adversarial weights (``ec`` overrides the encoder's:
    ``ec=0`` is the ablation in which the encoder never learns to call a generated image fake).
    """
    if latent_dim < 1 or n_attributes < 1:
        raise ValueError(f"need latent_dim ≥ 1 and n_attributes ≥ 1, got {latent_dim} and {n_attributes}")
    if not (game >= 0 and math.isfinite(game)):
        raise ValueError(f"game must be a finite non-negative multiplier, got {game}")
    per_kl = betas.reg / latent_dim
    return Calibrated(cl=betas.cl / n_attributes / per_kl, g=game * betas.g / per_kl,
                      ec=game * betas.ec / per_kl if ec is None else ec)


def laplace_scale(betas: Betas, image_numel: int, latent_dim: int) -> float:
    """The scale b of the Laplace decoder that the paper's β_AE (per-pixel L1) and β_reg (per-dimension KL) stand for.

    β_AE·mean|x − x̂| + β_reg·KL/d = (β_reg/d)·(Σ|x − x̂|/b + KL) with b = β_reg·D/(β_AE·d): a
    Laplace likelihood of scale b, in pixel units (pixels in [0, 1]), against a KL of weight 1.
    """
    if betas.ae <= 0 or betas.reg <= 0:
        raise ValueError("β_AE and β_reg must be positive for the reconstruction term to be a likelihood")
    return betas.reg * image_numel / (betas.ae * latent_dim)


@dataclass
class VACOutput:
    """One forward pass: posterior parameters, the latent used, the reconstruction, the class logits."""

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    x_hat: torch.Tensor
    logits: torch.Tensor


class VAC(nn.Module):
    """Encoder + decoder + a linear classifier on z with one logit per attribute (plus a fake logit for IntroVAC)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, n_attributes: int, fake_logit: bool = False,
                 attribute_names: Sequence[str] | None = None):
        super().__init__()
        if n_attributes < 1:
            raise ValueError(f"a VAC needs at least one attribute to classify, got n_attributes={n_attributes}")
        if encoder.latent_dim != decoder.latent_dim:
            raise ValueError(f"encoder latent {encoder.latent_dim} ≠ decoder latent {decoder.latent_dim}")
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = encoder.latent_dim
        self.image_shape = encoder.image_shape
        self.n_attributes = n_attributes
        self.fake_logit = fake_logit
        self.classifier = nn.Linear(self.latent_dim, n_attributes + int(fake_logit))
        names = list(attribute_names) if attribute_names is not None else [f"a{i}" for i in range(n_attributes)]
        if len(names) != n_attributes:
            raise ValueError(f"{len(names)} attribute names for {n_attributes} attributes")
        self.attribute_names = names
        self.likelihood = GaussianLikelihood("optimal")  # used by the calibrated objective (Calibrated weights)

    # -- the three nets
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def class_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The attribute logits wₐ·z + bₐ (N × attributes), without the fake logit."""
        return self.classifier(z)[:, :self.n_attributes]

    def forward(self, x: torch.Tensor) -> VACOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if self.training else mu
        return VACOutput(mu, logvar, z, self.decoder(z), self.class_logits(z))

    # -- what the linear classifier gives
    def directions(self) -> torch.Tensor:
        """Unit normals wₐ/‖wₐ‖ of the attribute hyperplanes (attributes × latent_dim), detached."""
        w = self.classifier.weight[:self.n_attributes].detach()
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def attribute_index(self, attribute: str | int) -> int:
        if isinstance(attribute, int):
            if not 0 <= attribute < self.n_attributes:
                raise ValueError(f"attribute index {attribute} outside 0..{self.n_attributes - 1}")
            return attribute
        if attribute not in self.attribute_names:
            raise ValueError(f"no attribute {attribute!r}; this model has {', '.join(self.attribute_names)}")
        return self.attribute_names.index(attribute)

    def edit_latent(self, z: torch.Tensor, deltas: dict[str | int, float] | torch.Tensor) -> torch.Tensor:
        """z + Σₐ δₐ·wₐ/‖wₐ‖: δ > 0 adds attribute a, δ < 0 removes it (Maggipinto et al. 2020, section 4.2)."""
        u = self.directions().to(z.device, z.dtype)
        if isinstance(deltas, dict):
            d = torch.zeros(self.n_attributes, device=z.device, dtype=z.dtype)
            for k, v in deltas.items():
                d[self.attribute_index(k)] = float(v)
        else:
            d = torch.as_tensor(deltas, device=z.device, dtype=z.dtype)
            if d.shape[-1] != self.n_attributes:
                raise ValueError(f"deltas need one entry per attribute ({self.n_attributes}), "
                                 f"got shape {tuple(d.shape)}")
        return z + d @ u

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean (the middle image of the paper's triplets)."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I)."""
        device = self.classifier.weight.device
        return self.decoder(torch.randn(n, self.latent_dim, generator=generator).to(device))

    def introspective_copy(self) -> "VAC":
        """A copy with the extra fake logit (zero-initialised) for IntroVAC, the nets and attribute rows kept.

        IntroVAC can start from a trained VAC (the authors' code has such a VAC pre-training phase).
        """
        import copy

        other = copy.deepcopy(self)
        if self.fake_logit:
            return other
        old = other.classifier
        other.classifier = nn.Linear(self.latent_dim, self.n_attributes + 1).to(old.weight.device)
        with torch.no_grad():
            other.classifier.weight.zero_()
            other.classifier.bias.zero_()
            other.classifier.weight[:self.n_attributes] = old.weight
            other.classifier.bias[:self.n_attributes] = old.bias
        other.fake_logit = True
        return other


def face_vac(attribute_names: Sequence[str], size: int = 32, latent_dim: int = 32, width: int = 32,
             fake_logit: bool = False) -> VAC:
    """A VAC on the faces backbone (``face_vae.FaceEncoder`` / ``FaceDecoder``, no BatchNorm), a logit per attribute."""
    names = list(attribute_names)
    if not names or isinstance(attribute_names, str):
        raise ValueError("give the attributes as a list of names, e.g. face_vac(['glasses', 'facial_hair'])")
    return VAC(FaceEncoder(size, latent_dim, width), FaceDecoder(size, latent_dim, width), len(names),
               fake_logit=fake_logit, attribute_names=names)
