r"""The characteristic-capturing VAE (CCVAE, Joy et al. 2021, arXiv:2006.10102) and Benyahia et al.'s simplified form.

The latent splits into z = (z_c, z_\c): the *characteristic* latent z_c carries what a label
means, the *style* latent z_\c everything else. The model has an encoder q(z|x), a decoder
p(x|z), a conditional prior p(z_c|y) with a learned mean and scale per label value, a classifier
q(y|z_c) that sees z_c alone, and a label prior p(y) estimated from the labelled data.

Two label kinds and two objectives:

* ``labels="categorical"`` (one K-class label, Benyahia et al. on MNIST): p(z_c|y) is one Gaussian per
  class over all of z_c, q(y|z_c) a linear softmax classifier.
* ``labels="binary"`` (A binary attributes, the paper's form): z_c has one dimension per attribute,
  p(z_c|y) = Πᵢ p(z_cᵢ|yᵢ) and q(y|z_c) = Πᵢ q(yᵢ|z_cᵢ) (a diagonal classifier), so attribute i
  lives in z_cᵢ and nowhere else.
* ``report_*_terms``: Benyahia et al.'s losses (closed-form KLs, cross-entropy, entropy of q(y|z_c)).
* ``paper_*_terms``: the paper's supervised bound with the q(y|z_c)/q(y|x) weight, and an
  unsupervised bound that sums over y exactly (enumeration) instead of sampling it.

On faces (``kind="face"``) the encoder and decoder are the course's face backbone
(``vaecourse.face_vae``) with a calibrated Gaussian likelihood; ``edit_faces`` sets z_cᵢ to the mean of
p(z_cᵢ|yᵢ = target) (the paper's intervention), ``random_step_faces`` is its same-length random baseline,
and ``edit_functions`` hands both to ``vaecourse.edits.measure_edits``.

All terms are per example in nats (sums over pixels and latent dimensions), like ``losses.py``.
The lesson's baselines and judges are ``vaecourse.classifier.Classifier``s; ``digit_widget`` and
``face_widget`` are its live controls.
"""

from ..nets import NET_KINDS
from .evaluation import (
    class_interpolation,
    conditional_generation_accuracy,
    edit_faces,
    edit_functions,
    latent_walk,
    random_step_faces,
    reconstruct,
    reconstruction_error,
    set_characteristic,
)
from .model import CCVAE, LABEL_KINDS, BinaryCCVAE, CategoricalCCVAE
from .objectives import (
    FORMS,
    log_qy_given_x,
    paper_supervised_terms,
    paper_unsupervised_terms,
    report_supervised_terms,
    report_unsupervised_terms,
)
from .training import fit_ccvae, label_split
from .widgets import digit_widget, face_widget

__all__ = [
    "LABEL_KINDS",
    "NET_KINDS",
    "CCVAE",
    "BinaryCCVAE",
    "CategoricalCCVAE",
    "report_supervised_terms",
    "report_unsupervised_terms",
    "log_qy_given_x",
    "paper_supervised_terms",
    "paper_unsupervised_terms",
    "FORMS",
    "label_split",
    "fit_ccvae",
    "reconstruction_error",
    "class_interpolation",
    "conditional_generation_accuracy",
    "set_characteristic",
    "reconstruct",
    "edit_faces",
    "random_step_faces",
    "edit_functions",
    "latent_walk",
    "digit_widget",
    "face_widget",
]
