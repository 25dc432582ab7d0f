"""What a trained CCVAE is measured by: reconstruction, class interpolation, conditional generation, and
interventions on faces as the paper makes them (with their random baseline for the edit schema).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..batching import batched_apply
from ..losses import (
    squared_error,
)
from ..train import model_mode
from .model import CCVAE


# ---------------------------------------------------------------------- measurement
@torch.no_grad()
def reconstruction_error(model: CCVAE, x: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean squared error per image ‖x − x̂‖² of reconstructions from the posterior mean."""
    with model_mode(model, training=False):
        err = batched_apply(lambda xb: squared_error(xb, model.decode(model.encode(xb)[0])), x, batch_size)
    return float(err.mean())


@torch.no_grad()
def class_interpolation(model: CCVAE, a: int, b: int, steps: int = 8,
                        style: torch.Tensor | None = None) -> torch.Tensor:
    """Decode the straight path between the prior means of classes a and b (style fixed, 0 by default)."""
    if model.labels != "categorical":
        raise ValueError("class interpolation is for the categorical form; use edit_faces() for attributes")
    t = torch.linspace(0, 1, steps, device=model.prior_mu.device).unsqueeze(1)
    zc = (1 - t) * model.prior_mu[a] + t * model.prior_mu[b]
    zs = torch.zeros(steps, model.s_dim, device=zc.device) if style is None else style.to(zc.device).expand(steps, -1)
    return model.decode(torch.cat([zc, zs], 1))


@torch.no_grad()
def conditional_generation_accuracy(model: CCVAE, judge: Callable[[torch.Tensor], torch.Tensor],
                                    n_per_class: int = 100, generator: torch.Generator | None = None
                                    ) -> tuple[float, list[float]]:
    """How often an independent classifier ``judge`` (images → class indices) reads back the class asked for.

    Draws z_c ~ p(z_c|y), z_\\c ~ N(0, I) for every class; returns the overall accuracy and one per class.
    """
    if model.labels != "categorical":
        raise ValueError("conditional_generation_accuracy is for the categorical form; "
                         "measure attribute edits with vaecourse.edits")
    dev = model.prior_mu.device
    y = torch.arange(model.n_labels, device=dev).repeat_interleave(n_per_class)
    with model_mode(model, training=False):
        pred = judge(model.sample_conditional(y, generator=generator)).to(dev)
    per_class = [float((pred[y == k] == k).float().mean()) for k in range(model.n_labels)]
    return float((pred == y).float().mean()), per_class


# ---------------------------------------------------------------------- interventions as the paper makes them
def _attribute_column(model: CCVAE, attributes: Sequence[str], attribute: str | int) -> int:
    """The z_c dimension of ``attribute`` (a name in ``attributes``, or an index), else a ValueError naming them."""
    if model.labels != "binary":
        raise ValueError("interventions on one attribute need the binary (per-attribute) form: labels='binary'")
    names = list(attributes)
    if len(names) != model.n_labels:
        raise ValueError(f"give one name per attribute the model was trained on: it has {model.n_labels}, got {names}")
    if isinstance(attribute, str):
        if attribute not in names:
            raise ValueError(f"the model was not trained on {attribute!r}; it knows {', '.join(names)}")
        return names.index(attribute)
    if not 0 <= int(attribute) < model.n_labels:
        raise ValueError(f"attribute index must be in 0..{model.n_labels - 1}, got {attribute}")
    return int(attribute)


def _target(direction: str) -> int:
    if direction not in ("add", "remove"):
        raise ValueError(f"direction must be 'add' or 'remove', got {direction!r}")
    return 1 if direction == "add" else 0


def set_characteristic(model: CCVAE, z: torch.Tensor, i: int, value: int, amount: float = 1.0) -> torch.Tensor:
    """A copy of ``z`` with z_c,i moved ``amount`` of the way to the mean of p(z_c,i | y_i = value).

    ``amount`` = 1 sets it to that mean (the paper's intervention); values between 0 and 1 walk there.
    Every other coordinate (the other z_c dimensions, the style) is left as it is.
    """
    if not math.isfinite(float(amount)):
        raise ValueError(f"amount must be a finite number (1 = at the prior mean), got {amount!r}")
    out = z.clone()
    target = model.prior_mu[i, int(value)].detach()
    out[:, i] = out[:, i] + float(amount) * (target - out[:, i])
    return out


@torch.no_grad()
def reconstruct(model: CCVAE, x: torch.Tensor) -> torch.Tensor:
    """Decode the posterior mean: the unedited reconstruction every edit is compared with."""
    with model_mode(model, training=False):
        return model.decode(model.encode(x)[0])


@torch.no_grad()
def edit_faces(model: CCVAE, x: torch.Tensor, attributes: Sequence[str], attribute: str | int, direction: str,
               amount: float = 1.0) -> torch.Tensor:
    """The paper's intervention: encode, put z_c,i at the mean of p(z_c,i | y_i = target), decode.

    ``direction`` "add" targets y_i = 1, "remove" y_i = 0; ``amount`` < 1 stops part of the way.
    """
    i, v = _attribute_column(model, attributes, attribute), _target(direction)
    with model_mode(model, training=False):
        z = model.encode(x)[0]
        return model.decode(set_characteristic(model, z, i, v, amount))


@torch.no_grad()
def random_step_faces(model: CCVAE, x: torch.Tensor, attributes: Sequence[str], attribute: str | int, direction: str,
                      generator: torch.Generator) -> torch.Tensor:
    """The baseline for :func:`edit_faces`: each face's latent moved as far, along a random direction of the whole z.

    The step length of each face is |μ_i(target) − z_c,i|, the length of its own intervention;
    the direction is drawn uniformly on the sphere, one per face, from ``generator``.
    """
    i, v = _attribute_column(model, attributes, attribute), _target(direction)
    with model_mode(model, training=False):
        z = model.encode(x)[0]
        length = (model.prior_mu[i, v] - z[:, i]).abs().unsqueeze(1)
        u = torch.randn(z.shape, generator=generator).to(z.device)
        return model.decode(z + length * u / u.norm(dim=1, keepdim=True))


def edit_functions(model: CCVAE, attributes: Sequence[str], seed: int = 0
                   ) -> dict[str, Callable[..., torch.Tensor]]:
    """``reconstruct``, ``edit`` and ``random_edit`` as ``vaecourse.edits.measure_edits`` takes them."""
    _attribute_column(model, attributes, 0)  # the form and the names, checked once here
    gen = torch.Generator().manual_seed(seed)
    return {"reconstruct": lambda x: reconstruct(model, x),
            "edit": lambda x, a, d: edit_faces(model, x, attributes, a, d),
            "random_edit": lambda x, a, d: random_step_faces(model, x, attributes, a, d, gen)}


@torch.no_grad()
def latent_walk(model: CCVAE, x: torch.Tensor, attribute: int, steps: int = 7, lim: float = 0.5) -> torch.Tensor:
    """Decode ``x`` with z_c,i walked from beyond the mean of p(z_c,i|y_i=0) to beyond that of y_i=1.

    Returns (len(x)·steps, C, H, W), row by row: face k at step 0..steps−1. The walk spans
    [μ_i(0) − lim·d, μ_i(1) + lim·d] with d = μ_i(1) − μ_i(0); everything else stays at the posterior mean.
    """
    if model.labels != "binary" or not 0 <= attribute < model.n_labels:
        raise ValueError(f"latent walks need the binary form and an attribute index in 0..{model.n_labels - 1}")
    if steps < 2:
        raise ValueError(f"a walk needs at least 2 steps, got {steps}")
    with model_mode(model, training=False):
        z = model.encode(x)[0]
        lo, hi = model.prior_mu[attribute, 0], model.prior_mu[attribute, 1]
        d = hi - lo
        values = torch.linspace(float(lo - lim * d), float(hi + lim * d), steps, device=z.device)
        zz = z.unsqueeze(1).repeat(1, steps, 1)
        zz[:, :, attribute] = values
        return model.decode(zz.reshape(-1, z.shape[1]))
