"""Encoders, decoders and the AE/VAE that wrap them, for any image shape and latent size.

Encoders return (μ, log σ²); decoders return pixel means in [0, 1] (a sigmoid output, as in
Zhao's report, 2023) or logits. One ``VAE`` class serves as AE too (``variational=False``: z = μ, no KL)
so lesson 02 trains the very same nets both ways.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .losses import reparameterize


def check_images(x: torch.Tensor, image_shape: Sequence[int], who: str = "this net") -> None:
    """Raise a ValueError naming the expected and given shapes when ``x`` is not N×C×H×W as built."""
    expected = tuple(image_shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{who} was built for images of shape N×{'×'.join(map(str, expected))}, got {tuple(x.shape)}. "
            "Pass a batch of such images (add the channel axis with x.unsqueeze(1) if missing), or build "
            f"the net with image_shape={tuple(x.shape[1:]) if x.dim() == 4 else '(C, H, W)'}.")


class MLPEncoder(nn.Module):
    """Flatten → Linear/ELU layers → (μ, log σ²).

    The default 300-100-20 is what the text of Zhao's report (2023) gives; its printed network is
    300-100-10, which lesson 02 trains too.
    """

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (300, 100, 20)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        dims = [math.prod(self.image_shape), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ELU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x, self.image_shape, "the encoder")
        mu, raw = self.head(self.body(x.flatten(1))).chunk(2, dim=1)
        return mu, variance_to_logvar(raw)


def variance_to_logvar(raw: torch.Tensor) -> torch.Tensor:
    """σ² = softplus(h) + 1e-8 (the positive variance of Zhao's report, 2023; softplus's range is (0, ∞)), as log σ²."""
    return torch.log(F.softplus(raw) + 1e-8)


class MLPDecoder(nn.Module):
    """z → Linear/ELU layers (mirrored) → pixels (sigmoid means, or logits with ``logits=True``)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int] = (20, 100, 300),
                 logits: bool = False):
        super().__init__()
        self.image_shape = tuple(image_shape)
        dims = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ELU()]
        layers.append(nn.Linear(dims[-1], math.prod(self.image_shape)))
        self.body = nn.Sequential(*layers)
        self.logits = logits
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.body(z).view(-1, *self.image_shape)
        return out if self.logits else torch.sigmoid(out)


def conv_sizes(hw: Sequence[int], n_layers: int) -> list[tuple[int, int]]:
    """Spatial sizes through ``n_layers`` stride-2, padding-1, 3×3 convs: s → ⌈s/2⌉ each time."""
    sizes = [(int(hw[0]), int(hw[1]))]
    for _ in range(n_layers):
        sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
    return sizes


class ConvEncoder(nn.Module):
    """The CNN of Zhao's report (2023): stride-2 3×3 convs (32, 64, 32 channels), BatchNorm and ELU, a linear head."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (32, 64, 32)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        c_in = self.image_shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ELU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.feature_shape = (channels[-1], *conv_sizes(self.image_shape[1:], len(channels))[-1])
        self.head = nn.Linear(math.prod(self.feature_shape), 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x, self.image_shape, "the encoder")
        mu, raw = self.head(self.body(x).flatten(1)).chunk(2, dim=1)
        return mu, variance_to_logvar(raw)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: linear → feature map → transposed convs → a 3×3 conv to the image channels."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (32, 64, 32),
                 logits: bool = False):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c = self.image_shape[0]
        sizes = conv_sizes(self.image_shape[1:], len(channels))
        self.start_shape = (channels[-1], *sizes[-1])
        self.fc = nn.Linear(latent_dim, math.prod(self.start_shape))
        layers: list[nn.Module] = []
        rev = list(channels[::-1])
        c_in = rev[0]
        for i, c_out in enumerate(rev[1:] + [rev[-1]]):
            target = sizes[-2 - i]
            src = sizes[-1 - i]
            out_pad = (target[0] - (2 * src[0] - 1), target[1] - (2 * src[1] - 1))
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=out_pad),
                       nn.BatchNorm2d(c_out), nn.ELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, c, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.logits = logits
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.body(F.elu(self.fc(z)).view(-1, *self.start_shape))
        return out if self.logits else torch.sigmoid(out)


@dataclass
class VAEOutput:
    """What one forward pass produces: posterior parameters, the latent used, the decoded images."""

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    x_hat: torch.Tensor


class VAE(nn.Module):
    """Encoder + decoder; ``variational=False`` makes it a plain AE (z = μ, the KL term is not used)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, variational: bool = True):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.variational = variational
        self.latent_dim = encoder.latent_dim
        self.image_shape = encoder.image_shape

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the decoder takes latents of shape N×{self.latent_dim}, got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if (self.variational and self.training) else mu
        return VAEOutput(mu, logvar, z, self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self.decoder(z)


NET_KINDS = ("mlp", "conv", "face")
DEFAULT_HIDDEN = (300, 100, 20)   # the MLPs of lessons 02-03 (report 000's text)
DEFAULT_CHANNELS = (32, 64, 32)


def _check_kind(kind: str, image_shape: Sequence[int]) -> None:
    if kind not in NET_KINDS:
        raise ValueError(f"unknown net kind {kind!r}; choose one of {', '.join(NET_KINDS)}")
    shape = tuple(image_shape)
    if kind == "face" and (len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2]):
        raise ValueError(f"the faces backbone takes square RGB faces (3, size, size), got {shape}; "
                         "use kind='mlp' or 'conv' for other images")


def build_encoder(image_shape: Sequence[int], latent_dim: int, kind: str = "mlp", *,
                  hidden: Sequence[int] = DEFAULT_HIDDEN, channels: Sequence[int] = DEFAULT_CHANNELS,
                  width: int = 32) -> nn.Module:
    """q(z|x)'s net, x → (μ, log σ²): the course's one place to choose an encoder.

    ``kind`` "mlp" (layers ``hidden``), "conv" (``channels``) or "face" (the faces backbone of
    ``vaecourse.face_vae``, first level ``width`` channels). Every lesson's model builds its nets here.
    """
    _check_kind(kind, image_shape)
    if kind == "mlp":
        return MLPEncoder(image_shape, latent_dim, tuple(hidden))
    if kind == "conv":
        return ConvEncoder(image_shape, latent_dim, tuple(channels))
    from .face_vae import FaceEncoder  # face_vae builds on this module: imported when asked for

    return FaceEncoder(image_shape[-1], latent_dim, width)


def build_decoder(image_shape: Sequence[int], latent_dim: int, kind: str = "mlp", *,
                  hidden: Sequence[int] = DEFAULT_HIDDEN, channels: Sequence[int] = DEFAULT_CHANNELS,
                  width: int = 32, logits: bool = False) -> nn.Module:
    """p(x|z)'s net, z → images, mirroring :func:`build_encoder` of the same arguments (``hidden`` is the
    encoder's layer sizes; the decoder runs through them backwards). ``logits=True`` leaves out the last sigmoid."""
    _check_kind(kind, image_shape)
    if kind == "mlp":
        return MLPDecoder(image_shape, latent_dim, tuple(hidden)[::-1], logits=logits)
    if kind == "conv":
        return ConvDecoder(image_shape, latent_dim, tuple(channels), logits=logits)
    from .face_vae import FaceDecoder

    return FaceDecoder(image_shape[-1], latent_dim, width, logits=logits)


def make_vae(image_shape: Sequence[int], latent_dim: int, kind: str = "mlp", variational: bool = True,
             logits: bool = False, **kwargs) -> VAE:
    """An MLP or conv VAE (or AE with ``variational=False``) for images of ``image_shape``."""
    from .train import whole_number

    latent_dim = whole_number("latent_dim", latent_dim)  # 2.5 or "2" named here, not deep inside torch
    if kind not in ("mlp", "conv"):
        raise ValueError(f"unknown net kind {kind!r}; choose 'mlp' or 'conv'")
    enc = build_encoder(image_shape, latent_dim, kind, **kwargs)
    dec = build_decoder(image_shape, latent_dim, kind, logits=logits, **kwargs)
    return VAE(enc, dec, variational=variational)
