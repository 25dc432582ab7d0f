"""The W pad: a face's w_i moved inside p(w_i|y_i) live, and its static figure."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import torch

from ..train import model_mode
from ..widgets import LiveImage
from .models import (
    CSVAE,
)


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

    from ..plots import show_images

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
