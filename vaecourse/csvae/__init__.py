"""Lesson 07: CVAE, CVAE with information factorisation, and the Conditional Subspace VAE (CSVAE).

Three ways to put binary labels y ∈ {0, 1}^k into a VAE so that an attribute can be edited:

* :class:`CVAE` — q(z|x, y), p(x|z, y); edit by decoding with another y.
* :class:`CVAE` with ``info=True`` (CVAE-info) — q(z|x) without y, plus an adversary r(z) that
  predicts y while the encoder is trained to maximise its cross-entropy (Creswell et al. 2017).
* :class:`CSVAE` — latent (z, w) with one low-dimensional subspace Wᵢ per attribute: q(w|x, y)
  with a fixed prior p(wᵢ|yᵢ) per label value, q(z|x) with N(0, I), and an adversary q(y|z) whose
  entropy the encoder maximises so that z keeps no label information (Klys, Snell & Zemel 2018).

The two adversarial models train with two optimisers: :func:`adversarial_step` builds the
``train_step`` for ``vaecourse.fit`` (the adversary learns on a *detached* z first, then the VAE
learns against the freshly updated, frozen adversary). The same nets work on vectors (the
swiss-roll toy: ``data_shape=(3,)``) and on images (``data_shape=(3, 32, 32)``).
"""

from .evaluation import (
    STYLE_CLASSES,
    batched_transfer,
    code_dim,
    encode_all,
    face_edit_functions,
    hidden_style_classes,
    majority_rate,
    probe_accuracy,
    random_transfer,
    reconstruction_error,
    style_probe,
)
from .models import CSVAE, CVAE, LABELS_FIX, Adversary, SubspacePrior, Terms, make_decoder, make_trunk, mlp
from .objectives import (
    PAPER_C,
    PAPER_REC_WEIGHT,
    Weights,
    adversarial_step,
    csvae_terms,
    cvae_terms,
    make_optimizers,
    model_terms,
)
from .toy import roll_coordinates, swiss_roll
from .widgets import face_latents, w_planes_figure, w_widget

__all__ = [
    "Terms",
    "LABELS_FIX",
    "mlp",
    "make_trunk",
    "make_decoder",
    "Adversary",
    "CVAE",
    "SubspacePrior",
    "CSVAE",
    "PAPER_REC_WEIGHT",
    "PAPER_C",
    "Weights",
    "cvae_terms",
    "csvae_terms",
    "model_terms",
    "make_optimizers",
    "adversarial_step",
    "encode_all",
    "batched_transfer",
    "reconstruction_error",
    "majority_rate",
    "probe_accuracy",
    "STYLE_CLASSES",
    "hidden_style_classes",
    "random_transfer",
    "code_dim",
    "face_edit_functions",
    "style_probe",
    "swiss_roll",
    "roll_coordinates",
    "face_latents",
    "w_widget",
    "w_planes_figure",
]
