"""An attribute oracle for the procedural faces, and the metrics it makes possible.

The oracle is a small CNN trained on the faces' ground truth: a head that says which attributes
an image shows, and a head that reads back the nuisance factors. With it an edit can be scored:
did the requested attribute appear (success rate), did other attributes flip or nuisance
factors move (leakage)? Its penultimate features give an image-quality score, the Fréchet
distance between real and generated images *in the oracle's feature space* (this is not
Inception FID, whose weights cannot be downloaded everywhere; its numbers are not comparable).

Training takes well under a minute on a CPU; the weights are cached on disk under a key made of
FACES_VERSION, ORACLE_VERSION and the faces' parameters, written atomically and read back with
``torch.load(..., weights_only=True)``. A cached oracle of another faces version is retrained,
never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import faces
from .batching import batched_apply
from .data import REPO_DATA
from .faces import FaceConfig, attribute_index

ORACLE_VERSION = "1"  # bump when the net, its training or its saved format changes
UNIFORM_STD = 12 ** -0.5  # std of a factor uniform on [0, 1]: the factors' scale for the regression head


def cache_dir() -> Path:
    """Where oracles are cached: ``VAECOURSE_CACHE`` if set, else the repository's ``data/cache``."""
    env = os.environ.get("VAECOURSE_CACHE")
    return Path(env).expanduser() if env else REPO_DATA / "cache"


class OracleNet(nn.Module):
    """Conv trunk -> 128 features -> attribute logits and standardised factor predictions."""

    def __init__(self, size: int = 32, n_attributes: int = 3, n_factors: int = 12, width: int = 16,
                 n_features: int = 128) -> None:
        super().__init__()
        if size not in (32, 64):
            raise ValueError(f"the oracle takes 32x32 or 64x64 images, got {size}")
        w = width
        stem = 2 if size == 64 else 1  # a 64x64 input is halved by the first conv: same cost after it
        self.trunk = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=stem, padding=1), nn.BatchNorm2d(w), nn.ReLU(),               # 32x32
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),           # 16x16
            nn.Conv2d(2 * w, 3 * w, 3, stride=2, padding=1), nn.BatchNorm2d(3 * w), nn.ReLU(),       # 8x8
            nn.Conv2d(3 * w, 4 * w, 3, stride=2, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),       # 4x4
            nn.Flatten(),
            nn.Linear(4 * w * 16, n_features), nn.ReLU(),
        )
        self.attr_head = nn.Linear(n_features, n_attributes)
        self.factor_head = nn.Linear(n_features, n_factors)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.attr_head(h), self.factor_head(h), h


def oracle_loss(model: OracleNet, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """Binary cross-entropy on the attributes plus squared error on the standardised factors."""
    x, y, f = batch
    logits, fpred, _ = model(x.contiguous(memory_format=torch.channels_last))  # faster convs on CPU
    bce = F.binary_cross_entropy_with_logits(logits, y)
    mse = F.mse_loss(fpred, (f - 0.5) / UNIFORM_STD)
    with torch.no_grad():
        acc = ((logits > 0).float() == y).float().mean()
    return {"loss": bce + mse, "bce": bce, "factor_mse": mse, "accuracy": acc}


class AttributeOracle:
    """A trained OracleNet with the names and scales needed to read its outputs."""

    def __init__(self, net: OracleNet, meta: dict, device: torch.device | str | None = None) -> None:
        self.net = net.eval()
        self.meta = meta
        self.attributes: list[str] = list(meta["attributes"])
        self.factor_names: list[str] = list(meta["factor_names"])
        self.factor_std = torch.tensor(meta["factor_std"])
        self.size = int(meta["size"])
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net.to(self.device)
        self.trained_now = bool(meta.get("trained_now", False))

    @torch.no_grad()
    def _run(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"the oracle takes (N, 3, {self.size}, {self.size}) images in [0, 1], "
                             f"got {tuple(images.shape)}; load_oracle(size=...) for another size")
        outs = batched_apply(lambda b: tuple(self.net(b.to(self.device, torch.float32))), images, batch_size)
        return tuple(o.cpu() for o in outs)  # type: ignore[return-value]

    def read(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attribute probabilities (N, A) and read-back factors (N, F) from one pass over ``images``."""
        logits, factors, _ = self._run(images)
        return torch.sigmoid(logits), factors * UNIFORM_STD + 0.5

    def predict_attributes(self, images: torch.Tensor) -> torch.Tensor:
        """Probability of each attribute (N, A), columns named by ``self.attributes``."""
        return self.read(images)[0]

    def predict_factors(self, images: torch.Tensor) -> torch.Tensor:
        """The nuisance factors read back from the images (N, F), in the data's [0, 1] units."""
        return self.read(images)[1]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 128): the space of :func:`frechet_distance`."""
        return self._run(images)[2]

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Per-attribute accuracy on labelled images (labels (N, A) in the oracle's column order)."""
        pred = (self.predict_attributes(images) > 0.5).float()
        acc = (pred == labels.cpu().float()).float().mean(0)
        return {name: float(a) for name, a in zip(self.attributes, acc)}

    def factor_r2(self, images: torch.Tensor, factors: torch.Tensor) -> dict[str, float]:
        """R^2 of the factor read-out per factor (1 = read back exactly)."""
        pred = self.predict_factors(images)
        f = factors.cpu()
        r2 = 1 - ((pred - f) ** 2).mean(0) / f.var(0, unbiased=False).clamp_min(1e-12)
        return {name: float(v) for name, v in zip(self.factor_names, r2)}

    def __repr__(self) -> str:
        acc = ", ".join(f"{k} {v:.3f}" for k, v in self.meta.get("accuracy", {}).items())
        return f"AttributeOracle(size={self.size}, attributes={self.attributes}, held-out accuracy: {acc})"


def oracle_key(config: FaceConfig, n_train: int, epochs: int) -> str:
    """Cache key: faces version and parameters, oracle version and training budget."""
    blob = json.dumps({"faces": config.key(include_sizes=False), "faces_version": faces.FACES_VERSION,
                       "oracle_version": ORACLE_VERSION, "n_train": n_train, "epochs": epochs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_oracle(config: FaceConfig | None = None, *, n_train: int = 10000, n_test: int = 2000, epochs: int = 3,
                 batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device: torch.device | str | None = None,
                 progress: bool | None = None) -> AttributeOracle:
    """Train an oracle on ``n_train`` faces of ``config``'s train split; report accuracy on its test split."""
    from .config import pick_device
    from .train import fit

    config = config or FaceConfig()
    device = torch.device(device) if device is not None else pick_device()
    start = time.perf_counter()
    train = faces.load_faces("train", n=n_train, config=config)
    test = faces.load_faces("test", n=n_test, config=config)
    torch.manual_seed(seed)
    net = OracleNet(config.size, len(faces.ATTRIBUTES), len(faces.FACTOR_NAMES))
    net = net.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def halve_lr(epoch: int, history: object) -> None:  # a short schedule: lr, lr/2, lr/4, ...
        for group in opt.param_groups:
            group["lr"] *= 0.5

    tensors = [t.to(device) for t in (train.images, train.labels, train.factors)]
    history = fit(net, oracle_loss, tensors, epochs=epochs, batch_size=batch_size, optimizer=opt, seed=seed,
                  desc="faces oracle", progress=progress, on_epoch_end=halve_lr)
    seconds = time.perf_counter() - start
    meta = {"oracle_version": ORACLE_VERSION, "faces_version": faces.FACES_VERSION,
            "key": oracle_key(config, n_train, epochs), "config": config.as_dict(), "size": config.size,
            "attributes": list(faces.ATTRIBUTES), "factor_names": list(faces.FACTOR_NAMES),
            "factor_std": train.factors.std(0).tolist(), "n_train": n_train, "epochs": epochs,
            "train_seconds": seconds, "final_loss": history.last("loss") if history.epochs else float("nan")}
    oracle = AttributeOracle(net.cpu(), meta, device)
    meta["accuracy"] = oracle.accuracy(test.images, test.labels)
    meta["factor_r2"] = oracle.factor_r2(test.images, test.factors)
    return oracle


def _save(path: Path, oracle: AttributeOracle) -> None:
    from .train import atomic_torch_save

    state = {k: v.detach().cpu() for k, v in oracle.net.state_dict().items()}
    meta = {k: v for k, v in oracle.meta.items() if k != "trained_now"}
    atomic_torch_save({"state_dict": state, "meta": meta}, path)


def load_oracle(config: FaceConfig | int | None = None, device: torch.device | str | None = None, *,
                retrain: bool = False, cache: str | Path | None = None, n_train: int = 10000, epochs: int = 3,
                seed: int = 0, verbose: bool = True, progress: bool | None = None) -> AttributeOracle:
    """The oracle for faces ``config`` (or an image size, 32 or 64): from the cache, else trained and cached.

    A cached file whose recorded faces/oracle version or parameters differ from today's is
    retrained (and says so); ``retrain=True`` always retrains.
    """
    if config is None or isinstance(config, int):
        config = FaceConfig(size=config or 32)
    key = oracle_key(config, n_train, epochs)
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    path = folder / f"faces_oracle_{config.size}px_{key}.pt"
    say = print if verbose else (lambda *a, **k: None)
    if path.is_file() and not retrain:
        reason = None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            meta = blob["meta"]
            if meta.get("faces_version") != faces.FACES_VERSION:
                reason = f"it was trained on faces version {meta.get('faces_version')}, now {faces.FACES_VERSION}"
            elif meta.get("oracle_version") != ORACLE_VERSION:
                reason = f"it is oracle version {meta.get('oracle_version')}, now {ORACLE_VERSION}"
            elif meta.get("key") != key:
                reason = "its faces parameters differ"
            else:
                net = OracleNet(config.size, len(meta["attributes"]), len(meta["factor_names"]))
                net.load_state_dict(blob["state_dict"])
        except Exception as err:  # an unreadable or mismatched cache file is replaced, not trusted
            reason = f"it could not be read ({type(err).__name__}: {err})"
        if reason is None:
            oracle = AttributeOracle(net, meta, device or "cpu")
            say(f"faces oracle loaded from {path} (held-out accuracy "
                + ", ".join(f"{k} {v:.3f}" for k, v in meta["accuracy"].items()) + ")")
            return oracle
        say(f"cached oracle {path} not used: {reason}; retraining")
    oracle = train_oracle(config, n_train=n_train, epochs=epochs, seed=seed, device=device, progress=progress)
    oracle.meta["trained_now"] = True
    oracle.trained_now = True
    _save(path, oracle)
    say(f"faces oracle trained in {oracle.meta['train_seconds']:.1f} s, cached at {path} (held-out accuracy "
        + ", ".join(f"{k} {v:.3f}" for k, v in oracle.meta["accuracy"].items()) + ")")
    return oracle


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
