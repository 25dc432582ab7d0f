"""ResNet-style encoder and decoder for RGB images (32×32, 64×64, 128×128), scaled by a width.

IntroVAC (paper 001, appendix figure 10) follows IntroVAE: the encoder is a stack of residual
blocks, each followed by 2×2 average pooling that halves the image, and a linear head that gives
(μ, log σ²); the decoder mirrors it with nearest-neighbour upsampling after each block. The paper
uses 32-64-128-256-512 channels on 128×128 CelebA; here the channels are ``width·(1, 2, 4, ...)``
(capped at ``16·width``) and the number of levels follows the image size so that the smallest
feature map is 4×4. ``width=32`` at 128×128 is the paper's net; ``width=8`` at 32×32 trains on a CPU.

The modules have the attributes of ``vaecourse.nets`` encoders/decoders (``latent_dim``,
``image_shape``), so ``nets.VAE`` and ``introvac.VAC`` wrap them unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .nets import VAE, check_images, variance_to_logvar

NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


class ResBlock(nn.Module):
    """conv3×3 → norm → LeakyReLU → conv3×3 → norm, plus the input (1×1 conv when channels change), → LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"), _norm(norm, c_out), nn.LeakyReLU(0.2),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm == "none"), _norm(norm, c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.body(x) + self.skip(x), 0.2)


def resnet_channels(image_shape: Sequence[int], width: int) -> list[int]:
    """Channels of the residual levels: width·2^k (capped at 16·width), one level per halving down to 4×4."""
    _, h, w = (int(s) for s in image_shape)
    if h != w or h < 8 or h & (h - 1):
        raise ValueError(f"the ResNet nets take square images whose side is a power of two ≥ 8 (32, 64, 128), "
                         f"got {h}×{w}; resize the images or use vaecourse.nets.make_vae(kind='conv')")
    if width < 1:
        raise ValueError(f"width must be a positive number of channels, got {width}")
    levels = int(math.log2(h // 4))
    return [width * min(2 ** k, 16) for k in range(levels)]


class ResNetEncoder(nn.Module):
    """x → stem conv → [ResBlock, AvgPool 2×2] per level → linear → (μ, log σ²)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, width: int = 16, norm: str = "batch"):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = latent_dim
        chans = resnet_channels(self.image_shape, width)
        layers: list[nn.Module] = [nn.Conv2d(self.image_shape[0], chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        c_in = chans[0]
        for c in chans:
            layers += [ResBlock(c_in, c, norm), nn.AvgPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.feature_shape = (c_in, 4, 4)
        self.head = nn.Linear(c_in * 16, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x, self.image_shape, "the ResNet encoder")
        mu, raw = self.head(self.body(x).flatten(1)).chunk(2, dim=1)
        return mu, variance_to_logvar(raw)


class ResNetDecoder(nn.Module):
    """z → linear → 4×4 map → [ResBlock, upsample ×2] per level (mirrored) → conv3×3 → sigmoid pixels."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, width: int = 16, norm: str = "batch",
                 logits: bool = False):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = latent_dim
        chans = resnet_channels(self.image_shape, width)[::-1]
        self.start_shape = (chans[0], 4, 4)
        self.fc = nn.Linear(latent_dim, chans[0] * 16)
        layers: list[nn.Module] = []
        c_in = chans[0]
        for c in chans:
            layers += [ResBlock(c_in, c, norm), nn.Upsample(scale_factor=2, mode="nearest")]
            c_in = c
        layers.append(nn.Conv2d(c_in, self.image_shape[0], 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.logits = logits

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the ResNet decoder takes latents of shape N×{self.latent_dim}, got {tuple(z.shape)}")
        out = self.body(F.leaky_relu(self.fc(z), 0.2).view(-1, *self.start_shape))
        return out if self.logits else torch.sigmoid(out)


def make_resnet_vae(image_shape: Sequence[int], latent_dim: int, width: int = 16, norm: str = "batch",
                    variational: bool = True) -> VAE:
    """A ``nets.VAE`` with the ResNet encoder and decoder (the IntroVAE/IntroVAC architecture, scaled by width)."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
    return VAE(ResNetEncoder(image_shape, latent_dim, width, norm), ResNetDecoder(image_shape, latent_dim, width, norm),
               variational=variational)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (to say how big a profile's net is)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
