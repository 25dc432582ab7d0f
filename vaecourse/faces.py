"""Procedurally drawn faces with known attributes and nuisance factors.

CelebA is what the attribute-editing papers use, but it cannot be downloaded everywhere and it
has no ground truth for "did only the glasses change?". These faces can: every image is drawn
from a few numbers, so a lesson can render the *same* face with an attribute toggled and an
oracle (``vaecourse.oracle``) can measure what an edit changed.

Each face has binary attributes (``ATTRIBUTES``: glasses, facial hair, smile) and continuous
nuisance factors (``FACTOR_NAMES``), all stored as numbers in [0, 1] (``FACTOR_RANGES`` says what
0 and 1 mean). Attributes and factors are drawn through a Gaussian copula, so attribute rates
and correlations between any two of them are parameters of :class:`FaceConfig`. The default
couples facial hair with face width, mirroring the facial hair / gender correlation that
IntroVAC reports on CelebA.

Drawing uses soft masks on a coordinate grid (coverage ramps one pixel wide, i.e. antialiased),
vectorised over the batch, in chunks. Only arithmetic, square roots, abs and min/max are used per pixel and the
sampling runs in float64, so the same seed and size give the same images on any machine; the
images are stored at 8-bit levels like real photographs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .data import ImageData
from .face_drawing import ATTRIBUTES, FACTOR_NAMES, draw_chunk
from .face_drawing import hidden_styles as hidden_styles  # part of this module's interface

FACES_VERSION = "1"  # bump whenever the same config would give different images or labels

FACTOR_RANGES: dict[str, str] = {
    "skin_tone": "0 light .. 1 dark",
    "hair_color": "0 black .. 0.33 brown .. 0.67 auburn .. 1 blond",
    "face_width": "0 narrow, round jaw .. 1 wide, square jaw (the 'gender-like' factor)",
    "head_x": "0 left .. 1 right (head centre)",
    "head_y": "0 high .. 1 low (head centre)",
    "head_scale": "0 small .. 1 large",
    "clothes_hue": "hue of the shirt around the colour wheel",
    "eye_spacing": "0 close .. 1 wide",
    "hair_length": "0 short .. 1 shoulder length",
    "background_hue": "hue around the colour wheel",
    "background_brightness": "0 dark .. 1 light",
    "lighting": "0 lit from the left .. 1 lit from the right",
}
SIZES = (32, 64)
SUBSETS: dict[str, tuple[str, ...]] = {"eye": ("glasses",), "facial": ("facial_hair",),
                                       "eyefacial": ("glasses", "facial_hair")}
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_RATES: dict[str, float] = {"glasses": 0.3, "facial_hair": 0.3, "smile": 0.5}
DEFAULT_CORRELATIONS: dict[tuple[str, str], float] = {("facial_hair", "face_width"): 0.6}
BLOCK = 1024  # images drawn per generator stream: the first n images of a split do not depend on n
CHUNK_PIXELS = 1 << 19  # pixels per channel rendered at once: 512 faces at 32x32, 128 at 64x64 (cache-sized)


@dataclass
class FaceConfig:
    """Everything that decides the faces data set: size, attribute rates, correlations, seed, split sizes.

    ``correlations`` maps pairs of names (attributes or factors) to the correlation of their
    latent Gaussians in the copula; the observed correlation of a 0/1 attribute with a factor is
    smaller (about 0.8 times this for a 30 % rate).
    """

    size: int = 32
    rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    correlations: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(DEFAULT_CORRELATIONS))
    seed: int = 0
    n_train: int = 20000
    n_val: int = 2000
    n_test: int = 5000

    def __post_init__(self) -> None:
        check_size(self.size)
        rates = dict(DEFAULT_RATES)
        for name, rate in dict(self.rates).items():
            if name not in ATTRIBUTES:
                raise ValueError(f"unknown attribute {name!r} in rates; attributes are {', '.join(ATTRIBUTES)}")
            if not 0.0 < float(rate) < 1.0:
                raise ValueError(f"rate of {name!r} must be in (0, 1) (exclusive), got {rate}; "
                                 "to drop an attribute choose it out with attributes=/subset= instead")
            rates[name] = float(rate)
        self.rates = rates
        corr: dict[tuple[str, str], float] = {}
        known = ATTRIBUTES + FACTOR_NAMES
        for pair, value in dict(self.correlations).items():
            if isinstance(pair, str):
                pair = tuple(p.strip() for p in pair.replace("~", ":").split(":"))  # "a:b" or "a~b"
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"a correlation is keyed by two different names, got {pair!r}")
            for name in pair:
                if name not in known:
                    raise ValueError(f"unknown name {name!r} in correlations; use attributes "
                                     f"{', '.join(ATTRIBUTES)} or factors {', '.join(FACTOR_NAMES)}")
            if not -1.0 <= float(value) <= 1.0:
                raise ValueError(f"correlation {pair} must be in [-1, 1], got {value}")
            corr[(pair[0], pair[1])] = float(value)
        self.correlations = corr
        _cholesky(corr)  # raises if the pairs together are not a valid correlation matrix
        for name in ("n_train", "n_val", "n_test"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")

    def split_size(self, split: str) -> int:
        """The default number of images in ``split``."""
        check_split(split)
        return int(getattr(self, f"n_{split}"))

    def as_dict(self) -> dict:
        """A JSON-able description (used in cache keys and results files)."""
        d = asdict(self)
        d["rates"] = {k: self.rates[k] for k in sorted(self.rates)}
        d["correlations"] = {f"{a}:{b}": v for (a, b), v in sorted(self.correlations.items())}
        return d

    def key(self, *, include_sizes: bool = True) -> str:
        """A short hash of FACES_VERSION and this config (cache file names)."""
        d = self.as_dict()
        if not include_sizes:
            for name in ("n_train", "n_val", "n_test"):
                d.pop(name)
        blob = json.dumps({"faces_version": FACES_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_size(size: int) -> int:
    """``size`` if the faces can be drawn at it, else a ValueError naming the supported sizes."""
    if size not in SIZES:
        raise ValueError(f"faces are drawn at {' or '.join(map(str, SIZES))} pixels, got size={size!r}; "
                         "resize afterwards (torch.nn.functional.interpolate) for other sizes")
    return int(size)


def check_split(split: str) -> str:
    if split not in SPLIT_STREAMS:
        raise ValueError(f"unknown split {split!r}; choose 'train', 'val' or 'test'")
    return split


def attribute_index(name: str | int, names: Sequence[str] = ATTRIBUTES) -> int:
    """The column of attribute ``name`` (an int passes through), or a ValueError listing the choices."""
    if isinstance(name, int):
        if not 0 <= name < len(names):
            raise ValueError(f"attribute index {name} out of range for {list(names)}")
        return name
    if name not in names:
        raise ValueError(f"unknown attribute {name!r}; choose one of {', '.join(names)}")
    return list(names).index(name)


# ----------------------------------------------------------------------------- sampling
def _cholesky(corr: Mapping[tuple[str, str], float]) -> torch.Tensor:
    """Lower Cholesky factor of the copula's correlation matrix over ATTRIBUTES + FACTOR_NAMES."""
    names = ATTRIBUTES + FACTOR_NAMES
    c = torch.eye(len(names), dtype=torch.float64)
    for (a, b), v in corr.items():
        i, j = names.index(a), names.index(b)
        c[i, j] = c[j, i] = v
    ev = torch.linalg.eigvalsh(c)
    if float(ev.min()) <= 1e-9:
        if len(corr) == 1:
            # a single pair at +-1 is degenerate but meaningful: nudge it inside
            c = c * 0.999999 + torch.eye(len(names), dtype=torch.float64) * 1e-6
        else:
            raise ValueError("the correlations given together are not a valid correlation matrix "
                             "(not positive definite); weaken some of them")
    return torch.linalg.cholesky(c)


def _normal_quantile(p: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def sample_faces(n: int, config: FaceConfig | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` faces' (attributes (n, A) 0/1, factors (n, F) in [0, 1]) from the copula of ``config``."""
    config = config or FaceConfig()
    generator = generator or torch.Generator().manual_seed(config.seed)
    lower = _cholesky(config.correlations)
    d = lower.shape[0]
    # uniforms in (0, 1) in float64, then independent normals by the quantile function
    u = torch.rand(n, d, generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    eps = _normal_quantile(u)
    # z = eps @ lower.T, summed in a fixed order (no BLAS: the same bits everywhere)
    z = torch.zeros_like(eps)
    for i in range(d):
        for j in range(i + 1):
            if lower[i, j] != 0:
                z[:, i] += lower[i, j] * eps[:, j]
    a = len(ATTRIBUTES)
    thresholds = torch.tensor([_normal_quantile(torch.tensor(1.0 - config.rates[k], dtype=torch.float64)).item()
                               for k in ATTRIBUTES], dtype=torch.float64)
    attrs = (z[:, :a] > thresholds).float()
    factors = _normal_cdf(z[:, a:]).float()
    return attrs, factors


def render_faces(attrs: torch.Tensor, factors: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Draw faces with the given attributes (N, A) 0/1 and factors (N, F) in [0, 1]: (N, 3, size, size) in [0, 1].

    Lessons use it for ground-truth edits: the same factors with one attribute toggled.
    """
    check_size(size)
    attrs = torch.as_tensor(attrs, dtype=torch.float32).cpu()
    factors = torch.as_tensor(factors, dtype=torch.float32).cpu()
    if attrs.ndim != 2 or attrs.shape[1] != len(ATTRIBUTES):
        raise ValueError(f"attrs must be (N, {len(ATTRIBUTES)}) for {ATTRIBUTES}, got {tuple(attrs.shape)}")
    if factors.ndim != 2 or factors.shape != (attrs.shape[0], len(FACTOR_NAMES)):
        raise ValueError(f"factors must be (N, {len(FACTOR_NAMES)}) for {FACTOR_NAMES}, got {tuple(factors.shape)}")
    out = torch.empty(attrs.shape[0], 3, size, size)
    step = max(16, CHUNK_PIXELS // (size * size))
    starts = range(0, attrs.shape[0], step)

    def work(i: int) -> None:
        with torch.no_grad():
            out[i:i + step] = draw_chunk(attrs[i:i + step], factors[i:i + step], size)

    # one op thread per chunk and chunks in parallel: elementwise ops on cache-sized chunks scale
    # better this way than with torch's intra-op threads (and do not spin when the CPU is shared)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                list(pool.map(work, starts))
        else:
            for i in starts:
                work(i)
    finally:
        torch.set_num_threads(threads)
    return out


def toggle(attrs: torch.Tensor, attribute: str | int, value: float | None = None) -> torch.Tensor:
    """A copy of ``attrs`` with one attribute set to ``value`` (or flipped when None)."""
    j = attribute_index(attribute)
    out = attrs.clone()
    out[:, j] = (1.0 - out[:, j]) if value is None else float(value)
    return out


# ----------------------------------------------------------------------------- data set
def _split_seed(seed: int, split: str, block: int) -> int:
    """Independent streams per (seed, split, block) so splits never overlap and prefixes are stable."""
    blob = f"faces-v{FACES_VERSION}/{seed}/{split}/{block}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def sample_split(config: FaceConfig, split: str, n: int, start_block: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Attributes and factors of the first ``n`` faces of ``split`` (cheap: nothing is drawn)."""
    check_split(split)
    attrs, factors = [], []
    blocks = -(-n // BLOCK)
    for blk in range(start_block, start_block + blocks):
        gen = torch.Generator().manual_seed(_split_seed(config.seed, split, blk))
        a, f = sample_faces(BLOCK, config, gen)
        attrs.append(a)
        factors.append(f)
    if not attrs:
        return torch.zeros(0, len(ATTRIBUTES)), torch.zeros(0, len(FACTOR_NAMES))
    return torch.cat(attrs)[:n], torch.cat(factors)[:n]


def _balanced(config: FaceConfig, split: str, n: int, columns: list[int],
              neg_pos_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first faces of ``split`` with negatives:positives = ``neg_pos_ratio``:1 (positive = any label set)."""
    n_pos = int(round(n / (1.0 + neg_pos_ratio)))
    n_neg = n - n_pos
    pos_a, pos_f, neg_a, neg_f = [], [], [], []
    got_pos = got_neg = 0
    blk = 0
    while got_pos < n_pos or got_neg < n_neg:
        a, f = sample_split(config, split, BLOCK, start_block=blk)
        blk += 1
        is_pos = a[:, columns].amax(1) > 0.5
        pos_a.append(a[is_pos]); pos_f.append(f[is_pos])  # noqa: E702
        neg_a.append(a[~is_pos]); neg_f.append(f[~is_pos])  # noqa: E702
        got_pos += int(is_pos.sum())
        got_neg += int((~is_pos).sum())
        if blk > 10000:
            raise RuntimeError("could not collect enough positives; raise the attribute's rate")
    attrs = torch.cat([torch.cat(pos_a)[:n_pos], torch.cat(neg_a)[:n_neg]])
    factors = torch.cat([torch.cat(pos_f)[:n_pos], torch.cat(neg_f)[:n_neg]])
    # interleave deterministically so a prefix (limit=) keeps the ratio
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_split_seed(config.seed, split, -1)))
    return attrs[order], factors[order]


def check_subset(subset: str) -> str:
    """``subset`` if it is one of IntroVAC's ``eye`` / ``facial`` / ``eyefacial``, else a ValueError naming them."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown faces subset {subset!r}; choose one of {', '.join(SUBSETS)} (or None for all)")
    return subset


def load_faces(split: str = "train", root: str | Path | None = None, size: int = 32, subset: str | None = None,
               n: int | None = None, seed: int = 0, neg_pos_ratio: float | None = None,
               attributes: Sequence[str] | None = None, rates: Mapping[str, float] | None = None,
               correlations: Mapping | None = None, config: FaceConfig | None = None,
               also_label: Sequence[str] = ()) -> ImageData:
    """One split of the procedural faces as tensors (drawn in memory; ``root`` is accepted and unused).

    ``subset`` is one of IntroVAC's ``eye`` / ``facial`` / ``eyefacial`` (which labels are kept);
    ``neg_pos_ratio=2`` draws two faces without the label(s) for each face with one, as IntroVAC
    does. ``attributes`` picks label columns by name; ``rates`` / ``correlations`` override the
    defaults (or pass a whole ``config``). ``also_label`` appends further label columns without
    changing which faces are drawn (e.g. a subset's faces with their smile too, for a classifier
    that should learn to leave smile alone).
    """
    check_split(split)
    if config is None:
        kwargs = {"size": size, "seed": seed}
        if rates is not None:
            kwargs["rates"] = rates
        if correlations is not None:
            kwargs["correlations"] = correlations
        config = FaceConfig(**kwargs)
    if subset is not None:
        check_subset(subset)
        if attributes is not None and tuple(attributes) != SUBSETS[subset]:
            raise ValueError(f"subset={subset!r} keeps {SUBSETS[subset]}; do not also pass attributes={attributes!r}")
        attributes = SUBSETS[subset]
    names = list(ATTRIBUTES if attributes is None else attributes)
    if isinstance(attributes, str) or isinstance(also_label, str):
        raise ValueError("attributes and also_label must be lists of names, e.g. ['glasses']")
    columns = [attribute_index(a) for a in names]
    extra = [attribute_index(a) for a in also_label]
    if set(extra) & set(columns) or len(set(extra)) != len(extra):
        raise ValueError(f"also_label={list(also_label)} repeats a label already kept ({', '.join(names)})")
    count = config.split_size(split) if n is None else int(n)
    if count < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if neg_pos_ratio is not None:
        if not neg_pos_ratio > 0:
            raise ValueError(f"neg_pos_ratio must be > 0 (IntroVAC uses 2), got {neg_pos_ratio}")
        attrs, factors = _balanced(config, split, count, columns, float(neg_pos_ratio))
    else:
        attrs, factors = sample_split(config, split, count)
    images = render_faces(attrs, factors, config.size)
    tag = f"faces-{subset}" if subset else "faces"
    ratio = f", negatives:positives {neg_pos_ratio:g}:1" if neg_pos_ratio else ""
    source = (f"procedural faces v{FACES_VERSION}, drawn in memory (seed {config.seed}, {config.size}x{config.size}"
              f"{ratio}, config {config.key()})")
    return ImageData(images, attrs[:, columns + extra].clone(), tag, split, source, subset=False,
                     classes=names + list(also_label),
                     factors=factors, factor_names=list(FACTOR_NAMES))


def faces_grid(n: int = 24, size: int = 64, seed: int = 0, ncol: int = 8):
    """A matplotlib figure of ``n`` faces of the test split with their attribute labels (the figure in docs/data.md)."""
    import matplotlib.pyplot as plt

    data = load_faces("test", size=size, n=n, seed=seed)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 1.15, nrow * 1.35))
    short = {"glasses": "glasses", "facial_hair": "facial hair", "smile": "smile"}
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(data.images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        on = [short[c] for c, v in zip(data.classes, data.labels[i]) if v > 0.5]
        ax.set_title(", ".join(on) or "none", fontsize=7)
    fig.suptitle("vaecourse procedural faces: attribute labels above each face", fontsize=9)
    fig.tight_layout()
    return fig
