"""Measuring CVAE / CVAE-info / CSVAE: encodings, transfers, reconstruction, probes of z and w, and the edit
functions for the faces' edit schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .. import faces, probes
from ..batching import iterate
from ..losses import (
    binary_labels,
    squared_error,
)
from ..probes import majority_rate as majority_rate  # re-exported: lesson 07 calls cs.majority_rate
from ..train import model_mode
from .models import (
    CSVAE,
    LABELS_FIX,
)


# ----------------------------------------------------------------------------- measuring
def _in_order(tensors: Sequence[torch.Tensor], batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The rows of ``tensors`` in batches, in order (for measuring, not training)."""
    return iterate(tensors, batch_size, shuffle=False)


@torch.no_grad()
def encode_all(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Posterior means of every latent (z, and w for CSVAE) for a whole data set, on the CPU."""
    with model_mode(model, training=False):
        parts = [{k: v.cpu() for k, v in model.latents(xb, yb).items()} for xb, yb in _in_order([x, y], batch_size)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def batched_transfer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor,
                     batch_size: int = 500, **kwargs) -> torch.Tensor:
    """``model.transfer`` over a whole data set in batches (eval mode), on the CPU."""
    with model_mode(model, training=False):
        return torch.cat([model.transfer(xb, yb, nb, **kwargs).cpu()
                          for xb, yb, nb in _in_order([x, y, y_new], batch_size)])


@torch.no_grad()
def reconstruction_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Mean ‖x − x̂‖² per example with posterior means (eval mode)."""
    with model_mode(model, training=False):
        errors = torch.cat([squared_error(xb, model(xb, yb)["x_hat"]) for xb, yb in _in_order([x, y], batch_size)])
    return float(errors.mean())


def probe_accuracy(train: torch.Tensor | np.ndarray, y_train: torch.Tensor | np.ndarray,
                   test: torch.Tensor | np.ndarray, y_test: torch.Tensor | np.ndarray, kind: str = "linear",
                   seed: int = 0, max_train: int = 3000) -> np.ndarray:
    """Per attribute: test accuracy of a fresh probe (``linear`` logistic regression or ``mlp``) trained on features.

    Used to measure how much label information a latent holds after training, independently of
    the adversary that was trained with it. At most ``max_train`` training rows are used (speed); the
    logistic regression has scikit-learn's default penalty (``vaecourse.probes.probe_accuracy``).
    """
    return probes.probe_accuracy(train, y_train, test, y_test, kind, seed, max_train=max_train)


# ----------------------------------------------------------------------------- faces: edits and probes
STYLE_CLASSES = {"glasses": ("square frames", "round frames"), "facial_hair": ("full beard", "goatee", "moustache")}


def hidden_style_classes(attribute: str, factors: torch.Tensor) -> torch.Tensor:
    """The kind of an attribute each face would draw (an int per face), from the faces' hidden styles.

    glasses: 0 square frames (style < 0.5), 1 round; facial hair: 0 full beard (< 0.4), 1 goatee (< 0.7),
    2 moustache. The kind is drawn only on faces that have the attribute (``faces.render_faces``).
    """
    if attribute not in STYLE_CLASSES:
        raise ValueError(f"no hidden style is drawn for {attribute!r}; the faces vary the kind of "
                         f"{' and '.join(STYLE_CLASSES)} only")
    style = faces.hidden_styles(factors)
    if attribute == "glasses":
        return (style[:, 0] >= 0.5).long()
    kind = style[:, 1]
    return (kind >= 0.4).long() + (kind >= 0.7).long()


@torch.no_grad()
def random_transfer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
    """The transfer's random baseline: move each face's latent code by the transfer's own step length along ``u``
    (one direction, or one row per face).

    CVAE / CVAE-info: the transfer moves the decoder's input by ‖y' − y‖ (through y); the baseline moves z
    that far along ``u`` (z_dim numbers) and keeps y. CSVAE: the transfer moves w by ‖w' − μ_w‖; the
    baseline moves (z, w) that far along ``u`` (z_dim + k·w_dim numbers).
    """
    y, y_new = binary_labels(y, model.n_labels, LABELS_FIX), binary_labels(y_new, model.n_labels, LABELS_FIX)
    if isinstance(model, CSVAE):
        mu_z, _, mu_w, _ = model.encode(x, y)
        changed = (y != y_new).repeat_interleave(model.w_dim, dim=1)
        target = torch.where(changed, model.prior_w(y_new)[0], mu_w)
        code = torch.cat([mu_z, mu_w], 1)
        length = (target - mu_w).norm(dim=1, keepdim=True)
    else:
        code = model.encode(x, y)[0]
        length = (y_new - y).norm(dim=1, keepdim=True)
    if u.shape not in ((code.shape[1],), (code.shape[0], code.shape[1])):
        raise ValueError(f"the random direction must have {code.shape[1]} numbers for this model (or one such row "
                         f"per face), got {tuple(u.shape)}")
    moved = code + length * (u / u.norm(dim=-1, keepdim=True)).to(code)
    if isinstance(model, CSVAE):
        return model.decode(moved[:, :model.z_dim], moved[:, model.z_dim:])
    return model.decode(moved, y)


def code_dim(model: nn.Module) -> int:
    """How many numbers :func:`random_transfer` moves: z (CVAE), or z and w (CSVAE)."""
    return model.z_dim + (model.n_labels * model.w_dim if isinstance(model, CSVAE) else 0)


def face_edit_functions(model: nn.Module, attributes: Sequence[str], seed: int = 0,
                        batch_size: int = 500) -> dict[str, Callable]:
    """``reconstruct``, ``edit`` and ``random_edit`` for ``edits.measure_edits(..., pass_labels=True)``.

    The CVAE and the CSVAE encode a face with its labels: measure_edits hands each function the faces'
    rows of every attribute (``labels=``, (N, 3)), and the model's ``attributes`` pick its columns. The
    edit is the model's transfer with one label flipped; the random baseline moves each face's code as
    far along a random direction of its own (drawn from ``seed``).
    """
    attributes = list(attributes)
    if len(attributes) != model.n_labels:
        raise ValueError(f"{len(attributes)} attribute names for a model with {model.n_labels} label(s)")
    columns = [faces.attribute_index(a) for a in attributes]
    gen = torch.Generator().manual_seed(seed)

    def own(labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim != 2 or labels.shape[1] != len(faces.ATTRIBUTES):
            raise ValueError(f"labels= must be the faces' rows of every attribute {faces.ATTRIBUTES}, got shape "
                             f"{tuple(labels.shape)}: call edits.measure_edits(..., pass_labels=True)")
        return labels[:, columns].float()

    def flipped(labels: torch.Tensor, attribute: str, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
        if attribute not in attributes:
            raise ValueError(f"the model was not trained on {attribute!r}; it knows {', '.join(attributes)}")
        if direction not in ("add", "remove"):
            raise ValueError(f"direction must be 'add' or 'remove', got {direction!r}")
        y = own(labels)
        y_new = y.clone()
        y_new[:, attributes.index(attribute)] = 1.0 if direction == "add" else 0.0
        return y, y_new

    def reconstruct(x: torch.Tensor, *, labels: torch.Tensor) -> torch.Tensor:
        y = own(labels)
        return batched_transfer(model, x, y, y, batch_size)

    def edit(x: torch.Tensor, attribute: str, direction: str, *, labels: torch.Tensor) -> torch.Tensor:
        y, y_new = flipped(labels, attribute, direction)
        return batched_transfer(model, x, y, y_new, batch_size)

    def random_edit(x: torch.Tensor, attribute: str, direction: str, *, labels: torch.Tensor) -> torch.Tensor:
        y, y_new = flipped(labels, attribute, direction)
        u = torch.randn(x.shape[0], code_dim(model), generator=gen).to(x.device)
        with model_mode(model, training=False):
            return torch.cat([random_transfer(model, xb, yb, nb, ub).cpu()
                              for xb, yb, nb, ub in _in_order([x, y, y_new, u], batch_size)])

    return {"reconstruct": reconstruct, "edit": edit, "random_edit": random_edit}


def style_probe(model: nn.Module, model_name: str, attributes: Sequence[str], train: tuple[torch.Tensor, ...],
                test: tuple[torch.Tensor, ...], seed: int = 0, kind: str = "mlp") -> list[dict]:
    """Rows ``{model, attribute, source, accuracy, chance}``: the kind of glasses / beard read from wᵢ and from z.

    ``train`` and ``test`` are (images, labels (N, k) in the model's order, factors (N, 12)). Only faces
    *with* the attribute count (the kind is drawn only on them); the probe is fitted on the training
    faces' posterior means and scored on the test faces'; ``chance`` is the test accuracy of always
    guessing the commonest kind of the training faces. Sources: ``w`` (the attribute's subspace, CSVAE
    only) and ``z``.
    """
    attributes = list(attributes)
    lat = {}
    for split, (x, y, f) in (("train", train), ("test", test)):
        if not x.shape[0] == y.shape[0] == f.shape[0]:
            raise ValueError(f"{split}: {x.shape[0]} faces, {y.shape[0]} label rows and {f.shape[0]} factor rows: "
                             "pass the images, labels and factors of the same faces")
        lat[split] = encode_all(model, x, y)
    rows = []
    for i, a in enumerate(attributes):
        if a not in STYLE_CLASSES:
            continue
        has = {s: (d[1][:, i] > 0.5) for s, d in (("train", train), ("test", test))}
        kinds = {s: hidden_style_classes(a, d[2])[has[s]].numpy() for s, d in (("train", train), ("test", test))}
        chance = float((kinds["test"] == np.bincount(kinds["train"]).argmax()).mean())
        sources = {"z": lambda L: L["z"]}
        if "w" in lat["train"]:
            sources = {"w": lambda L, i=i: L["w"][:, model.subspace(i)], **sources}
        for src, pick in sources.items():
            acc = probe_accuracy(pick(lat["train"])[has["train"]], kinds["train"], pick(lat["test"])[has["test"]],
                                 kinds["test"], kind=kind, seed=seed)[0]
            rows.append({"model": model_name, "attribute": a, "source": src, "accuracy": float(acc), "chance": chance})
    return rows
