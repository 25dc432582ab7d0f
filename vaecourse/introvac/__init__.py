"""VAC and IntroVAC: a VAE with a linear classifier on its latent, and its introspective game.

Maggipinto, Terzi & Susto 2020, "IntroVAC: Introspective Variational Classifiers for Learning
Interpretable Latent Subspaces", https://arxiv.org/abs/2008.00760.

VAC. A VAE whose latent z also predicts binary attributes through a *linear* classifier
C(z) = σ(Wz + b). Each row wₐ of W is normal to the hyperplane that separates "has attribute a"
from "has not", so moving a code along wₐ/‖wₐ‖ by ±δ adds or removes the attribute
(:meth:`VAC.edit_latent`, :func:`confident_deltas`, :func:`edit_function`), and Langevin dynamics
on U(z) = −log p_w(y|z) − log p(z) draws codes of a chosen class (:func:`langevin_sample`);
:func:`reread_accepts` keeps those whose decoded image the model itself still reads as of that class.

IntroVAC. One extra "fake" logit turns encoder + classifier into a discriminator: they learn to
call reconstructions (decoded from detached latents) and prior samples fake, while the decoder
learns to make reconstructions that they call real *and* of the original image's class, and
prior samples that they call real. :func:`introvac_step` is Algorithm 1 of the paper: two
optimiser steps per batch (encoder+classifier, then decoder).

Weights. The paper's β's (:data:`PAPER_BETAS`: β_AE = 100, β_CL = 10, β_reg = 3, β_G = 5,
β_E,C = 0.01) weigh *means*: the L1 error per pixel, the BCE per logit, the KL per latent
dimension. Against a KL of weight 1 that reconstruction term is a Laplace decoder of scale
:func:`laplace_scale` (≈ 3 pixel units at 32 px, latent 32): a blur. :class:`Calibrated` weights
replace it with the σ-VAE's calibrated Gaussian (c = the batch's squared error per pixel) and keep
the other terms' weights relative to the KL as the paper sets them (:func:`calibrated_weights`).
The faces models are built on the course's backbone (:func:`face_vac`: ``face_vae`` nets, no
BatchNorm, so real and generated batches never share batch statistics).
"""

from .langevin import LangevinResult, energy, langevin_sample, reread_accepts
from .latent_edits import (
    CONFIDENCE_GRID,
    choose_confidences,
    confident_deltas,
    confident_edit_function,
    confident_move,
    edit_function,
)
from .model import (
    LABELS_FIX,
    PAPER_BETAS,
    VAC,
    Betas,
    Calibrated,
    Terms,
    VACOutput,
    Weights,
    calibrated_weights,
    face_vac,
    laplace_scale,
)
from .objectives import (
    fake_scores,
    introvac_optimizers,
    introvac_step,
    l1_error,
    objective,
    vac_loss,
    vac_terms,
    with_real_column,
)
from .widgets import edit_widget, first_plain_face, langevin_widget

__all__ = [
    "Terms",
    "LABELS_FIX",
    "Betas",
    "PAPER_BETAS",
    "Calibrated",
    "Weights",
    "calibrated_weights",
    "laplace_scale",
    "VACOutput",
    "VAC",
    "face_vac",
    "l1_error",
    "with_real_column",
    "objective",
    "vac_terms",
    "vac_loss",
    "introvac_optimizers",
    "fake_scores",
    "introvac_step",
    "confident_deltas",
    "edit_function",
    "CONFIDENCE_GRID",
    "confident_move",
    "confident_edit_function",
    "choose_confidences",
    "LangevinResult",
    "energy",
    "langevin_sample",
    "reread_accepts",
    "first_plain_face",
    "edit_widget",
    "langevin_widget",
]
