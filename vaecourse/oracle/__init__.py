"""An attribute oracle for the procedural faces, and the metrics it makes possible.

The oracle is a small CNN trained on the faces' ground truth: a head that says which attributes
an image shows, and a head that reads back the nuisance factors. With it an edit can be scored:
did the requested attribute appear (success rate), did other attributes flip or nuisance
factors move (leakage)? Its penultimate features give an image-quality score, the Fréchet
distance between real and generated images *in the oracle's feature space* (this is not
Inception FID, whose weights cannot be downloaded everywhere; its numbers are not comparable).

A decoder's images are softer and noisier than the data, so the oracle is trained on faces
randomly blurred, noised and re-contrasted (:class:`Augmentation`); without that it misses glasses
on almost every face blurred by one pixel. :func:`robustness_table` measures what it reads under
each such condition (recall and false positives per attribute), and the table computed at training
time is kept in the oracle's ``meta["robustness"]``.

Training takes about a minute on a CPU; the weights are cached on disk under a key made of
FACES_VERSION, ORACLE_VERSION, the faces' parameters and the training recipe, written atomically
and read back with ``torch.load(..., weights_only=True)``. A cached oracle of another faces
version is retrained, never silently reused.
"""

from .metrics import (
    DEFAULT_NOISE,
    DEFAULT_SIGMAS,
    edit_metrics,
    format_robustness,
    frechet_distance,
    oracle_summary,
    robustness_table,
)
from .model import (
    DEFAULT_AUGMENTATION,
    ORACLE_VERSION,
    QUALITY_WEIGHT,
    UNIFORM_STD,
    AttributeOracle,
    Augmentation,
    OracleNet,
    cache_dir,
    gaussian_blur,
    load_oracle,
    oracle_key,
    oracle_loss,
    train_oracle,
)

__all__ = [
    "ORACLE_VERSION",
    "UNIFORM_STD",
    "QUALITY_WEIGHT",
    "cache_dir",
    "gaussian_blur",
    "Augmentation",
    "OracleNet",
    "oracle_loss",
    "AttributeOracle",
    "DEFAULT_AUGMENTATION",
    "oracle_key",
    "train_oracle",
    "load_oracle",
    "edit_metrics",
    "DEFAULT_SIGMAS",
    "DEFAULT_NOISE",
    "robustness_table",
    "format_robustness",
    "frechet_distance",
    "oracle_summary",
]
