"""Honest edit metrics for the faces lessons (05–07): one schema, measured against what succeeds for free.

An edit is judged by the oracle (``vaecourse.oracle``) per (model, attribute, direction), never
averaged across attributes, and always next to three references:

- ``none``: the unedited reconstruction. "Remove glasses" succeeds for free on a model whose
  reconstructions have already lost them; this row says how much.
- ``random``: a step of the same length along a random latent direction, drawn afresh for each face
  (:func:`random_latent_step`): what any change of that size does.
- ``ground_truth``: the same face re-rendered with the attribute toggled (``faces.render_faces``):
  what a perfect edit looks like to the oracle, and the floor for leakage.

"add" is measured only on test faces without the attribute, "remove" only on faces with it.
Each row is ``{model, attribute, direction, method, n, success, attribute_leakage, factor_leakage}``:

- ``success``: share of the faces on which the oracle reads the requested value;
- ``attribute_leakage``: share of (face, other attribute) pairs whose oracle reading changed
  between the image the method started from and the image it produced;
- ``factor_leakage``: mean absolute change of the oracle's read-back nuisance factors, in units of
  each factor's spread in the data (0 = nothing else moved).

The image a method starts from is the model's reconstruction for ``edit`` and ``random`` (so the
edit's own change is measured, not the reconstruction's), and the original face for ``none`` (what
reconstruction alone changes) and ``ground_truth`` (the oracle's own inconsistency).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from . import faces
from .oracle import AttributeOracle, edit_metrics

DIRECTIONS = ("add", "remove")
METHODS = ("edit", "random", "none", "ground_truth")
# attribute_flips: {other attribute: share of faces whose reading changed}; attribute_leakage is their mean, which
# can hide one attribute that flips often
ROW_KEYS = ("model", "attribute", "direction", "method", "n", "success", "attribute_leakage", "attribute_flips",
            "factor_leakage")

# edit(images, attribute, direction) -> edited images, and likewise for the random-direction baseline
EditFn = Callable[[torch.Tensor, str, str], torch.Tensor]


def check_delta(delta: float) -> float:
    """``delta`` as a float, or a ValueError when it is not a finite number."""
    value = float(delta)
    if not math.isfinite(value):
        raise ValueError(f"the edit's step δ must be a finite number, got {delta!r}; pick it on validation faces "
                         "(e.g. vaecourse.edits.smallest_confident_delta)")
    return value


def check_faces(images: torch.Tensor, all_labels: torch.Tensor, factors: torch.Tensor) -> None:
    """Raise a ValueError naming the fix when the faces, their labels and factors do not belong together."""
    n = images.shape[0]
    if all_labels.shape[0] != n or factors.shape[0] != n:
        raise ValueError(f"{n} faces but {all_labels.shape[0]} label rows and {factors.shape[0]} factor rows: "
                         "pass the images, labels and factors of the same faces (ImageData.take keeps them together)")
    if all_labels.ndim != 2 or all_labels.shape[1] != len(faces.ATTRIBUTES):
        raise ValueError(f"all_labels must hold every attribute {faces.ATTRIBUTES} (N, {len(faces.ATTRIBUTES)}), got "
                         f"{tuple(all_labels.shape)}: load the faces with attributes=None and pick the columns the "
                         "model trains on from them, so the ground truth can be re-rendered")
    if factors.ndim != 2 or factors.shape[1] != len(faces.FACTOR_NAMES):
        raise ValueError(f"factors must be (N, {len(faces.FACTOR_NAMES)}), got {tuple(factors.shape)}")


def check_attribute(attribute: str, trained: Sequence[str]) -> str:
    """``attribute`` if the model was trained on it, else a ValueError listing those it was."""
    if attribute not in trained:
        raise ValueError(f"the model was not trained on {attribute!r}; it knows {', '.join(trained)} "
                         "(train it with that attribute's labels, or measure one of these)")
    return attribute


def _row(model: str, attribute: str, direction: str, method: str, n: int, m: dict) -> dict:
    return {"model": model, "attribute": attribute, "direction": direction, "method": method, "n": int(n),
            "success": float(m["success_rate"]) if n else float("nan"),
            "attribute_leakage": float(m.get("attribute_leakage", float("nan"))) if n else float("nan"),
            "attribute_flips": {k: float(v) for k, v in m.get("attribute_flips", {}).items()} if n else {},
            "factor_leakage": float(m.get("factor_leakage", float("nan"))) if n else float("nan")}


def _in_batches(fn: Callable, x: torch.Tensor, labels: torch.Tensor | None, args: tuple,
                batch_size: int) -> torch.Tensor:
    """``fn(x_batch, *args)`` over ``x`` in batches (with ``labels=`` its rows of ``labels`` when given), on the CPU."""
    outs = [fn(x[i:i + batch_size], *args, **({} if labels is None else {"labels": labels[i:i + batch_size]}))
            for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs).cpu()


@torch.no_grad()
def _check_edit_inputs(oracle: AttributeOracle, attributes: Sequence[str], images: torch.Tensor,
                       all_labels: torch.Tensor, factors: torch.Tensor,
                       reconstruct: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor,
                       trained_on: Sequence[str] | None) -> None:
    """measure_edits' inputs, each refused with what to pass instead."""
    check_faces(images, all_labels, factors)
    if isinstance(reconstruct, torch.Tensor) and reconstruct.shape != images.shape:
        raise ValueError(f"reconstructions of shape {tuple(reconstruct.shape)} for images of shape "
                         f"{tuple(images.shape)}: give one reconstruction per image, in the same order")
    for attribute in attributes:
        if trained_on is not None:
            check_attribute(attribute, trained_on)
    if images.shape[1:] != (3, oracle.size, oracle.size):
        raise ValueError(f"the oracle reads {oracle.size}x{oracle.size} faces, got {tuple(images.shape[1:])}: "
                         f"load_oracle({images.shape[-1]}) for this size")


def measure_edits(oracle: AttributeOracle, model_name: str, attributes: Sequence[str], images: torch.Tensor,
                  all_labels: torch.Tensor, factors: torch.Tensor, *,
                  reconstruct: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor, edit: EditFn,
                  random_edit: EditFn | None = None, ground_truth: bool = True,
                  trained_on: Sequence[str] | None = None, pass_labels: bool = False,
                  batch_size: int = 256, keep_edited: dict | None = None) -> list[dict]:
    """The schema's rows for one model: every attribute in ``attributes``, both directions, all four methods.

    ``images`` (N, 3, H, W) are test faces with ``all_labels`` (N, 3: every attribute, for the
    re-rendered ground truth) and ``factors`` (N, 12). ``reconstruct(x)`` is the model's unedited
    reconstruction, or a tensor of the reconstructions of ``images`` when they are already computed
    (a caller that measures several edits of one model on the same faces decodes them once);
    ``edit(x, attribute, direction)`` its edit ("add" or "remove");
    ``random_edit`` the same-length step along a random direction (omit for models without one).
    ``ground_truth=False`` leaves out the re-rendered reference (e.g. for a second model on the same faces).
    ``trained_on`` names the attributes the model knows: asking for another one is an error.
    ``pass_labels=True`` is for conditional models (a CVAE encodes x with its labels): each callback
    then also gets ``labels=``, the (batch, 3) rows of ``all_labels`` of the faces it is given.
    ``keep_edited``, a dict, receives the edited images under ``(attribute, direction)``, in the order of
    the faces the edit applies to (``add``: those without the attribute, ``remove``: those with it), for
    a caller that looks further at the same edits instead of computing them again.
    """
    if keep_edited is not None and not isinstance(keep_edited, dict):
        raise TypeError(f"keep_edited must be a dict to fill, got {type(keep_edited).__name__}")
    _check_edit_inputs(oracle, attributes, images, all_labels, factors, reconstruct, trained_on)
    rows = []
    labels = all_labels.cpu()
    for attribute in attributes:
        j = faces.attribute_index(attribute, oracle.attributes)
        for direction in DIRECTIONS:
            want = 1.0 if direction == "add" else 0.0
            keep = (labels[:, j] > 0.5) != (direction == "add")  # add: faces without it; remove: faces with it
            idx = keep.nonzero().flatten()
            n = len(idx)
            if n == 0:
                rows += [_row(model_name, attribute, direction, m, 0, {}) for m in METHODS
                         if (m != "random" or random_edit) and (m != "ground_truth" or ground_truth)]
                continue
            x = images[idx.to(images.device)]
            y = labels[idx].to(images.device) if pass_labels else None
            recon = reconstruct[idx.to(reconstruct.device)].cpu() if isinstance(reconstruct, torch.Tensor) \
                else _in_batches(reconstruct, x, y, (), batch_size)
            edited = _in_batches(edit, x, y, (attribute, direction), batch_size)
            if keep_edited is not None:
                keep_edited[(attribute, direction)] = edited
            rows.append(_row(model_name, attribute, direction, "edit", n,
                             edit_metrics(oracle, edited, attribute, want, original_images=recon)))
            if random_edit is not None:
                moved = _in_batches(random_edit, x, y, (attribute, direction), batch_size)
                rows.append(_row(model_name, attribute, direction, "random", n,
                                 edit_metrics(oracle, moved, attribute, want, original_images=recon)))
            rows.append(_row(model_name, attribute, direction, "none", n,
                             edit_metrics(oracle, recon, attribute, want, original_images=x.cpu())))
            if ground_truth:
                attrs = faces.toggle(labels[idx], attribute, want)
                truth = faces.render_faces(attrs, factors[idx.to(factors.device)].cpu(), oracle.size)
                rows.append(_row(model_name, attribute, direction, "ground_truth", n,
                                 edit_metrics(oracle, truth, attribute, want, original_images=x.cpu())))
    return rows


@torch.no_grad()
def leakage_where_all_succeed(oracle: AttributeOracle, attribute: str, direction: str,
                              edited: dict[str, torch.Tensor], started_from: dict[str, torch.Tensor],
                              threshold: float = 0.5) -> dict:
    """Several models' attribute leakage on one group of faces, counted only where every model's edit succeeded.

    ``edited[model]`` and ``started_from[model]`` (its reconstructions) hold the same faces in the same order
    (``measure_edits(..., keep_edited=...)`` keeps the edits). A model that leaves the hard faces unedited
    also leaves their other attributes alone, so its mean leakage looks better than one that edits them;
    on the faces every model edited, the comparison is between like edits. Returns ``{attribute, direction,
    faces, of, leakage: {model: share}, flips: {model: {other attribute: share}}}`` (NaN leakage when no
    face qualifies).
    """
    check_direction(direction)
    if not edited or set(edited) != set(started_from):
        raise ValueError(f"give each model's edited images and the images they started from under the same names, "
                         f"got {sorted(edited)} and {sorted(started_from)}")
    shapes = {tuple(x.shape) for x in [*edited.values(), *started_from.values()]}
    if len(shapes) != 1:
        raise ValueError(f"every model's edited and starting images must be the same faces in the same order, got "
                         f"shapes {sorted(shapes)}")
    j = faces.attribute_index(attribute, oracle.attributes)
    others = [i for i in range(len(oracle.attributes)) if i != j]
    readings, every = {}, None
    for name in edited:
        before = oracle.read(started_from[name])[0] > threshold
        after = oracle.read(edited[name])[0] > threshold
        succeeded = after[:, j] == (direction == "add")
        every = succeeded if every is None else every & succeeded
        readings[name] = (before, after)
    n = int(every.sum())
    flips = {name: ((b[every] != a[every]).float().mean(0) if n else torch.full((len(oracle.attributes),), math.nan))
             for name, (b, a) in readings.items()}
    return {"attribute": attribute, "direction": direction, "faces": n, "of": int(every.numel()),
            "leakage": {name: float(f[others].mean()) for name, f in flips.items()},
            "flips": {name: {oracle.attributes[i]: float(f[i]) for i in others} for name, f in flips.items()}}


@torch.no_grad()
def readback(oracle: AttributeOracle, model_name: str, attributes: Sequence[str], reconstructions: torch.Tensor,
             all_labels: torch.Tensor) -> list[dict]:
    """Rows ``{model, attribute, accuracy}``: the oracle on a model's test reconstructions against the true labels."""
    if reconstructions.shape[0] != all_labels.shape[0]:
        raise ValueError(f"{reconstructions.shape[0]} reconstructions but {all_labels.shape[0]} label rows: "
                         "pass the labels of the reconstructed faces, in the same order")
    acc = oracle.accuracy(reconstructions, all_labels)
    return [{"model": model_name, "attribute": a, "accuracy": float(acc[a])} for a in attributes]


def unit_direction(u: torch.Tensor) -> torch.Tensor:
    """u/‖u‖, or a ValueError when u is not a finite, non-zero vector."""
    if not torch.isfinite(u).all() or float(u.norm()) == 0:
        raise ValueError("the edit direction must be a finite, non-zero vector")
    return u / u.norm()


def check_direction(direction: str) -> float:
    """+1 for "add", −1 for "remove", or a ValueError naming the two."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'add' or 'remove', got {direction!r}")
    return 1.0 if direction == "add" else -1.0


def latent_step(u: torch.Tensor, delta: float) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """z ↦ z ± δ·u/‖u‖ ("add" moves along u, "remove" against it): the VAC's edit, or a random baseline."""
    delta = check_delta(delta)
    unit = unit_direction(u)

    def step(z: torch.Tensor, direction: str) -> torch.Tensor:
        return z + check_direction(direction) * delta * unit.to(z)

    return step


def per_face_step(u: torch.Tensor, deltas: torch.Tensor) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """z ↦ z ± δₙ·u/‖u‖ with a step δₙ of its own for each face n (``deltas``, shape (N,))."""
    deltas = check_deltas(deltas)
    unit = unit_direction(u)

    def step(z: torch.Tensor, direction: str) -> torch.Tensor:
        sign = check_direction(direction)
        if len(z) != len(deltas):
            raise ValueError(f"{len(z)} codes but {len(deltas)} per-face steps: give one δ per face")
        return z + sign * deltas.to(z)[:, None] * unit.to(z)

    return step


def check_deltas(deltas: torch.Tensor) -> torch.Tensor:
    """Per-face steps as a 1-D float tensor, or a ValueError when one is not a finite number."""
    deltas = torch.as_tensor(deltas, dtype=torch.float32).reshape(-1)
    if not bool(torch.isfinite(deltas).all()):
        raise ValueError("every per-face step δ must be a finite number; choose them with edits.confident_steps")
    return deltas


def random_latent_step(delta: float | torch.Tensor, generator: torch.Generator
                       ) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """z ↦ z + δ·v with a fresh random unit direction v for every face: the ``random`` baseline.

    One direction for all faces is a lottery: on the course's backbone (latent 32, δ = 3) single random
    directions made the oracle read glasses on 28–82 % of test faces, depending on the draw; a direction
    per face averages that out (35 %, the attribute's base rate 32 %). The sign does not matter for a
    random direction, so "add" and "remove" take the same kind of step. ``delta`` is one step for every
    face, or a tensor of one per face (to match an edit whose step differs from face to face).
    """
    per_face = isinstance(delta, torch.Tensor) and delta.ndim > 0
    delta = check_deltas(delta) if per_face else check_delta(delta)

    def step(z: torch.Tensor, direction: str) -> torch.Tensor:
        check_direction(direction)
        if per_face and len(z) != len(delta):
            raise ValueError(f"{len(z)} codes but {len(delta)} per-face steps: give one δ per face")
        v = torch.randn(z.shape, generator=generator).to(z)
        length = delta.to(z)[:, None] if per_face else delta
        return z + length * v / v.norm(dim=1, keepdim=True)

    return step


def random_unit(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A direction drawn uniformly on the unit sphere of ``dim`` dimensions."""
    v = torch.randn(dim, generator=generator)
    return v / v.norm()


DELTA_GRID = tuple(0.25 * k for k in range(1, 41))  # candidate steps δ: 0.25 … 10 latent units


def smallest_confident_delta(logit_of: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, u: torch.Tensor,
                             direction: str, *, confidence: float = 0.9, share: float = 0.9,
                             deltas: Sequence[float] = DELTA_GRID) -> float:
    """The smallest δ at which the latent classifier puts ``share`` of the moved codes on the requested side.

    ``logit_of(z)`` is the classifier's logit of one attribute; ``z`` are validation codes that do not
    yet have the requested value; ``u`` the edit direction. Chosen on validation faces, then used
    unchanged on test faces (so the test numbers are not tuned on).
    """
    target = math.log(confidence / (1 - confidence))
    for d in deltas:
        moved = latent_step(u, d)(z, direction)
        logit = logit_of(moved)
        hit = (logit > target) if direction == "add" else (logit < -target)
        if float(hit.float().mean()) >= share:
            return float(d)
    raise ValueError(f"no δ up to {deltas[-1]:g} makes the classifier {confidence:.0%} confident on {share:.0%} of the "
                     "codes: the direction may not carry the attribute (train longer, or check the classifier)")


def confident_steps(logit_of: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, u: torch.Tensor,
                    direction: str, *, confidence: float = 0.9, deltas: Sequence[float] = DELTA_GRID) -> torch.Tensor:
    """Per face, the smallest δ on the grid at which the latent classifier gives the requested value ``confidence``.

    The automatic rule Maggipinto et al. (2020) mention ("move until the image is confidently
    classified"), applied face by face: a face that is easy to convince moves a little, a hard one
    further, where one δ for all faces must be large enough for the hardest ones and overshoots the
    rest (what overshooting does: other attributes change). A face that no δ on the grid convinces
    gets the grid's last value. ``logit_of(z)`` is the classifier's logit of one attribute.
    """
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must lie between 0.5 and 1 (a probability), got {confidence}")
    target = math.log(confidence / (1 - confidence))
    out = torch.full((len(z),), float(deltas[-1]))
    done = torch.zeros(len(z), dtype=torch.bool)
    for d in sorted(deltas):
        logit = logit_of(latent_step(u, d)(z, direction)).cpu()
        hit = (logit > target) if direction == "add" else (logit < -target)
        out[hit & ~done] = float(d)
        done |= hit
        if bool(done.all()):
            break
    return out


def edits_markdown(rows: Sequence[dict]) -> str:
    """The rows as a markdown table (success and leakage in %), one line per (model, attribute, direction, method)."""
    head = ("| model | attribute | direction | method | faces | success (%) | attribute leakage (%) | "
            "factor leakage (spread) |\n|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['model']} | {r['attribute']} | {r['direction']} | {r['method']} | {r['n']} | "
             f"{100 * r['success']:.1f} | {100 * r['attribute_leakage']:.1f} | {r['factor_leakage']:.3f} |"
             for r in rows]
    return head + "\n".join(lines)


def readback_markdown(rows: Sequence[dict]) -> str:
    """Readback rows as a markdown table: one row per model, one column per attribute (accuracy in %)."""
    attributes = list(dict.fromkeys(r["attribute"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    acc = {(r["model"], r["attribute"]): r["accuracy"] for r in rows}
    head = "| model | " + " | ".join(f"{a} (%)" for a in attributes) + " |\n|---|" + "---|" * len(attributes) + "\n"
    lines = ["| " + m + " | " + " | ".join(f"{100 * acc[(m, a)]:.1f}" if (m, a) in acc else "–" for a in attributes)
             + " |" for m in models]
    return head + "\n".join(lines)


def row(rows: Sequence[dict], model: str, attribute: str, direction: str, method: str) -> dict:
    """The one row of ``rows`` for this (model, attribute, direction, method), or a KeyError naming it."""
    for r in rows:
        if (r["model"], r["attribute"], r["direction"], r["method"]) == (model, attribute, direction, method):
            return r
    raise KeyError(f"no edit row for model {model!r}, attribute {attribute!r}, direction {direction!r}, "
                   f"method {method!r}")


def check_edits(lesson, rows: Sequence[dict], model: str, attributes: Sequence[str], *,
                success_above: float | dict, leakage_below: float | dict, gain_above: float) -> None:
    """The lesson's checks for ``model``, one per (attribute, direction): success, leakage, and success − none.

    Thresholds are in percent (points for the gain over the unedited reconstruction). Never averaged
    over attributes: one failing attribute fails its own check. ``success_above`` and ``leakage_below``
    may each be a dict {(attribute, direction): threshold, "default": threshold} where an edit is known
    to miss the target (the lesson says so next to the checks).
    """
    for name, value in (("success_above", success_above), ("leakage_below", leakage_below)):
        if isinstance(value, dict) and "default" not in value:
            raise ValueError(f'{name} as a dict needs a "default" threshold besides its (attribute, direction) ones')

    def threshold(value: float | dict, attribute: str, direction: str) -> float:
        return value.get((attribute, direction), value["default"]) if isinstance(value, dict) else value

    for attribute in attributes:
        for direction in DIRECTIONS:
            e = row(rows, model, attribute, direction, "edit")
            free = row(rows, model, attribute, direction, "none")
            what = f"{model}, {direction} {attribute}"
            lesson.check(f"{what}: oracle success (%)", 100 * e["success"],
                         above=threshold(success_above, attribute, direction))
            lesson.check(f"{what}: attribute leakage (%)", 100 * e["attribute_leakage"],
                         below=threshold(leakage_below, attribute, direction))
            lesson.check(f"{what}: success minus the unedited reconstruction's (points)",
                         100 * (e["success"] - free["success"]), above=gain_above)
