"""The face VAE backbone of lessons 05–07: conv nets for 32 or 64 px faces and a calibrated likelihood.

Lessons 05 (CCVAE), 06 (VAC, IntroVAC) and 07 (CSVAE) each add their own heads and terms to the
same pieces:

- :class:`FaceEncoder`: stride-2 convolutions down to a 4×4 map, then a linear head to (μ, log σ²);
  ``cond_dim`` extra inputs (labels, for a conditional encoder) join the features before the head,
  and :meth:`FaceEncoder.features` gives the trunk alone for models with several heads.
- :class:`FaceDecoder`: the mirror (a linear layer to a 4×4 map, transposed convolutions) with a
  sigmoid, so it returns pixel means in [0, 1].
- :class:`GaussianLikelihood`: −log N(x; x̂, c·I) per image, where c is *calibrated* by default: the
  σ-VAE's optimal c, the batch's squared error per pixel (lesson 03; Rybkin, Daniilidis & Levine
  2021, https://arxiv.org/abs/2006.13202). ``c="learned"`` learns log c instead, and a number fixes it,
  which is how a lesson shows a source's own weight: a fixed c far above the error a decoder can
  reach is a blur (every pixel's error is cheap next to the KL), and at this scale the sources'
  weights are such c's.
- :class:`FaceVAE`: encoder + decoder + likelihood, the plain VAE (``terms`` / ``face_vae_loss``),
  what lessons 05–07 start from and what the oracle's readback of reconstructions is measured on.

No BatchNorm: lesson 06's introspective game passes real and generated batches through one encoder,
and batch statistics would mix them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .faces import check_size
from .losses import gaussian_kl, reparameterize, squared_error
from .nets import VAEOutput, check_images

Terms = dict[str, torch.Tensor]
C_KINDS = ("optimal", "learned")
# The convolutions run on channels-last tensors: on a 2-core CPU with two torch threads the backbone (32 px, width 32,
# batch 64) trains at 16.0 steps/s instead of 12.1; with one thread both give 8.4 (benchmarks/bench_face_vae.py).
# Inputs and outputs keep the usual (N, C, H, W) layout; only the conv stacks see the other one.
CONV_LAYOUT = torch.channels_last
MIN_C = 1e-6  # a floor for the calibrated c: an exact reconstruction would otherwise divide by zero


def face_channels(size: int, width: int) -> list[int]:
    """Channels of the stride-2 levels from ``size`` down to 4×4: width·(1, 2, 4, 4, ...)."""
    check_size(size)
    if width < 1:
        raise ValueError(f"width must be a positive number of channels, got {width}")
    levels = int(math.log2(size // 4))  # 32 px: 3 levels, 64 px: 4
    return [width * min(2 ** i, 4) for i in range(levels)]


class FaceEncoder(nn.Module):
    """Faces (N, 3, size, size) → (μ, log σ²) of a diagonal Gaussian over ``latent_dim`` dimensions.

    ``cond_dim`` > 0 makes it conditional: ``forward(x, cond)`` joins ``cond`` (N, cond_dim) to the
    image features before the head (the CVAE's q(z|x, y)).
    """

    def __init__(self, size: int = 32, latent_dim: int = 32, width: int = 32, cond_dim: int = 0):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
        self.size, self.latent_dim, self.cond_dim = check_size(size), latent_dim, cond_dim
        self.image_shape = (3, size, size)
        layers: list[nn.Module] = []
        c_in = 3
        for c in face_channels(size, width):
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c
        self.trunk = nn.Sequential(*layers, nn.Flatten()).to(memory_format=CONV_LAYOUT)
        self.feature_dim = c_in * 4 * 4
        self.head = nn.Linear(self.feature_dim + cond_dim, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's flattened 4×4 feature map (N, feature_dim): for models with heads of their own."""
        check_images(x, self.image_shape, "the face encoder")
        return self.trunk(x.contiguous(memory_format=CONV_LAYOUT))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        if self.cond_dim:
            if cond is None or cond.shape != (x.shape[0], self.cond_dim):
                raise ValueError(f"this encoder is conditional: pass cond of shape ({x.shape[0]}, {self.cond_dim}), "
                                 f"got {None if cond is None else tuple(cond.shape)}")
            h = torch.cat([h, cond.to(h.dtype)], 1)
        elif cond is not None:
            raise ValueError("this encoder was built with cond_dim=0; build it with cond_dim=... to condition it")
        mu, logvar = self.head(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)  # a bounded variance keeps exp(logvar) finite early in training


class FaceDecoder(nn.Module):
    """``latent_dim`` numbers → faces (N, 3, size, size), pixel means in [0, 1] (or logits with ``logits=True``)."""

    def __init__(self, size: int = 32, latent_dim: int = 32, width: int = 32, logits: bool = False):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
        self.size, self.latent_dim, self.logits = check_size(size), latent_dim, logits
        self.image_shape = (3, size, size)
        chans = face_channels(size, width)[::-1]
        self.start_shape = (chans[0], 4, 4)
        self.fc = nn.Linear(latent_dim, chans[0] * 16)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans, chans[1:] + [chans[-1]]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(chans[-1], 3, 3, padding=1))
        self.body = nn.Sequential(*layers).to(memory_format=CONV_LAYOUT)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the face decoder takes latents of shape N×{self.latent_dim}, got {tuple(z.shape)}")
        h = F.leaky_relu(self.fc(z), 0.2).view(-1, *self.start_shape)
        out = self.body(h.contiguous(memory_format=CONV_LAYOUT)).contiguous()  # callers get the usual NCHW layout
        return out if self.logits else torch.sigmoid(out)


def check_c(c: str | float) -> str | float:
    """``c`` if it names a likelihood the backbone knows ("optimal", "learned" or a positive number)."""
    if isinstance(c, str):
        if c not in C_KINDS:
            raise ValueError(f"unknown likelihood c={c!r}; choose 'optimal' (σ-VAE, calibrated to the error), "
                             "'learned', or a positive number (a fixed decoder variance per pixel)")
        return c
    c = float(c)
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"a fixed decoder variance c must be a positive finite number, got {c}")
    return c


class GaussianLikelihood(nn.Module):
    """−log N(x; x̂, c·I) in nats per image, with c calibrated ("optimal"), learned, or fixed.

    "optimal": c = the batch's squared error per pixel, held constant in the gradient (the σ-VAE's
    closed form; its gradient equals that of D/2·log MSE). ``self.c`` tracks a running mean of the
    c's used, so a trained model reports the variance it settled at.
    """

    def __init__(self, c: str | float = "optimal", init_c: float = 0.01):
        super().__init__()
        self.kind = check_c(c)
        self.log_c = nn.Parameter(torch.tensor(math.log(init_c))) if c == "learned" else None
        start = init_c if isinstance(self.kind, str) else float(self.kind)
        self.register_buffer("running_c", torch.tensor(float(start)))

    @property
    def c(self) -> float:
        """The decoder variance per pixel: the fixed value, the learned one, or the running calibrated one."""
        if self.log_c is not None:
            return float(self.log_c.exp())
        return float(self.running_c)

    def variance(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """The c used on this batch (a 0-dim tensor)."""
        if self.kind == "optimal":
            c = (x - x_hat).detach().pow(2).mean().clamp_min(MIN_C)
            if self.training:
                self.running_c.mul_(0.95).add_(0.05 * c)
            return c
        if self.kind == "learned":
            return self.log_c.exp().clamp_min(MIN_C)
        return torch.as_tensor(self.kind, dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(nll per image (N,), c used): ‖x − x̂‖²/(2c) + D/2·log(2πc)."""
        c = self.variance(x, x_hat)
        d = x[0].numel()
        nll = squared_error(x, x_hat) / (2 * c) + 0.5 * d * torch.log(2 * math.pi * c)
        return nll, c


class FaceVAE(nn.Module):
    """The backbone VAE: FaceEncoder, FaceDecoder, a Gaussian likelihood (calibrated by default), prior N(0, I)."""

    def __init__(self, size: int = 32, latent_dim: int = 32, width: int = 32, c: str | float = "optimal",
                 beta: float = 1.0):
        super().__init__()
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a non-negative number, got {beta}")
        self.encoder = FaceEncoder(size, latent_dim, width)
        self.decoder = FaceDecoder(size, latent_dim, width)
        self.likelihood = GaussianLikelihood(c)
        self.latent_dim, self.image_shape, self.beta = latent_dim, (3, size, size), beta

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if self.training else mu
        return VAEOutput(mu, logvar, z, self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior means μ(x): the reconstruction edits start from."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.decode(torch.randn(n, self.latent_dim, generator=generator).to(device))

    def terms(self, x: torch.Tensor) -> Terms:
        """Batch means: ``loss`` = nll + β·KL (nats per image), ``nll``, ``kl``, ``mse`` per pixel, ``c``."""
        out = self(x)
        nll, c = self.likelihood(x, out.x_hat)
        kl = gaussian_kl(out.mu, out.logvar)
        mse = (x - out.x_hat).detach().pow(2).mean()
        return {"loss": (nll + self.beta * kl).mean(), "nll": nll.mean(), "kl": kl.mean(), "mse": mse, "c": c.detach()}


def face_vae_loss() -> Callable[[FaceVAE, tuple[torch.Tensor, ...]], Terms]:
    """``loss_fn(model, batch)`` for :func:`vaecourse.fit`: the backbone's negative ELBO on the batch's images."""

    def loss_fn(model: FaceVAE, batch: tuple[torch.Tensor, ...]) -> Terms:
        return model.terms(batch[0])

    return loss_fn


@torch.no_grad()
def held_out_mse(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> float:
    """Squared error per pixel of the reconstructions from μ(x) on ``images`` (the c a calibrated model should have)."""
    from .batching import batched_apply
    from .train import model_mode

    with model_mode(model, training=False):
        errs = batched_apply(lambda x: (model.decode(model.encode(x)[0]) - x).pow(2).flatten(1).mean(1),
                             images, batch_size)
    return float(errs.mean())


def equivalent_c(recon_weight_per_image: float, kl_weight: float = 1.0) -> float:
    """The Gaussian decoder variance c that a squared-error weight stands for, relative to a KL weight.

    A loss w·‖x − x̂‖² + k·KL is k·(‖x − x̂‖²/(2c) + KL) with c = k/(2w): the same optimum as the ELBO
    with that c. Lessons use it to put a source's weights on lesson 03's c axis.
    """
    if not recon_weight_per_image > 0 or not kl_weight > 0:
        raise ValueError("both weights must be positive")
    return kl_weight / (2.0 * recon_weight_per_image)


def describe(model: nn.Module) -> str:
    """One line naming the net and its parameter count (for a lesson's printout)."""
    n = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__}: {n / 1e6:.2f} M parameters"
