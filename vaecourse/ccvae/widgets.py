"""Lesson 05's live controls: a digit's characteristic and style latents, and a face's attributes."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import torch

from ..widgets import LiveImage
from .model import CCVAE


# ---------------------------------------------------------------------- live widgets
def _style_directions(n: int, s_dim: int, seed: int) -> torch.Tensor:
    """``n`` random unit directions of the style latent, drawn from ``seed`` (the same on every machine)."""
    if s_dim < 1:
        raise ValueError("this model has no style latent to move (s_dim = 0); build it with s_dim >= 1")
    dirs = torch.randn(n, s_dim, generator=torch.Generator().manual_seed(seed))
    return dirs / dirs.norm(dim=1, keepdim=True)


def digit_widget(model: CCVAE, seed: int = 0, device: torch.device | str = "cpu", *, digit: int = 3,
                 lim: float = 3.0) -> LiveImage:
    """Pick a class, move the style: z_c at the prior mean of the class, z_\\c = a·d₁ + b·d₂.

    d₁, d₂ are two random unit directions of the style latent (from ``seed``); the class should
    stay while slant and thickness change. Categorical form. The model is put in eval mode.
    """
    if model.labels != "categorical":
        raise ValueError("digit_widget picks one class: it needs the categorical form (use face_widget for attributes)")
    if not 0 <= digit < model.n_labels:
        raise ValueError(f"digit must be a class index in 0..{model.n_labels - 1}, got {digit}")
    model.eval()
    dirs = _style_directions(2, model.s_dim, seed)
    class_means = model.prior_mu.detach().cpu()

    def render(digit: str, style_a: float, style_b: float) -> torch.Tensor:
        z = torch.cat([class_means[int(digit)], style_a * dirs[0] + style_b * dirs[1]])
        return model.decode(z.unsqueeze(0).to(device)).cpu()

    controls = {"digit": W.ToggleButtons(options=[str(d) for d in range(model.n_labels)], value=str(digit),
                                         description="digit y", style={"button_width": "28px"}),
                "style_a": W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description="style 1"),
                "style_b": W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description="style 2")}
    return LiveImage(render, controls, scale=5, title="CCVAE: label fixed, style moves")


def face_widget(model: CCVAE, x_face: torch.Tensor, y_face: torch.Tensor, attributes: Sequence[str], seed: int = 0,
                device: torch.device | str = "cpu", *, lim: float = 3.0, style_lim: float = 4.0) -> LiveImage:
    """One face, edited live: a toggle per attribute, a slider per z_c dimension, a style slider.

    Toggle i puts z_cᵢ at the mean of p(z_cᵢ|yᵢ) (starting from the face's label ``y_face``);
    slider ``z_c{i}`` moves it from there in that prior's standard deviations; ``style`` moves
    the face's own z_\\c along a random unit direction (from ``seed``). Binary form; the model is
    put in eval mode.
    """
    if model.labels != "binary":
        raise ValueError("face_widget edits binary attributes: it needs the binary (paper's) form")
    attributes = list(attributes)
    if len(attributes) != model.n_labels:
        raise ValueError(f"give one name per attribute: the model has {model.n_labels}, got {attributes}")
    taken = {"style", *(f"z_c{i}" for i in range(model.n_labels))} & set(attributes)
    if taken or len(set(attributes)) != len(attributes):
        raise ValueError(f"attribute names must be distinct and not 'style' or 'z_c<i>', got {attributes}")
    x = x_face.unsqueeze(0) if x_face.dim() == 3 else x_face
    y = y_face.reshape(-1).float().cpu()
    if x.shape[0] != 1 or y.numel() != model.n_labels:
        raise ValueError(f"give one face (C×H×W or 1×C×H×W) and its {model.n_labels} labels, got "
                         f"{tuple(x_face.shape)} and {tuple(y_face.shape)}")
    model.eval()
    with torch.no_grad():
        face_z = model.encode(x.to(device))[0][0].cpu()
    style_dir = _style_directions(1, model.s_dim, seed)[0]
    prior_mu, prior_sd = model.prior_mu.detach().cpu(), (0.5 * model.prior_logvar.detach().cpu()).exp()
    n = model.n_labels

    def render(style: float = 0.0, **values) -> torch.Tensor:
        z = face_z.clone()
        for i, a in enumerate(attributes):
            v = 1 if values[a] == "on" else 0
            z[i] = prior_mu[i, v] + values[f"z_c{i}"] * prior_sd[i, v]
        z[n:] = face_z[n:] + style * style_dir
        return model.decode(z.unsqueeze(0).to(device)).cpu()

    controls: dict[str, W.ValueWidget] = {}
    for i, a in enumerate(attributes):
        controls[a] = W.ToggleButtons(options=["off", "on"], value="on" if float(y[i]) > 0.5 else "off",
                                      description=a, style={"button_width": "40px"})
        controls[f"z_c{i}"] = W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description=f"z_c[{i}] (sd)")
    controls["style"] = W.FloatSlider(value=0.0, min=-style_lim, max=style_lim, step=0.1, description="style")
    return LiveImage(render, controls, scale=5, title="CCVAE on faces: attributes on/off, live")
