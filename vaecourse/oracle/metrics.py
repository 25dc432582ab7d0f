"""What the oracle measures: an edit's success and leakage, robustness to blur, and the Fréchet distance of its
features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import faces
from ..faces import FaceConfig, attribute_index
from .model import (
    AttributeOracle,
    gaussian_blur,
)


# ----------------------------------------------------------------------------- metrics
def edit_metrics(oracle: AttributeOracle, edited_images: torch.Tensor, target_attr: int | str,
                 target_value: float = 1.0, original_images: torch.Tensor | None = None,
                 threshold: float = 0.5) -> dict[str, float | dict[str, float]]:
    """Score an attribute edit: did the oracle see the requested value, and what else changed?

    ``success_rate``: fraction of edited images whose target attribute reads ``target_value``.
    With ``original_images`` (the same faces before the edit): ``attribute_leakage`` is the
    fraction of (image, other attribute) pairs whose oracle decision flipped, and
    ``factor_leakage`` the mean absolute change of the read-back factors in units of each
    factor's spread in the data (0 = nothing else moved), also given per attribute / factor.
    """
    j = attribute_index(target_attr, oracle.attributes)
    probs, factors = oracle.read(edited_images)  # one pass over each image set
    seen = (probs[:, j] > threshold).float()
    wanted = float(target_value > 0.5)
    out: dict[str, float | dict[str, float]] = {"success_rate": float((seen == wanted).float().mean())}
    if original_images is None:
        return out
    if original_images.shape != edited_images.shape:
        raise ValueError(f"original_images {tuple(original_images.shape)} and edited_images "
                         f"{tuple(edited_images.shape)} must be the same faces, in the same order")
    probs_before, factors_before = oracle.read(original_images)
    before = (probs_before > threshold).float()
    after = (probs > threshold).float()
    others = [i for i in range(len(oracle.attributes)) if i != j]
    flips = (before != after).float().mean(0)
    out["attribute_leakage"] = float(flips[others].mean()) if others else 0.0
    out["attribute_flips"] = {oracle.attributes[i]: float(flips[i]) for i in others}
    change = (factors - factors_before).abs().mean(0)
    per = change / oracle.factor_std.clamp_min(1e-6)
    out["factor_leakage"] = float(per.mean())
    out["factor_shift"] = {name: float(v) for name, v in zip(oracle.factor_names, per)}
    return out


DEFAULT_SIGMAS: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
DEFAULT_NOISE: tuple[float, ...] = (0.05, 0.1)


def _rates(prob: torch.Tensor, truth: torch.Tensor, threshold: float) -> dict[str, float | int]:
    seen, pos = prob > threshold, truth > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return {"recall": float((seen & pos).sum()) / n_pos if n_pos else float("nan"),
            "false_positive_rate": float((seen & ~pos).sum()) / n_neg if n_neg else float("nan"),
            "accuracy": float((seen == pos).float().mean()) if len(pos) else float("nan"),
            "n_pos": n_pos, "n_neg": n_neg}


def robustness_table(oracle: AttributeOracle, n: int = 1000, *, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                     noise: Sequence[float] = DEFAULT_NOISE, toggled: bool = True, split: str = "test",
                     seed: int = 0, threshold: float = 0.5) -> list[dict[str, object]]:
    """What the oracle reads on degraded faces: recall and false positives per attribute and condition.

    The first ``n`` faces of ``split`` (faces the oracle was not trained on) are read crisp
    (``sigma`` 0), blurred by a Gaussian of each of ``sigmas`` pixels, with additive pixel noise of
    each std in ``noise`` (clipped to [0, 1]), and, with ``toggled``, re-rendered with one attribute
    flipped (the row of that attribute reads the flipped faces: the ground-truth edit). Returns rows
    ``{condition, attribute, recall, false_positive_rate, accuracy, n_pos, n_neg}``; recall is over
    faces with the attribute, false positives over faces without it. A few seconds for 1000 faces.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 faces, got {n}")
    config = FaceConfig(**oracle.meta["config"]) if "config" in oracle.meta else FaceConfig(size=oracle.size)
    config.size = oracle.size
    attrs, factors = faces.sample_split(config, split, n)
    columns = [attribute_index(a) for a in oracle.attributes]
    crisp = faces.render_faces(attrs, factors, oracle.size)
    gen = torch.Generator().manual_seed(seed)
    conditions: list[tuple[str, torch.Tensor]] = []
    for s in sigmas:
        conditions.append(("crisp" if s == 0 else f"blur {s:g} px", gaussian_blur(crisp, float(s))))
    for s in noise:
        conditions.append((f"noise {s:g}", (crisp + s * torch.randn(crisp.shape, generator=gen)).clamp(0.0, 1.0)))
    rows: list[dict[str, object]] = []
    for name, images in conditions:
        prob = oracle.predict_attributes(images)
        for j, attribute in enumerate(oracle.attributes):
            rows.append({"condition": name, "attribute": attribute,
                         **_rates(prob[:, j], attrs[:, columns[j]], threshold)})
    if toggled:
        for j, attribute in enumerate(oracle.attributes):
            flipped = faces.toggle(attrs, columns[j])
            prob = oracle.predict_attributes(faces.render_faces(flipped, factors, oracle.size))
            rows.append({"condition": "toggled", "attribute": attribute,
                         **_rates(prob[:, j], flipped[:, columns[j]], threshold)})
    return rows


def format_robustness(rows: Sequence[dict], digits: int = 1) -> str:
    """A markdown table of :func:`robustness_table` rows: one line per attribute, "recall / false positives" in %."""
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    attributes = list(dict.fromkeys(r["attribute"] for r in rows))
    cell = {(r["condition"], r["attribute"]): r for r in rows}

    def pct(v: float) -> str:
        return "—" if v != v else f"{100 * v:.{digits}f}"

    lines = ["| recall / false positives (%) | " + " | ".join(conditions) + " |",
             "|---|" + "---|" * len(conditions)]
    for a in attributes:
        parts = [f"{pct(cell[c, a]['recall'])} / {pct(cell[c, a]['false_positive_rate'])}"
                 if (c, a) in cell else "" for c in conditions]
        lines.append(f"| {a} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(oracle: AttributeOracle, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between real and generated images in the oracle's feature space (not Inception FID).

    ||mu_r - mu_f||^2 + Tr(C_r + C_f - 2 (C_r^1/2 C_f C_r^1/2)^1/2), in float64. Two samples of
    the same images give about 0 (a small positive bias that shrinks with the sample size).
    """
    stats = []
    for images in (real, fake):
        if images.shape[0] < 2:
            raise ValueError("the Fréchet distance needs at least 2 images on each side "
                             "(a few hundred for stable numbers)")
        h = oracle.features(images).double()
        stats.append((h.mean(0), torch.cov(h.T)))
    (m1, c1), (m2, c2) = stats
    s1 = _sqrtm_psd(c1)
    cross = _sqrtm_psd(s1 @ c2 @ s1)
    value = (m1 - m2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * torch.trace(cross)
    return float(value.clamp_min(0.0))


def oracle_summary(oracle: AttributeOracle) -> dict[str, object]:
    """What a results file should record about the oracle used."""
    keys: Sequence[str] = ("oracle_version", "faces_version", "key", "size", "accuracy", "train_seconds")
    return {k: oracle.meta.get(k) for k in keys}
