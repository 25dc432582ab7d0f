"""Lesson 06's live controls: edits along each attribute's normal, and Langevin samples."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import torch
from torch import nn

from ..widgets import LiveImage
from .langevin import langevin_sample
from .model import (
    VAC,
)


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
