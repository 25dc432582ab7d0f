"""The attribute oracle: its network, augmentations, training, and the cache that keeps one trained oracle per face
configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import faces
from ..batching import batched_apply
from ..config import shown_path
from ..data import REPO_DATA
from ..faces import FaceConfig

ORACLE_VERSION = "3"  # bump when the net, its training or its saved format changes (2: an interim recipe)
UNIFORM_STD = 12 ** -0.5  # std of a factor uniform on [0, 1]: the factors' scale for the regression head
QUALITY_WEIGHT = 0.25  # weight of the blur/noise read-back: enough to keep blur in the features, small beside the rest


def cache_dir() -> Path:
    """Where oracles are cached: ``VAECOURSE_CACHE`` if set, else the repository's ``data/cache``."""
    env = os.environ.get("VAECOURSE_CACHE")
    return Path(env).expanduser() if env else REPO_DATA / "cache"


def gaussian_blur(images: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Blur (N, C, H, W) images by a Gaussian of std ``sigma`` pixels: one number, or one per image (0 = unchanged).

    The kernel reaches 3 sigma and the borders reflect, as in torchvision's ``gaussian_blur`` with
    ``kernel_size = 2 * ceil(3 * sigma) + 1`` (the same numbers for one sigma).
    """
    n, c, h, w = images.shape
    sig = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).flatten()
    if sig.numel() == 1:
        sig = sig.expand(n)
    if sig.numel() != n:
        raise ValueError(f"sigma must be one number or one per image ({n}), got {sig.numel()}")
    if not bool(torch.isfinite(sig).all()) or bool((sig < 0).any()):
        raise ValueError("sigma must be finite and >= 0 (pixels)")
    radius = math.ceil(3 * float(sig.max())) if n else 0
    if radius == 0:
        return images.clone()
    if radius >= min(h, w):
        raise ValueError(f"sigma {float(sig.max()):g} px is too wide for {h}x{w} images")
    d = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (d / sig.clamp_min(1e-3)[:, None]) ** 2)  # sigma 0: a unit impulse
    k = k * (d.abs() <= torch.ceil(3 * sig)[:, None])  # each image's kernel ends at its own 3 sigma
    k = k / k.sum(1, keepdim=True)  # (N, K)

    def matrix(size: int) -> torch.Tensor:  # (N, size, size): blurring one axis, borders reflected
        i = torch.arange(size, device=images.device)[:, None] + d.long()[None]  # (size, K) source pixels
        i = torch.where(i < 0, -i, torch.where(i >= size, 2 * (size - 1) - i, i))
        m = torch.zeros(n, size, size, dtype=images.dtype, device=images.device)
        return m.scatter_add_(2, i.expand(n, -1, -1), k[:, None, :].expand(n, size, -1))

    # two batched matrix products (rows, then columns) run far faster on a CPU than per-image depthwise convs
    rows = matrix(h)
    cols = rows if w == h else matrix(w)
    return rows[:, None] @ images @ cols[:, None].transpose(-1, -2)


@dataclass(frozen=True)
class Augmentation:
    """How training faces are degraded so the oracle reads decoders' images, which are softer than the data.

    Each face is left as drawn with probability ``p_clean``; otherwise it is blurred by a Gaussian of
    sigma drawn uniformly in [0, ``max_blur``] pixels (for 32 px; scaled with the image size), gets
    a random contrast and brightness change, and with probability ``p_noise`` additive pixel noise
    of std drawn in [0, ``max_noise``]. Only appearance changes: the labels stay true, so a face
    whose glasses are blurred is still a face with glasses, and a smudge without them is not.
    """

    p_clean: float = 0.2
    max_blur: float = 2.0
    contrast: float = 0.15
    brightness: float = 0.05
    p_noise: float = 0.5
    max_noise: float = 0.15

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Degraded copies of the faces ``x`` (N, 3, H, W) in [0, 1]."""
        return self.apply(x, generator)[0]

    def scales(self, size: int) -> tuple[float, float]:
        """The largest blur (pixels, at ``size``) and noise std this augmentation draws."""
        return self.max_blur * size / 32, self.max_noise

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Degraded faces, and each face's blur sigma (pixels) and noise std (0 for a face left as drawn)."""
        n = x.shape[0]

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=x.device, dtype=x.dtype)

        keep = (uniform(n) < self.p_clean).to(x.dtype).view(n, 1, 1, 1)
        sigma = uniform(n) * self.scales(x.shape[-1])[0]
        y = gaussian_blur(x, sigma)
        mean = y.mean((1, 2, 3), keepdim=True)
        gain = 1 + self.contrast * (2 * uniform(n, 1, 1, 1) - 1)
        shift = self.brightness * (2 * uniform(n, 1, 1, 1) - 1)
        y = (y - mean) * gain + mean + shift
        std = self.max_noise * uniform(n, 1, 1, 1) * (uniform(n, 1, 1, 1) < self.p_noise).to(x.dtype)
        y = y + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        degraded = 1 - keep.flatten()
        return torch.lerp(y.clamp(0.0, 1.0), x, keep), sigma * degraded, std.flatten() * degraded


class OracleNet(nn.Module):
    """Conv trunk -> 128 features -> attribute logits, standardised factors, and (``quality_head``) blur and noise.

    The quality head is trained to read back the augmentation's blur and noise, so the features
    keep what blur does to an image while the attribute head learns to see past it: the Fréchet
    distance in these features still grows with blur.
    """

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
        self.quality_head = nn.Linear(n_features, 2)  # blur and noise read back: keeps them in the features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.attr_head(h), self.factor_head(h), h


def oracle_loss(model: OracleNet, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """Binary cross-entropy on the attributes plus squared error on the standardised factors.

    A batch (x, y, f, q) with q the (N, 2) blur and noise applied to x, each in [0, 1] of its largest
    value, also trains the quality head on them (squared error on the factors' scale, times QUALITY_WEIGHT).
    """
    x, y, f = batch[:3]
    logits, fpred, h = model(x.contiguous(memory_format=torch.channels_last))  # faster convs on CPU
    bce = F.binary_cross_entropy_with_logits(logits, y)
    mse = F.mse_loss(fpred, (f - 0.5) / UNIFORM_STD)
    terms = {"bce": bce, "factor_mse": mse}
    loss = bce + mse
    if len(batch) > 3:
        terms["quality_mse"] = F.mse_loss(model.quality_head(h), (batch[3] - 0.5) / UNIFORM_STD)
        loss = loss + QUALITY_WEIGHT * terms["quality_mse"]
    with torch.no_grad():
        acc = ((logits > 0).float() == y).float().mean()
    return {"loss": loss, **terms, "accuracy": acc}


def held_out_accuracy_text(accuracy: dict[str, float]) -> str:
    """The oracle's held-out accuracies (stored as fractions) in percent, as the lessons print every other
    accuracy: "glasses 99.9 %, facial_hair 98.6 %"."""
    return ", ".join(f"{name} {100 * value:.1f} %" for name, value in accuracy.items())


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

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a ValueError that names the fix unless ``images`` is (N, 3, size, size), float, finite."""
        want = f"(N, 3, {self.size}, {self.size}) float images in [0, 1]"
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"the oracle takes a tensor of {want}, got {type(images).__name__}")
        if images.ndim != 4:
            hint = "; for one image pass x[None]" if images.ndim == 3 else ""
            raise ValueError(f"the oracle takes a batch of {want}, got shape {tuple(images.shape)}{hint}")
        if images.shape[1] != 3:
            hint = (": grey images can be repeated to RGB with x.expand(-1, 3, -1, -1)" if images.shape[1] == 1
                    else "; channels come second (N, C, H, W): for (N, H, W, C) pass x.permute(0, 3, 1, 2)"
                    if images.shape[-1] == 3 else "")
            raise ValueError(f"the oracle reads RGB faces {want}, got {images.shape[1]} channels "
                             f"(shape {tuple(images.shape)}){hint}")
        if images.shape[2:] != (self.size, self.size):
            h, w = images.shape[2:]
            fix = (f"load_oracle({h}) reads {h}x{w} faces" if h == w and h in faces.SIZES
                   else "resize them with torch.nn.functional.interpolate")
            raise ValueError(f"this oracle reads {self.size}x{self.size} faces {want}, got {h}x{w} images; {fix}")
        if not images.is_floating_point():
            raise ValueError(f"the oracle takes {want}, got dtype {images.dtype}; "
                             "for 8-bit images pass x.float() / 255")
        if images.numel() and not bool(torch.isfinite(images).all()):
            raise ValueError("the images hold NaN or infinite values: check the model that drew them")

    @torch.no_grad()
    def _run(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, ...]:
        """Attribute logits, standardised factors, features and quality outputs, in batches."""
        self.check_images(images)

        def one(b: torch.Tensor) -> tuple[torch.Tensor, ...]:
            logits, factors, h = self.net(b.to(self.device, torch.float32))
            return logits, factors, h, self.net.quality_head(h)

        return tuple(o.cpu() for o in batched_apply(one, images, batch_size))

    def read(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attribute probabilities (N, A) and read-back factors (N, F) from one pass over ``images``."""
        logits, factors = self._run(images)[:2]
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

    def blur_and_noise(self, images: torch.Tensor) -> torch.Tensor:
        """Blur sigma (pixels) and noise std (N, 2) the oracle reads in ``images`` (0, 0 for crisp faces).

        Read back as the training augmentation drew them, so within its range (``meta["augmentation"]``).
        """
        augment = self.meta.get("augmentation")
        if not augment:
            raise ValueError("this oracle was trained without augmentation: it cannot read blur or noise")
        scale = torch.tensor(Augmentation(**augment).scales(self.size))
        return ((self._run(images)[3] * UNIFORM_STD + 0.5) * scale).clamp_min(0.0)

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
        return (f"AttributeOracle(size={self.size}, attributes={self.attributes}, "
                f"held-out accuracy: {held_out_accuracy_text(self.meta.get('accuracy', {}))})")


DEFAULT_AUGMENTATION = Augmentation()


def oracle_key(config: FaceConfig, n_train: int, epochs: int,
               augment: Augmentation | None = DEFAULT_AUGMENTATION, seed: int = 0) -> str:
    """Cache key: faces version and parameters, oracle version, training budget, augmentation and seed."""
    blob = json.dumps({"faces": config.key(include_sizes=False), "faces_version": faces.FACES_VERSION,
                       "oracle_version": ORACLE_VERSION, "n_train": n_train, "epochs": epochs, "seed": seed,
                       "augment": asdict(augment) if augment is not None else None}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_oracle(config: FaceConfig | None = None, *, n_train: int = 20000, n_test: int = 2000, epochs: int = 4,
                 batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device: torch.device | str | None = None,
                 augment: Augmentation | None = DEFAULT_AUGMENTATION, width: int = 24, n_robustness: int = 1000,
                 progress: bool | None = None) -> AttributeOracle:
    """Train an oracle on ``n_train`` faces of ``config``'s train split, each batch degraded by ``augment``.

    Its accuracy on crisp faces of the test split goes to ``meta["accuracy"]`` and the robustness
    table on ``n_robustness`` test faces (0 skips it) to ``meta["robustness"]``.
    """
    from ..config import pick_device
    from ..train import adam, fit

    config = config or FaceConfig()
    device = torch.device(device) if device is not None else pick_device()
    start = time.perf_counter()
    train = faces.load_faces("train", n=n_train, config=config)
    test = faces.load_faces("test", n=n_test, config=config)
    torch.manual_seed(seed)
    net = OracleNet(config.size, len(faces.ATTRIBUTES), len(faces.FACTOR_NAMES), width=width)
    net = net.to(device, memory_format=torch.channels_last)
    opt = adam(net.parameters(), lr=lr)
    noise = torch.Generator(device=device).manual_seed(seed + 1)  # the augmentation's own stream

    def loss(model: OracleNet, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        x, y, f = batch
        if augment is None:
            return oracle_loss(model, (x, y, f))
        x, sigma, std = augment.apply(x, noise)
        scale = torch.tensor(augment.scales(x.shape[-1]), device=x.device).clamp_min(1e-6)
        quality = torch.stack([sigma, std], 1) / scale
        return oracle_loss(model, (x, y, f, quality))

    def halve_lr(epoch: int, history: object) -> None:  # a short schedule: lr, lr/2, lr/4, ...
        for group in opt.param_groups:
            group["lr"] *= 0.5

    tensors = [t.to(device) for t in (train.images, train.labels, train.factors)]
    history = fit(net, loss, tensors, epochs=epochs, batch_size=batch_size, optimizer=opt, seed=seed,
                  desc="faces oracle", progress=progress, on_epoch_end=halve_lr)
    seconds = time.perf_counter() - start
    meta = {"oracle_version": ORACLE_VERSION, "faces_version": faces.FACES_VERSION,
            "key": oracle_key(config, n_train, epochs, augment, seed), "config": config.as_dict(), "size": config.size,
            "attributes": list(faces.ATTRIBUTES), "factor_names": list(faces.FACTOR_NAMES),
            "factor_std": train.factors.std(0).tolist(), "n_train": n_train, "epochs": epochs, "seed": seed,
            "width": width,
            "augmentation": asdict(augment) if augment is not None else None,
            "train_seconds": seconds, "final_loss": history.last("loss") if history.epochs else float("nan")}
    oracle = AttributeOracle(net.cpu(), meta, device)
    meta["accuracy"] = oracle.accuracy(test.images, test.labels)
    meta["factor_r2"] = oracle.factor_r2(test.images, test.factors)
    if n_robustness:
        from .metrics import robustness_table  # the metrics module builds on this one

        meta["robustness"] = robustness_table(oracle, n_robustness)
    return oracle


def _save(path: Path, oracle: AttributeOracle) -> None:
    from ..checkpoints import atomic_torch_save

    state = {k: v.detach().cpu() for k, v in oracle.net.state_dict().items()}
    meta = {k: v for k, v in oracle.meta.items() if k != "trained_now"}
    atomic_torch_save({"state_dict": state, "meta": meta}, path)


def load_oracle(config: FaceConfig | int | None = None, device: torch.device | str | None = None, *,
                retrain: bool = False, cache: str | Path | None = None, n_train: int = 20000, epochs: int = 4,
                seed: int = 0, augment: Augmentation | None = DEFAULT_AUGMENTATION, verbose: bool = True,
                progress: bool | None = None) -> AttributeOracle:
    """The oracle for faces ``config`` (or an image size, 32 or 64): from the cache, else trained and cached.

    A cached file whose recorded faces/oracle version or parameters differ from today's is
    retrained (and says so); ``retrain=True`` always retrains.
    """
    if config is None or isinstance(config, int):
        config = FaceConfig(size=config or 32)
    key = oracle_key(config, n_train, epochs, augment, seed)
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
                net = OracleNet(config.size, len(meta["attributes"]), len(meta["factor_names"]), meta.get("width", 16))
                net.load_state_dict(blob["state_dict"])
        except Exception as err:  # an unreadable or mismatched cache file is replaced, not trusted
            reason = f"it could not be read ({type(err).__name__}: {err})"
        if reason is None:
            oracle = AttributeOracle(net, meta, device or "cpu")
            say(f"faces oracle loaded from {shown_path(path)} "
                f"(held-out accuracy {held_out_accuracy_text(meta['accuracy'])})")
            return oracle
        say(f"cached oracle {shown_path(path)} not used: {reason}; retraining")
    oracle = train_oracle(config, n_train=n_train, epochs=epochs, seed=seed, device=device, augment=augment,
                          progress=progress)
    oracle.meta["trained_now"] = True
    oracle.trained_now = True
    _save(path, oracle)
    say(f"faces oracle trained in {oracle.meta['train_seconds']:.1f} s, cached at {path} (held-out accuracy "
        f"{held_out_accuracy_text(oracle.meta['accuracy'])})")
    return oracle
