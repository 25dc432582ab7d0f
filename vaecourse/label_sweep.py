"""Lesson 05's label sweep on the faces: what the unlabelled faces buy, model by model.

The training faces are split once per (fraction, seed) by ``ccvae.label_split``; on the same split
four readers of the attributes are trained, all on the face backbone of ``SweepSettings.width``
channels and for the same number of optimiser steps:

- ``"CCVAE"``: Joy et al.'s (2021) labelled bound on the labelled faces and their unlabelled bound
  (y summed out) on the rest; accuracy of q(y_i | z_c,i) at the posterior mean;
- ``"CCVAE-report"``: Benyahia et al.'s (2024) simplified losses (cross-entropy and entropy terms)
  on the same split;
- ``"classifier"``: the backbone encoder's trunk and a linear head, trained by cross-entropy on the
  labelled faces alone: what the labels buy without the unlabelled faces;
- ``"VAE+probe"``: Kingma et al.'s (2014) M1: a VAE trained on every face *without* labels, then a
  logistic regression per attribute on its posterior means (``vaecourse.probes``), fitted on the
  labelled faces alone. The VAE uses no label, so one VAE serves every split.

Rows: ``{data, model, fraction, labels, seed, accuracy, per_attribute}``, accuracy in [0, 1] averaged
over the attributes (each attribute's own is in ``per_attribute``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from . import ccvae as cc
from .batching import batched_apply
from .classifier import Classifier, accuracy, fit_classifier
from .face_vae import FaceVAE, face_vae_loss
from .probes import probe_accuracy
from .train import fit, model_mode

MODELS = ("CCVAE", "CCVAE-report", "classifier", "VAE+probe")


@dataclass(frozen=True)
class SweepSettings:
    """What every model of the sweep shares: backbone width, optimiser steps of batch ``batch_size``, weights.

    ``alpha`` multiplies the label terms (log q(y|x) in the paper's bound, the cross-entropy in the
    report's), ``beta`` the KL, as in the lesson's main faces model; ``probe_weight_decay`` is the L2
    penalty of the VAE+probe's logistic regression on standardised posterior means (the weight of ‖w‖²
    against the mean log-loss over the labelled faces × attributes). The label-free VAE under the probe
    trains ``vae_steps`` steps at ``vae_width`` (None: ``steps``, ``width``): how well an unsupervised
    VAE organises its latent depends strongly on how long it trains.
    """
    width: int = 16
    steps: int = 600
    batch_size: int = 64
    latent: int = 32
    alpha: float = 1000.0
    beta: float = 4.0
    k: int = 16
    probe_weight_decay: float = 1e-3
    vae_steps: int | None = None
    vae_width: int | None = None

    def __post_init__(self):
        if self.width < 1 or self.steps < 1 or self.batch_size < 1 or self.k < 1:
            raise ValueError(f"width, steps, batch_size and k must be positive, got {asdict(self)}")
        if not (self.alpha > 0 and self.beta > 0 and self.probe_weight_decay >= 0):
            raise ValueError(f"alpha and beta must be positive and probe_weight_decay non-negative, got {asdict(self)}")
        if (self.vae_steps is not None and self.vae_steps < 1) or (self.vae_width is not None and self.vae_width < 1):
            raise ValueError(f"vae_steps and vae_width must be positive (or None: steps, width), got {asdict(self)}")


def _epochs(steps: int, n: int, batch_size: int) -> int:
    """Epochs over ``n`` examples that come closest to ``steps`` optimiser steps (at least one)."""
    return max(1, round(steps / math.ceil(n / batch_size)))


def train_ccvae(form: str, images: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor,
                unlabelled: torch.Tensor, settings: SweepSettings, seed: int,
                progress: bool | None = None, paper_terms: Callable | None = None) -> cc.CCVAE:
    """A faces CCVAE of ``form`` ("paper" or "report") on the labelled and unlabelled faces of one split.

    ``paper_terms`` (None: ``ccvae.paper_supervised_terms``) is the labelled bound the paper's form trains with.
    """
    n_attr = labels.shape[1]
    torch.manual_seed(seed)
    model = cc.CCVAE(images.shape[1:], n_attr, c_dim=n_attr, s_dim=settings.latent - n_attr, labels="binary",
                     kind="face", width=settings.width, likelihood="optimal").to(images.device)
    x_u = images[unlabelled] if len(unlabelled) else None
    epochs = _epochs(settings.steps, len(unlabelled) if len(unlabelled) else len(labelled), settings.batch_size)
    if form == "paper":
        sup = {"k": settings.k, "detach_weight": True, "classifier_weight": settings.alpha}
    else:
        sup = {"ce_weight": settings.alpha}
    cc.fit_ccvae(model, images[labelled], labels[labelled], x_u, form=form, beta=settings.beta, epochs=epochs,
                 batch_size=settings.batch_size, seed=seed, sup_kwargs=sup, progress=progress,
                 sup_terms=paper_terms if form == "paper" else None,
                 desc=f"{form} CCVAE, {len(labelled)} labels")
    return model


def train_classifier(images: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor, settings: SweepSettings,
                     seed: int, progress: bool | None = None) -> Classifier:
    """The backbone's trunk + a linear head per attribute, trained on the labelled faces only, ``steps`` steps."""
    torch.manual_seed(seed)
    clf = Classifier(images.shape[1:], labels.shape[1], binary=True, kind="face", width=settings.width)
    clf = clf.to(images.device)
    fit_classifier(clf, images[labelled], labels[labelled], batch_size=settings.batch_size, seed=seed,
                   epochs=_epochs(settings.steps, len(labelled), settings.batch_size), progress=progress,
                   desc=f"classifier, {len(labelled)} labels")
    return clf


def train_unlabelled_vae(images: torch.Tensor, settings: SweepSettings, seed: int,
                         progress: bool | None = None) -> FaceVAE:
    """A plain backbone VAE (calibrated likelihood) on every face, labels unseen: M1's first stage."""
    torch.manual_seed(seed)
    vae = FaceVAE(images.shape[-1], settings.latent, settings.vae_width or settings.width).to(images.device)
    steps = settings.vae_steps or settings.steps
    fit(vae, face_vae_loss(), [images], epochs=_epochs(steps, len(images), settings.batch_size),
        batch_size=settings.batch_size, seed=seed, progress=progress, desc="VAE without labels")
    return vae


@torch.no_grad()
def posterior_means(vae: FaceVAE, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    with model_mode(vae, training=False):
        return batched_apply(lambda x: vae.encode(x)[0], images, batch_size)


def standardised_means(vae: FaceVAE, train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means of the training and test faces, both scaled by the training means' mean and spread."""
    z_train, z_test = posterior_means(vae, train), posterior_means(vae, test)
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    return (z_train - mean) / std, (z_test - mean) / std


def _row(model: str, fraction: float, labelled: torch.Tensor, seed: int, accuracies: Sequence[float],
         attributes: Sequence[str]) -> dict:
    per = {a: float(v) for a, v in zip(attributes, accuracies)}
    return {"data": "faces", "model": model, "fraction": fraction, "labels": int(len(labelled)), "seed": seed,
            "accuracy": sum(per.values()) / len(per), "per_attribute": per}


def run_sweep(train, test, fractions: Sequence[float], seeds: Sequence[int], settings: SweepSettings,
              models: Sequence[str] = MODELS, extra_seeds_at: float | None = None,
              only_at: dict[str, Sequence[float]] | None = None, progress: bool | None = None,
              paper_terms: Callable | None = None) -> list[dict]:
    """Every model of ``models`` at every fraction with ``seeds[0]``, and at ``extra_seeds_at`` with every seed.

    ``only_at`` limits a model to some fractions, with the first seed only (to fit a profile's time:
    ``{"CCVAE-report": [0.01, 1.0]}``). The label-free VAE under the probe is trained once, with
    ``seeds[0]``, and serves every split. ``train``/``test`` are face data sets (``.images``,
    ``.labels``, ``.classes``). ``paper_terms`` replaces the CCVAE's labelled bound (``fit_ccvae``'s
    ``sup_terms``; lesson 05 passes the bound written in the notebook). Returns the rows.
    """
    only_at = dict(only_at or {})
    unknown = [m for m in list(models) + list(only_at) if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown sweep model(s) {unknown}; choose from {', '.join(MODELS)}")
    if not seeds:
        raise ValueError("give at least one seed")
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"label fractions must be in (0, 1], got {f}")
    runs = [(f, seeds[0]) for f in fractions]
    if extra_seeds_at is not None:
        runs += [(extra_seeds_at, s) for s in seeds[1:]]
    rows: list[dict] = []

    @functools.cache  # it sees no label, so one VAE (trained when first needed) serves every split
    def vae_features() -> tuple[torch.Tensor, torch.Tensor]:
        return standardised_means(train_unlabelled_vae(train.images, settings, seeds[0], progress), train.images,
                                  test.images)

    for fraction, seed in runs:
        here = [m for m in models if m not in only_at or (fraction in only_at[m] and seed == seeds[0])]
        rows += _split_rows(train, test, fraction, seed, settings, here, vae_features, progress, paper_terms)
    return rows


def _split_rows(train, test, fraction: float, seed: int, settings: SweepSettings, models: Sequence[str],
                vae_features: Callable[[], tuple[torch.Tensor, torch.Tensor]], progress: bool | None,
                paper_terms: Callable | None = None) -> list[dict]:
    """The rows of one label split: each model of ``models`` trained on it and read on the test faces."""
    attributes = list(train.classes)
    labelled, unlabelled = cc.label_split(train.labels, fraction, seed=seed)
    labelled, unlabelled = labelled.to(train.images.device), unlabelled.to(train.images.device)
    accuracies: dict[str, list[float]] = {}

    def read(name: str, predicted: torch.Tensor) -> None:
        accuracies[name] = [accuracy(predicted[:, i], test.labels[:, i]) for i in range(len(attributes))]

    for form, name in (("paper", "CCVAE"), ("report", "CCVAE-report")):
        if name in models:
            m = train_ccvae(form, train.images, train.labels, labelled, unlabelled, settings, seed, progress,
                            paper_terms=paper_terms)
            read(name, m.predict(test.images))
    if "classifier" in models:
        read("classifier", train_classifier(train.images, train.labels, labelled, settings, seed, progress)
             .predict(test.images))
    if "VAE+probe" in models:
        z_train, z_test = vae_features()
        # the penalty is per entry of the mean log-loss over labelled faces × attributes: per attribute and summed
        # over the faces, as probe_accuracy takes it, that is weight × faces × attributes
        l2 = settings.probe_weight_decay * len(labelled) * len(attributes)
        accuracies["VAE+probe"] = list(probe_accuracy(z_train[labelled], train.labels[labelled], z_test, test.labels,
                                                      l2=l2, standardise=False))
    return [_row(name, fraction, labelled, seed, acc, attributes) for name, acc in accuracies.items()]


def mean_accuracy(rows: Sequence[dict], model: str, fraction: float) -> float:
    """Mean over seeds of a model's accuracy at one fraction (NaN when it has no row there)."""
    values = [r["accuracy"] for r in rows if r["model"] == model and r["fraction"] == fraction]
    return sum(values) / len(values) if values else float("nan")


def paired_gap(rows: Sequence[dict], model: str, fraction: float, reference: str = "classifier") -> tuple[float, int]:
    """Mean over seeds of (model's accuracy − reference's) at one fraction, pairing rows by seed; and how many seeds.

    Only seeds where both models ran count, so a model run with one seed is not set against a mean of three.
    """
    def by_seed(name: str) -> dict[int, float]:
        return {r["seed"]: r["accuracy"] for r in rows if r["model"] == name and r["fraction"] == fraction}

    mine, ref = by_seed(model), by_seed(reference)
    seeds = sorted(set(mine) & set(ref))
    if not seeds:
        return float("nan"), 0
    return sum(mine[s] - ref[s] for s in seeds) / len(seeds), len(seeds)


def sweep_markdown(rows: Sequence[dict]) -> str:
    """The sweep as a table: one row per (fraction, seed), one column per model, test accuracy in %."""
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    keys = sorted({(r["fraction"], r["seed"], r["labels"]) for r in rows})
    attributes = list(rows[0]["per_attribute"]) if rows else []
    head = ("| labelled faces | seed | " + " | ".join(models) + " |\n|---:|---:|" + "---:|" * len(models) + "\n")
    lines = []
    for fraction, seed, n in keys:
        cells = []
        for m in models:
            r = next((r for r in rows if (r["model"], r["fraction"], r["seed"]) == (m, fraction, seed)), None)
            cells.append("—" if r is None else f"{100 * r['accuracy']:.1f} ("
                         + " / ".join(f"{100 * r['per_attribute'][a]:.0f}" for a in attributes) + ")")
        lines.append(f"| {n} ({100 * fraction:g} %) | {seed} | " + " | ".join(cells) + " |")
    note = (f"\nTest accuracy in %, mean over the attributes (in brackets: {' / '.join(attributes)}).")
    return head + "\n".join(lines) + note
