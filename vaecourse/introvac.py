"""VAC and IntroVAC: a VAE with a linear classifier on its latent, and its introspective game.

Maggipinto, Terzi & Susto 2020, "IntroVAC: Introspective Variational Classifiers for Learning
Interpretable Latent Subspaces", https://arxiv.org/abs/2008.00760.

VAC. A VAE whose latent z also predicts binary attributes through a *linear* classifier
C(z) = σ(Wz + b). Each row wₐ of W is normal to the hyperplane that separates "has attribute a"
from "has not", so moving a code along wₐ/‖wₐ‖ by ±δ adds or removes the attribute
(:meth:`VAC.edit_latent`, :func:`confident_deltas`, :func:`edit_function`), and Langevin dynamics
on U(z) = −log p_w(y|z) − log p(z) draws codes of a chosen class (:func:`langevin_sample`).

IntroVAC. One extra "fake" logit turns encoder + classifier into a discriminator: they learn to
call reconstructions (decoded from detached latents) and prior samples fake, while the decoder
learns to make reconstructions that they call real *and* of the original image's class, and
prior samples that they call real. :func:`introvac_step` is Algorithm 1 of the paper: two
optimiser steps per batch (encoder+classifier, then decoder).

Weights. The paper's β's (:data:`PAPER_BETAS`: β_AE = 100, β_CL = 10, β_reg = 3, β_G = 5,
β_E,C = 0.01) weigh *means*: the L1 error per pixel, the BCE per logit, the KL per latent
dimension. Against a KL of weight 1 that reconstruction term is a Laplace decoder of scale
:func:`laplace_scale` (≈ 3 pixel units at 32 px, latent 32): a blur. :class:`Calibrated` weights
replace it with the σ-VAE's calibrated Gaussian (c = the batch's squared error per pixel) and keep
the other terms' weights relative to the KL as the paper sets them (:func:`calibrated_weights`).
The faces models are built on the course's backbone (:func:`face_vac`: ``face_vae`` nets, no
BatchNorm, so real and generated batches never share batch statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as W
import torch
import torch.nn.functional as F
from torch import nn

from .face_vae import FaceDecoder, FaceEncoder, GaussianLikelihood
from .losses import binary_labels, gaussian_kl, reparameterize
from .train import model_mode
from .widgets import LiveImage

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


def l1_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per pixel, per example: IntroVAC's L_AE (L1 gives sharper images than MSE)."""
    return (x - x_hat).abs().flatten(1).mean(1)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) ‖ N(0, I)) divided by the latent size, per example: the scale β_reg = 3 was set for."""
    return gaussian_kl(mu, logvar) / mu.shape[1]


def with_real_column(y: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Append the fake-logit target (0 = real, 1 = fake) to attribute labels."""
    return torch.cat([y, torch.full_like(y[:, :1], value)], dim=1)


def objective(model: VAC, x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              x_hat: torch.Tensor, logits: torch.Tensor, weights: Weights = PAPER_BETAS) -> Terms:
    """The VAC loss of one batch from its forward pass, under the paper's β's or the calibrated weights.

    ``Betas`` (the paper): β_AE·mean L1 + β_CL·mean BCE + β_reg·KL/d. ``Calibrated``: the Gaussian
    likelihood with the σ-VAE's c + kl·KL + cl·Σ BCE, nats per image. With a fake logit (IntroVAC)
    real images also teach it "real" (target 0): the classifier's extra class must be told what real
    looks like. Returns ``loss`` and, to print, ``l1`` and ``mse`` per pixel, ``bce`` per logit,
    ``kl`` in nats per image, ``acc`` (attributes, threshold 0) and ``c`` (the variance used; for the
    paper's weights the Laplace scale's variance 2b² is not a Gaussian c, so it reports the batch MSE).
    """
    target = with_real_column(y) if model.fake_logit else y
    l1 = l1_error(x, x_hat).mean()
    kl = gaussian_kl(mu, logvar).mean()
    bce_cols = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    mse = (x - x_hat).detach().pow(2).mean()
    if isinstance(weights, Betas):
        loss = weights.ae * l1 + weights.cl * bce_cols.mean() + weights.reg * kl / mu.shape[1]
        c = mse
    elif isinstance(weights, Calibrated):
        nll, c = model.likelihood(x, x_hat)
        loss = nll.mean() + weights.kl * kl + weights.cl * bce_cols.sum(1).mean()
    else:
        raise TypeError(f"weights must be introvac.Betas (the paper's) or introvac.Calibrated, got {type(weights)}")
    acc = ((logits[:, :model.n_attributes] > 0).float() == y).float().mean()
    return {"loss": loss, "l1": l1.detach(), "mse": mse, "bce": bce_cols.mean().detach(), "kl": kl.detach(),
            "acc": acc, "c": c.detach()}


def vac_terms(model: VAC, x: torch.Tensor, y: torch.Tensor, weights: Weights = PAPER_BETAS) -> Terms:
    """VAC's loss on a batch (see :func:`objective`): z ~ q(z|x) in training, μ(x) in eval mode."""
    y = binary_labels(y, model.n_attributes, LABELS_FIX)
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar) if model.training else mu
    return objective(model, x, y, mu, logvar, model.decode(z), model.classifier(z), weights)


def vac_loss(weights: Weights = PAPER_BETAS) -> Callable[[VAC, tuple[torch.Tensor, ...]], Terms]:
    """``loss_fn(model, (x, y))`` for ``vaecourse.fit``: the VAC objective with the paper's or calibrated weights."""

    def loss_fn(model: VAC, batch: tuple[torch.Tensor, ...]) -> Terms:
        if len(batch) < 2:
            raise ValueError("the VAC loss needs (images, attribute labels) batches: fit(model, loss, [x, y])")
        return vac_terms(model, batch[0], batch[1], weights)

    return loss_fn


# ----------------------------------------------------------------------------- IntroVAC
def introvac_optimizers(model: VAC, lr: float = 2e-4, betas: tuple[float, float] = (0.9, 0.999)
                        ) -> dict[str, torch.optim.Optimizer]:
    """Two Adam optimisers: ``"enc_cls"`` for encoder + classifier (Φ, w) and ``"dec"`` for the decoder (θ)."""
    if not model.fake_logit:
        raise ValueError("IntroVAC needs the extra fake logit: build VAC(..., fake_logit=True)")
    return {"enc_cls": torch.optim.Adam([*model.encoder.parameters(), *model.classifier.parameters()], lr=lr,
                                        betas=betas),
            "dec": torch.optim.Adam(model.decoder.parameters(), lr=lr, betas=betas)}


def fake_scores(model: VAC, x: torch.Tensor) -> torch.Tensor:
    """All logits of C(E(x)) at the posterior mean: attributes then the fake logit (N × attributes+1)."""
    return model.classifier(model.encode(x)[0])


def introvac_step(model: VAC, optimizers: dict[str, torch.optim.Optimizer], weights: Weights = PAPER_BETAS,
                  generator: torch.Generator | None = None) -> Callable[[tuple[torch.Tensor, ...]], Terms]:
    """``train_step(batch)`` for ``vaecourse.fit``: one batch of Algorithm 1 (Maggipinto et al. 2020).

    Step 1 (encoder + classifier) minimises the VAC objective (:func:`objective`: reconstruction,
    classification with real images labelled real, KL) + ec·(BCE(fake | E(dt X_rr)) + BCE(fake | E(dt X_g)))
    with X_rr = G(dt Z_r) and X_g = G(Z_g), Z_g ~ N(0, I). Its backward pass also leaves the
    reconstruction's gradient in the decoder's ``.grad``. Step 2 (decoder) adds the gradient of
    g·(BCE([Y, real] | C(E(X_rr))) + BCE(real | C(E(X_g)))), computed by a *fresh* encoder pass
    after step 1 changed the encoder (backpropagating through the old pass would use weights that
    the optimiser overwrote in place), and steps the decoder on the sum.
    """
    opt_ec, opt_dec = optimizers["enc_cls"], optimizers["dec"]
    dec_params = [p for p in model.decoder.parameters() if p.requires_grad]

    def step(batch: tuple[torch.Tensor, ...]) -> Terms:
        x, y = batch[0], binary_labels(batch[1], model.n_attributes, LABELS_FIX)
        opt_ec.zero_grad(set_to_none=True)
        opt_dec.zero_grad(set_to_none=True)
        # ---- step 1: encoder + classifier
        mu, logvar = model.encode(x)
        z_r = reparameterize(mu, logvar)
        x_r = model.decode(z_r)                                     # reconstruction: trains E and G
        x_rr = model.decode(z_r.detach())                           # the decoder's own graph, for step 2
        z_g = torch.randn(z_r.shape, generator=generator).to(x.device)
        x_g = model.decode(z_g)                                     # a prior sample, for step 2
        terms = objective(model, x, y, mu, logvar, x_r, model.classifier(z_r), weights)
        fake_rr = fake_scores(model, x_rr.detach())[:, -1]          # dt: E,C's loss must not reach G
        fake_g = fake_scores(model, x_g.detach())[:, -1]
        ones = torch.ones_like(fake_rr)
        l_ec = F.binary_cross_entropy_with_logits(fake_rr, ones) + F.binary_cross_entropy_with_logits(fake_g, ones)
        loss_ec = terms["loss"] + weights.ec * l_ec
        loss_ec.backward()
        opt_ec.step()
        # ---- step 2: decoder (its .grad already holds the reconstruction term's gradient from step 1)
        real = with_real_column(y)
        s_rr = fake_scores(model, x_rr)                             # fresh pass through the updated E and C
        s_g = fake_scores(model, x_g)[:, -1]
        l_g_r = F.binary_cross_entropy_with_logits(s_rr, real)      # right class and real
        l_g_g = F.binary_cross_entropy_with_logits(s_g, torch.zeros_like(s_g))  # looks real
        loss_g = weights.g * (l_g_r + l_g_g)
        loss_g.backward(inputs=dec_params)                          # only θ collects this gradient
        opt_dec.step()
        with torch.no_grad():
            p_fake_rr = torch.sigmoid(fake_rr).mean()
            p_fake_g = torch.sigmoid(fake_g).mean()
        return {**terms, "loss": loss_ec.detach(), "l_ec": l_ec.detach(), "l_g": (l_g_r + l_g_g).detach(),
                "p_fake_rec": p_fake_rr.detach(), "p_fake_gen": p_fake_g.detach()}

    return step


# ----------------------------------------------------------------------------- edits along the normals, measured
@torch.no_grad()
def confident_deltas(model: VAC, images: torch.Tensor, labels: torch.Tensor, *, confidence: float = 0.9,
                     share: float = 0.9, batch_size: int = 256) -> dict[tuple[str, str], float]:
    """δ per (attribute, "add" | "remove"): the smallest step along wₐ/‖wₐ‖ that makes the latent classifier
    ``confidence`` sure on ``share`` of the validation codes that lack (add) or have (remove) the attribute.

    ``images``/``labels`` are *validation* faces with the model's label columns; the δ's are then used
    unchanged on test faces (``edits.smallest_confident_delta``).
    """
    from .batching import batched_apply
    from .edits import DIRECTIONS, smallest_confident_delta

    y = binary_labels(labels, model.n_attributes, LABELS_FIX)
    if images.shape[0] != y.shape[0]:
        raise ValueError(f"{images.shape[0]} validation faces but {y.shape[0]} label rows: pass the labels of "
                         "the same faces")
    with model_mode(model, training=False):
        mu = batched_apply(lambda b: model.encode(b)[0], images, batch_size)
        units = model.directions()
        out = {}
        for i, name in enumerate(model.attribute_names):
            for direction in DIRECTIONS:
                keep = ((y[:, i] > 0.5) != (direction == "add")).to(mu.device)
                if not bool(keep.any()):
                    raise ValueError(f"no validation face {'without' if direction == 'add' else 'with'} {name!r}: "
                                     "use more validation faces to choose δ")
                out[(name, direction)] = smallest_confident_delta(
                    lambda z, i=i: model.class_logits(z)[:, i], mu[keep], units[i], direction,
                    confidence=confidence, share=share)
    return out


def edit_function(model: VAC, deltas: dict[tuple[str, str], float], random: torch.Generator | None = None
                  ) -> Callable[[torch.Tensor, str, str], torch.Tensor]:
    """``edit(x, attribute, direction)`` for ``edits.measure_edits``: decode μ(x) ± δ·wₐ/‖wₐ‖.

    With ``random`` (a generator) each face moves by the same δ along a random direction of its own
    (``edits.random_latent_step``): the random-direction baseline.
    """
    from .edits import check_delta, latent_step, random_latent_step

    for d in deltas.values():
        check_delta(d)

    def edit(x: torch.Tensor, attribute: str, direction: str) -> torch.Tensor:
        i = model.attribute_index(attribute)
        if (attribute, direction) not in deltas:
            raise ValueError(f"no δ for ({attribute!r}, {direction!r}); choose them with confident_deltas")
        d = deltas[(attribute, direction)]
        step = latent_step(model.directions()[i], d) if random is None else random_latent_step(d, random)
        with torch.no_grad():
            return model.decode(step(model.encode(x)[0], direction))

    return edit


CONFIDENCE_GRID = (0.9, 0.97, 0.99, 0.995, 0.999)  # the latent classifier's confidences tried on validation faces


def confident_move(model: VAC, z: torch.Tensor, attribute: str, direction: str, confidence: float,
                   max_delta: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(moved codes, each face's δ): every code moves along ±wₐ/‖wₐ‖ until the latent classifier is ``confidence`` sure.

    Each face's step is the smallest δ (in 0.25 steps, up to ``max_delta``) that gives the requested
    value ("add": present, "remove": absent) that probability (``edits.confident_steps``).
    """
    from .edits import confident_steps, per_face_step

    grid = tuple(0.25 * k for k in range(1, int(max_delta / 0.25) + 1))
    if not grid:
        raise ValueError(f"max_delta must be at least 0.25, got {max_delta}")
    i = model.attribute_index(attribute)
    u = model.directions()[i]
    deltas = confident_steps(lambda c: model.class_logits(c)[:, i], z, u, direction, confidence=confidence,
                             deltas=grid)
    return per_face_step(u, deltas)(z, direction), deltas


def confident_edit_function(model: VAC, confidence: float | dict[tuple[str, str], float],
                            random: torch.Generator | None = None, max_delta: float = 10.0
                            ) -> Callable[[torch.Tensor, str, str], torch.Tensor]:
    """``edit(x, attribute, direction)``: decode μ(x) moved face by face until the classifier is confident.

    ``confidence`` is one probability for every edit, or one per (attribute, "add" | "remove")
    (:func:`choose_confidences`); see :func:`confident_move`. With ``random`` (a generator) each face
    instead moves as far as its edit would, along a random direction of its own: the random baseline.
    """
    from .edits import DIRECTIONS, random_latent_step

    if not isinstance(confidence, dict):
        confidence = {(a, d): float(confidence) for a in model.attribute_names for d in DIRECTIONS}

    def edit(x: torch.Tensor, attribute: str, direction: str) -> torch.Tensor:
        if (attribute, direction) not in confidence:
            raise ValueError(f"no confidence for ({attribute!r}, {direction!r}); choose them with choose_confidences")
        with torch.no_grad():
            z = model.encode(x)[0]
            moved, deltas = confident_move(model, z, attribute, direction, confidence[(attribute, direction)],
                                           max_delta)
            if random is not None:
                moved = random_latent_step(deltas, random)(z, direction)
            return model.decode(moved)

    return edit


def choose_confidences(model: VAC, oracle, model_name: str, images: torch.Tensor, all_labels: torch.Tensor,
                       factors: torch.Tensor, *, grid: Sequence[float] = CONFIDENCE_GRID
                       ) -> tuple[dict[tuple[str, str], float], list[dict]]:
    """The confidence of :func:`confident_edit_function` per (attribute, direction), chosen on *validation* faces.

    Every confidence of ``grid`` edits the validation faces (``images`` with the labels of every
    attribute, ``all_labels``, and their ``factors``) and the oracle scores them. A larger confidence
    moves faces further, which raises success and, beyond what is needed, leakage; per (attribute,
    direction) the confidence with the largest success − attribute leakage is kept (both are shares of
    the faces; on a tie the smaller confidence). Returns the choice and the sweep's edit rows (each with
    its ``confidence``). The test faces then use the choice unchanged.
    """
    from .batching import batched_apply
    from .edits import DIRECTIONS, measure_edits

    if not grid or not all(0.5 < c < 1 for c in grid):
        raise ValueError(f"grid must hold probabilities between 0.5 and 1, got {list(grid)}")
    with torch.no_grad():
        recon = batched_apply(model.reconstruct, images, 256)  # once, not once per confidence
    sweep = []
    for c in sorted(grid):
        rows = measure_edits(oracle, model_name, model.attribute_names, images, all_labels, factors,
                             reconstruct=recon, edit=confident_edit_function(model, c),
                             ground_truth=False, trained_on=model.attribute_names)
        sweep += [{**r, "confidence": c} for r in rows if r["method"] == "edit"]
    chosen = {}
    for a in model.attribute_names:
        for d in DIRECTIONS:
            mine = [r for r in sweep if (r["attribute"], r["direction"]) == (a, d)]
            best = max(mine, key=lambda r: (round(r["success"] - r["attribute_leakage"], 9), -r["confidence"]))
            chosen[(a, d)] = best["confidence"]
    return chosen, sweep


# ----------------------------------------------------------------------------- Langevin sampling of p(z | y)
@dataclass
class LangevinResult:
    """Latents after the chains ran, which ones the classifier accepts, and the mean energy per step."""

    z: torch.Tensor
    accepted: torch.Tensor
    energy: list[float]

    @property
    def acceptance(self) -> float:
        return float(self.accepted.float().mean())


def energy(model: VAC, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """U(z) = −log p_w(y|z) − log p(z) per chain (up to a constant): BCE over the conditioned attributes + ½‖z‖²."""
    logits = model.class_logits(z)
    nll = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    return (nll * mask).sum(1) + 0.5 * z.pow(2).sum(1)


def langevin_sample(model: VAC, target: dict[str | int, int] | Sequence[float] | torch.Tensor, n: int = 16, *,
                    steps: int = 5000, alpha: float = 2e-4, generator: torch.Generator | None = None,
                    z0: torch.Tensor | None = None) -> LangevinResult:
    """Draw n latents from p(z | y) ∝ p_w(y|z)·p(z) by Langevin dynamics, z ← z − α∇U + √(2α)·ε.

    ``target`` gives y for the attributes to condition on (a dict name→0/1; the others are left
    free), or a full vector. Chains start from the prior (Maggipinto et al. 2020: α = 2·10⁻⁴, 5000 steps,
    several chains, reject the samples the classifier does not put in the class). Each step takes
    the gradient of a fresh leaf with ``torch.autograd.grad``: nothing accumulates in ``.grad``.
    """
    if steps < 0 or alpha <= 0:
        raise ValueError(f"need steps ≥ 0 and a positive step size alpha, got steps={steps}, alpha={alpha}")
    device = model.classifier.weight.device
    y = torch.zeros(model.n_attributes, device=device)
    mask = torch.zeros(model.n_attributes, device=device)
    if isinstance(target, dict):
        for k, v in target.items():
            i = model.attribute_index(k)
            y[i], mask[i] = float(v), 1.0
    else:
        y = torch.as_tensor(target, dtype=torch.float32, device=device).reshape(-1)
        if y.numel() != model.n_attributes:
            raise ValueError(f"target needs one value per attribute ({model.n_attributes}), got {y.numel()}")
        mask = torch.ones_like(y)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(f"target values must be 0 or 1, got {y.tolist()}")
    z = torch.randn(n, model.latent_dim, generator=generator).to(device) if z0 is None else z0.detach().to(device)
    trace = []
    noise_scale = math.sqrt(2 * alpha)
    with model_mode(model, training=False), torch.enable_grad():  # enable_grad: also inside a widget's no_grad render
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            u = energy(model, z, y, mask)
            (grad,) = torch.autograd.grad(u.sum(), z)
            noise = torch.randn(z.shape, generator=generator).to(device)
            z = z.detach() - alpha * grad + noise_scale * noise
            trace.append(u.detach().mean())
    z = z.detach()
    with torch.no_grad():
        pred = (model.class_logits(z) > 0).float()
        accepted = ((pred == y) | (mask == 0)).all(dim=1)
    return LangevinResult(z, accepted, torch.stack(trace).tolist() if trace else [])


# ----------------------------------------------------------------------------- live widgets
def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_attributes(models: dict[str, VAC], attributes: Sequence[str] | None) -> list[str]:
    """The attributes to put on sliders (default: the first model's), each one every model classifies."""
    if not models:
        raise ValueError("give at least one model to edit with: edit_widget({'VAC': vac}, x)")
    names = list(attributes) if attributes is not None else list(next(iter(models.values())).attribute_names)
    for label, m in models.items():
        missing = [a for a in names if a not in m.attribute_names]
        if missing:
            raise ValueError(f"model {label!r} has no attribute {missing[0]!r}; it classifies "
                             f"{', '.join(m.attribute_names)}")
    return names


def first_plain_face(y: torch.Tensor) -> int:
    """Index of the first face with none of the attributes (0 if every face has one)."""
    plain = torch.nonzero((y == 0).all(dim=1))
    return int(plain[0]) if len(plain) else 0


def edit_widget(models: dict[str, VAC], x: torch.Tensor, y: torch.Tensor | None = None, *,
                attributes: Sequence[str] | None = None, face: int | None = None, lim: float = 6.0,
                step: float = 0.25, scale: int = 4, title: str = "original · reconstruction · edit") -> LiveImage:
    """The attribute editor of lesson 06: a test face, a model, and a slider δₐ per attribute.

    Controls: ``image`` (IntSlider "test face", an index into ``x``), ``model`` (Dropdown over the
    names of ``models``; starts on the last one) and one FloatSlider per attribute (δ in ±``lim``).
    The picture is original · reconstruction · edit, where the edit decodes μ(x) + Σₐ δₐ·wₐ/‖wₐ‖
    (:meth:`VAC.edit_latent`). It starts on ``face``, else (given labels ``y``) on the first face
    with none of the attributes, else on face 0. The models are put in eval mode: a widget shows
    what a trained model predicts (posterior means, BatchNorm's running statistics).
    """
    names = _check_attributes(models, attributes)
    if face is None:
        face = first_plain_face(y) if y is not None else 0
    if not 0 <= face < len(x):
        raise ValueError(f"face {face} is not one of the {len(x)} images given")
    for m in models.values():
        m.eval()
    controls = {"image": W.IntSlider(value=face, min=0, max=len(x) - 1, description="test face"),
                "model": W.Dropdown(options=list(models), value=list(models)[-1], description="model")}
    for a in names:
        controls[a] = W.FloatSlider(value=0.0, min=-lim, max=lim, step=step, description=a, readout_format="+.2f")

    def render(image: int, model: str, **deltas: float) -> torch.Tensor:
        m = models[model]
        original = x[image:image + 1].to(_device_of(m))
        mu = m.encode(original)[0]
        return torch.cat([original, m.decode(mu), m.decode(m.edit_latent(mu, deltas))]).cpu()

    return LiveImage(render, controls, scale=scale, nrow=3, title=title)


def langevin_widget(model: VAC, pool: dict[str, torch.Tensor] | None = None, *,
                    attributes: Sequence[str] | None = None, steps: int = 5000, alpha: float = 2e-4, n: int = 64,
                    shown: int = 8, seed: int = 0, scale: int = 3,
                    title: str = "Langevin samples (IntroVAC)") -> LiveImage:
    """Decoded Langevin samples of p(z | attribute = 1): choose the attribute, press the button for the next ones.

    The chains run once, when the widget is built, not on each press: 5000 steps of ``n`` chains
    take seconds on a CPU, far beyond a live redraw, while decoding ``shown`` latents takes
    milliseconds. ``pool`` gives the latents per attribute (e.g. the accepted states of chains
    the notebook already ran); without it, ``n`` chains of :func:`langevin_sample` run per
    attribute (generator seeded ``seed``) and the states the classifier accepts are kept (all
    last states where it accepts none). Controls: ``attribute`` (Dropdown "with") and ``draws``
    (a read-only IntText "draw #" that the button "draw Langevin samples", ``widget.button``,
    counts up); draw k shows latents k·shown … (k+1)·shown − 1 of the attribute's pool, cycling.
    """
    names = _check_attributes({"model": model}, attributes)
    model.eval()
    if pool is None:
        pool = {}
        for name in names:
            res = langevin_sample(model, {name: 1}, n=n, steps=steps, alpha=alpha,
                                  generator=torch.Generator().manual_seed(seed))
            pool[name] = res.z[res.accepted] if res.accepted.any() else res.z
    missing = [a for a in names if a not in pool or len(pool[a]) == 0]
    if missing:
        raise ValueError(f"no Langevin latents for {missing}; pass pool={{attribute: z}} for every attribute, "
                         "or leave pool out to run the chains here")
    controls = {"attribute": W.Dropdown(options=names, value=names[0], description="with"),
                "draws": W.IntText(value=0, description="draw #", disabled=True)}

    def render(attribute: str, draws: int) -> torch.Tensor:
        z = pool[attribute]
        rows = (torch.arange(shown) + draws * shown) % len(z)  # the next page of the pool, wrapping round
        return model.decode(z[rows].to(next(model.parameters()).device)).cpu()

    sampler = LiveImage(render, controls, scale=scale, nrow=shown, title=title)
    button = W.Button(description="draw Langevin samples", layout=W.Layout(width="auto"))  # the whole label shows
    button.on_click(lambda _: setattr(controls["draws"], "value", controls["draws"].value + 1))
    sampler.button = button
    sampler.widget = W.VBox([button, sampler.widget])
    return sampler
