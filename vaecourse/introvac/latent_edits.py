"""Edits along the classifier's normals w/‖w‖, with δ chosen on validation faces from the latent classifier's
confidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..losses import binary_labels
from ..train import model_mode
from .model import (
    LABELS_FIX,
    VAC,
)


# ----------------------------------------------------------------------------- edits along the normals, measured
@torch.no_grad()
def confident_deltas(model: VAC, images: torch.Tensor, labels: torch.Tensor, *, confidence: float = 0.9,
                     share: float = 0.9, batch_size: int = 256) -> dict[tuple[str, str], float]:
    """δ per (attribute, "add" | "remove"): the smallest step along wₐ/‖wₐ‖ that makes the latent classifier
    ``confidence`` sure on ``share`` of the validation codes that lack (add) or have (remove) the attribute.

    ``images``/``labels`` are *validation* faces with the model's label columns; the δ's are then used
    unchanged on test faces (``edits.smallest_confident_delta``).
    """
    from ..batching import batched_apply
    from ..edits import DIRECTIONS, smallest_confident_delta

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
    from ..edits import check_delta, latent_step, random_latent_step

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
    from ..edits import confident_steps, per_face_step

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
    from ..edits import DIRECTIONS, random_latent_step

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
    from ..batching import batched_apply
    from ..edits import DIRECTIONS, measure_edits

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
