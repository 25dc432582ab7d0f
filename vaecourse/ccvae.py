"""The characteristic-capturing VAE (CCVAE, Joy et al. 2021) and the simplified form of report 000.

The latent splits into z = (z_c, z_\\c): the *characteristic* latent z_c carries what a label
means, the *style* latent z_\\c everything else. The model has an encoder q(z|x), a decoder
p(x|z), a conditional prior p(z_c|y) with a learned mean and scale per label value, a classifier
q(y|z_c) that sees z_c alone, and a label prior p(y) estimated from the labelled data.

Two label kinds and two objectives:

* ``labels="categorical"`` (one K-class label, report 000 on MNIST): p(z_c|y) is one Gaussian per
  class over all of z_c, q(y|z_c) a linear softmax classifier.
* ``labels="binary"`` (A binary attributes, the paper's form): z_c has one dimension per attribute,
  p(z_c|y) = Πᵢ p(z_cᵢ|yᵢ) and q(y|z_c) = Πᵢ q(yᵢ|z_cᵢ) (a diagonal classifier), so attribute i
  lives in z_cᵢ and nowhere else.
* ``report_*_terms``: report 000's losses (closed-form KLs, cross-entropy, entropy of q(y|z_c)).
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

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import ipywidgets as W
import torch
import torch.nn.functional as F
from torch import nn

from .batching import batched_apply, minibatches
from .face_vae import FaceDecoder, FaceEncoder, GaussianLikelihood, check_c
from .losses import (
    bernoulli_entropy,
    bernoulli_nll,
    categorical_entropy,
    gaussian_kl,
    gaussian_kl_between,
    gaussian_log_density,
    reparameterize,
    squared_error,
)
from .nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .train import History, fit, model_mode
from .widgets import LiveImage

LABEL_KINDS = ("categorical", "binary")
NET_KINDS = ("mlp", "conv", "face")


def _nets(image_shape: Sequence[int], latent_dim: int, kind: str, hidden: Sequence[int],
          channels: Sequence[int], width: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and logit decoder: the course's MLPs or convs, or the faces backbone (``vaecourse.face_vae``)."""
    if kind == "mlp":
        return (MLPEncoder(image_shape, latent_dim, hidden),
                MLPDecoder(image_shape, latent_dim, tuple(hidden)[::-1], logits=True))
    if kind == "conv":
        return (ConvEncoder(image_shape, latent_dim, channels),
                ConvDecoder(image_shape, latent_dim, channels, logits=True))
    if kind == "face":
        if len(image_shape) != 3 or image_shape[0] != 3 or image_shape[1] != image_shape[2]:
            raise ValueError(f"the faces backbone takes square RGB faces (3, size, size), got {tuple(image_shape)}; "
                             "use kind='mlp' or 'conv' for other images")
        size = image_shape[-1]
        return FaceEncoder(size, latent_dim, width), FaceDecoder(size, latent_dim, width, logits=True)
    raise ValueError(f"unknown net kind {kind!r}; choose one of {', '.join(NET_KINDS)}")


class CCVAE(nn.Module):
    """Encoder to (z_c, z_\\c), logit decoder, conditional prior p(z_c|y), classifier q(y|z_c), prior p(y).

    ``n_labels`` is the number of classes (categorical) or of attributes (binary; then ``c_dim``
    must equal it: one characteristic dimension per attribute). The first ``c_dim`` latent
    coordinates are z_c, the remaining ``s_dim`` are the style z_\\c.

    ``kind="face"`` builds the faces backbone (``FaceEncoder``/``FaceDecoder`` of ``width`` channels).
    ``likelihood`` is "bernoulli" (pixels as probabilities, report 000 on MNIST) or a Gaussian decoder
    variance c as ``face_vae.GaussianLikelihood`` takes it: "optimal" (the σ-VAE's calibrated c, lesson 03),
    "learned", or a fixed number.
    """

    def __init__(self, image_shape: Sequence[int], n_labels: int, c_dim: int, s_dim: int, *,
                 labels: str = "categorical", kind: str = "mlp", hidden: Sequence[int] = (512, 256),
                 channels: Sequence[int] = (32, 64, 64), width: int = 32, likelihood: str | float = "bernoulli"):
        super().__init__()
        if labels not in LABEL_KINDS:
            raise ValueError(f"unknown label kind {labels!r}; choose 'categorical' (one K-class label) or "
                             "'binary' (several 0/1 attributes)")
        if n_labels < (2 if labels == "categorical" else 1):
            raise ValueError(f"n_labels must be at least 2 classes (categorical) or 1 attribute (binary), "
                             f"got {n_labels}")
        if c_dim < 1 or s_dim < 0:
            raise ValueError(f"need c_dim >= 1 and s_dim >= 0, got c_dim={c_dim}, s_dim={s_dim}")
        if labels == "binary" and c_dim != n_labels:
            raise ValueError(f"the binary (paper's) form has one z_c dimension per attribute: pass c_dim={n_labels}")
        self.image_shape = tuple(image_shape)
        self.labels, self.n_labels, self.c_dim, self.s_dim = labels, n_labels, c_dim, s_dim
        self.latent_dim = c_dim + s_dim
        self.kind = kind
        self.encoder, self.decoder = _nets(image_shape, self.latent_dim, kind, hidden, channels, width)
        self.likelihood = None if likelihood == "bernoulli" else GaussianLikelihood(check_c(likelihood))
        if labels == "categorical":
            # one Gaussian per class over all of z_c; means spread at random so the classes start apart
            self.prior_mu = nn.Parameter(torch.randn(n_labels, c_dim))
            self.prior_logvar = nn.Parameter(torch.zeros(n_labels, c_dim))
            self.classifier: nn.Module | None = nn.Linear(c_dim, n_labels)
            self.register_buffer("log_py", torch.full((n_labels,), -math.log(n_labels)))
        else:
            # column 0: y_i = 0, column 1: y_i = 1; start at -1 / +1 so the attribute has a direction
            self.prior_mu = nn.Parameter(torch.tensor([-1.0, 1.0]).repeat(n_labels, 1))
            self.prior_logvar = nn.Parameter(torch.zeros(n_labels, 2))
            self.classifier = None
            self.clf_weight = nn.Parameter(torch.ones(n_labels))
            self.clf_bias = nn.Parameter(torch.zeros(n_labels))
            self.register_buffer("log_py", torch.full((n_labels,), math.log(0.5)))  # log p(y_i = 1)

    # ------------------------------------------------------------------ pieces
    def set_label_prior(self, y: torch.Tensor) -> None:
        """Estimate p(y) from the labelled data: class frequencies, or each attribute's rate."""
        y = self.check_labels(y)
        if self.labels == "categorical":
            counts = torch.bincount(y.cpu(), minlength=self.n_labels).float() + 1.0
            self.log_py.copy_((counts / counts.sum()).log())
        else:
            rate = (y.float().cpu().sum(0) + 1.0) / (y.shape[0] + 2.0)
            self.log_py.copy_(rate.log())

    def check_labels(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as this model needs it, or a ValueError saying what shape was expected."""
        if self.labels == "categorical":
            if y.dim() != 1 or y.dtype.is_floating_point:
                raise ValueError(f"categorical labels are class indices of shape (N,) and an integer dtype, "
                                 f"got {tuple(y.shape)} {y.dtype}")
            return y
        if y.dim() != 2 or y.shape[1] != self.n_labels:
            raise ValueError(f"binary labels are (N, {self.n_labels}) 0/1 attributes, got {tuple(y.shape)}")
        return y.float()

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_c, z_\\c) from a full latent."""
        return z[:, :self.c_dim], z[:, self.c_dim:]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x) over the whole latent (z_c first)."""
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruction_nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) in nats per image: Bernoulli on the logits, or Gaussian around the pixel means."""
        logits = self.decoder(z)
        if self.likelihood is None:
            return bernoulli_nll(x, logits)
        return self.likelihood(x, torch.sigmoid(logits))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] for latents z (N × (c_dim + s_dim))."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the decoder takes latents of shape N×{self.latent_dim} (z_c then z_\\c), "
                             f"got {tuple(z.shape)}")
        return torch.sigmoid(self.decoder(z))

    def cond_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(z_c|y) for each row of ``y`` (N × c_dim each)."""
        y = self.check_labels(y)
        if self.labels == "categorical":
            return self.prior_mu[y], self.prior_logvar[y]
        mu = torch.where(y > 0.5, self.prior_mu[:, 1], self.prior_mu[:, 0])
        lv = torch.where(y > 0.5, self.prior_logvar[:, 1], self.prior_logvar[:, 0])
        return mu, lv

    def logits(self, zc: torch.Tensor) -> torch.Tensor:
        """Classifier logits from z_c: K class logits, or one logit per attribute (diagonal)."""
        if self.labels == "categorical":
            return self.classifier(zc)
        return zc * self.clf_weight + self.clf_bias

    def log_qy(self, zc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|z_c) per example (for binary labels: Σᵢ log q(yᵢ|z_cᵢ))."""
        lg = self.logits(zc)
        if self.labels == "categorical":
            return -F.cross_entropy(lg, y, reduction="none")
        return -bernoulli_nll(y.float(), lg)

    def label_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """H(q(y|z_c)) in nats per example from the classifier's logits (summed over attributes when binary)."""
        return categorical_entropy(logits) if self.labels == "categorical" else bernoulli_entropy(logits)

    def log_prior_y(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y) per example."""
        if self.labels == "categorical":
            return self.log_py[y]
        log_p1, log_p0 = self.log_py, torch.log1p(-self.log_py.exp())
        return (y * log_p1 + (1 - y) * log_p0).sum(1)

    def mixture_components(self, zc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(z_c|y) and log p(y) for every value of y, shaped to be added: the mixture prior's components.

        Categorical: (N × K, K), one Gaussian over all of z_c per class. Binary: (N × A × 2, A × 2),
        the density of z_cᵢ given yᵢ = 0 and given yᵢ = 1 (last axis), since everything factorises
        per attribute. ``log_marginal_prior_c`` sums them out; the paper's unlabelled bound weighs them.
        """
        lv, mu = self.prior_logvar.unsqueeze(0), self.prior_mu.unsqueeze(0)
        if self.labels == "categorical":
            log_p_zc = -0.5 * (math.log(2 * math.pi) + lv + (zc.unsqueeze(1) - mu).pow(2) / lv.exp()).sum(-1)
            return log_p_zc, self.log_py
        log_p_zc = -0.5 * (math.log(2 * math.pi) + lv + (zc.unsqueeze(-1) - mu).pow(2) / lv.exp())
        return log_p_zc, torch.stack([torch.log1p(-self.log_py.exp()), self.log_py], dim=-1)

    def log_marginal_prior_c(self, zc: torch.Tensor) -> torch.Tensor:
        """log p(z_c) = log Σ_y p(z_c|y) p(y): the mixture prior that unlabelled data see."""
        log_p_zc, log_py = self.mixture_components(zc)
        log_p = torch.logsumexp(log_p_zc + log_py, dim=-1)
        return log_p if self.labels == "categorical" else log_p.sum(1)  # binary: Σ over attributes

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Labels from q(y|z_c) at the posterior mean of z_c: class indices, or 0/1 attributes."""
        def one(xb: torch.Tensor) -> torch.Tensor:
            lg = self.logits(self.split(self.encode(xb)[0])[0])
            return lg.argmax(1) if self.labels == "categorical" else (lg > 0).float()

        with model_mode(self, training=False):
            return batched_apply(one, x, batch_size)

    @torch.no_grad()
    def sample_conditional(self, y: torch.Tensor, generator: torch.Generator | None = None,
                           style: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Images for labels ``y``: z_c ~ p(z_c|y), z_\\c ~ N(0, I) (or the given ``style``), decoded."""
        mu, lv = self.cond_prior(y)
        dev = mu.device
        zc = mu + temperature * (0.5 * lv).exp() * torch.randn(mu.shape, generator=generator).to(dev)
        if style is None:
            style = temperature * torch.randn(mu.shape[0], self.s_dim, generator=generator).to(dev)
        return self.decode(torch.cat([zc, style.to(dev).expand(mu.shape[0], -1)], 1))

    @torch.no_grad()
    def swap(self, x_style: torch.Tensor, x_char: torch.Tensor) -> torch.Tensor:
        """Characteristic swap: z_c of ``x_char`` with z_\\c of ``x_style`` (posterior means), decoded."""
        zs = self.split(self.encode(x_style)[0])[1]
        zc = self.split(self.encode(x_char)[0])[0]
        return self.decode(torch.cat([zc, zs], 1))


# ---------------------------------------------------------------------- report 000's losses (form 1)
def _encode_sample(model: CCVAE, x: torch.Tensor):
    mu, lv = model.encode(x)
    z = reparameterize(mu, lv)
    return mu, lv, z


def report_supervised_terms(model: CCVAE, x: torch.Tensor, y: torch.Tensor, beta: float = 0.05,
                            ce_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Report 000's labelled loss: rec + β·KL(q(z_\\c|x)‖N(0,I)) + β·KL(q(z_c|x)‖p(z_c|y)) + CE of q(y|z_c).

    Per example; the cross-entropy is that of the classifier q(y|z_c) on a sample of z_c
    (the report's "CE(y, decoder(z))" is a slip for this).
    """
    y = model.check_labels(y)
    mu, lv, z = _encode_sample(model, x)
    (mu_c, mu_s), (lv_c, lv_s) = model.split(mu), model.split(lv)
    rec = model.reconstruction_nll(x, z)
    kl_s = gaussian_kl(mu_s, lv_s)
    pm, plv = model.cond_prior(y)
    kl_c = gaussian_kl_between(mu_c, lv_c, pm, plv)
    ce = -model.log_qy(model.split(z)[0], y)
    loss = rec + beta * (kl_s + kl_c) + ce_weight * ce
    return {"loss": loss, "rec": rec, "kl_style": kl_s, "kl_char": kl_c, "ce": ce}


def report_unsupervised_terms(model: CCVAE, x: torch.Tensor, beta: float = 0.05,
                              entropy_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Report 000's unlabelled loss: rec + β·KL(q(z|x)‖p(z)) + H(q(y|z_c)), p(z_c) = Σ_y p(z_c|y)p(y).

    The KL to the mixture has no closed form for z_c: it is the one-sample estimate
    log q(z_c|x) − log p(z_c); the style part is closed form. Adding the entropy *minimises*
    it (confident predictions on unlabelled data): a regulariser, not a term of the bound.
    """
    mu, lv, z = _encode_sample(model, x)
    (mu_c, mu_s), (lv_c, lv_s) = model.split(mu), model.split(lv)
    zc = model.split(z)[0]
    rec = model.reconstruction_nll(x, z)
    kl_s = gaussian_kl(mu_s, lv_s)
    kl_c = gaussian_log_density(zc, mu_c, lv_c) - model.log_marginal_prior_c(zc)
    entropy = model.label_entropy(model.logits(zc))
    loss = rec + beta * (kl_s + kl_c) + entropy_weight * entropy
    return {"loss": loss, "rec": rec, "kl_style": kl_s, "kl_char": kl_c, "entropy": entropy}


# ---------------------------------------------------------------------- the paper's bound (form 2)
def log_qy_given_x(model: CCVAE, mu_c: torch.Tensor, lv_c: torch.Tensor, y: torch.Tensor, k: int = 16) -> torch.Tensor:
    """log q(y|x) = log E_{q(z_c|x)} q(y|z_c), estimated with ``k`` reparameterised draws of z_c."""
    if k < 1:
        raise ValueError(f"k (samples of z_c for q(y|x)) must be at least 1, got {k}")
    zc = mu_c.unsqueeze(0) + (0.5 * lv_c).exp().unsqueeze(0) * torch.randn(k, *mu_c.shape, device=mu_c.device)
    yk = y.unsqueeze(0).expand(k, *y.shape).reshape(k * y.shape[0], *y.shape[1:])
    log_q = model.log_qy(zc.reshape(-1, mu_c.shape[1]), yk).view(k, -1)
    return torch.logsumexp(log_q, 0) - math.log(k)


def paper_supervised_terms(model: CCVAE, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, k: int = 16,
                           detach_weight: bool = False, classifier_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The paper's labelled bound, negated: −(E_q(z|x)[w·log(p(x|z)p(z|y)/(q(y|z_c)q(z|x)))] + log q(y|x) + log p(y)).

    w = q(y|z_c)/q(y|x). The classifier inside w and inside log q(y|z_c) sees z_c *detached*
    (the encoder learns about y through log q(y|x) and p(z_c|y), not by bending the weight);
    log q(y|x) keeps its gradient: it is what trains the classifier. ``detach_weight`` also stops
    the gradient through w (treating it as a fixed importance weight). β scales the KL part.
    ``classifier_weight`` α multiplies log q(y|x) (the bound is α = 1); like report 000's cross-entropy
    weight it keeps the label terms from drowning next to a reconstruction of thousands of nats.
    """
    if not (math.isfinite(classifier_weight) and classifier_weight > 0):
        raise ValueError(f"classifier_weight must be a positive number (the bound's is 1), got {classifier_weight}")
    y = model.check_labels(y)
    mu, lv, z = _encode_sample(model, x)
    (mu_c, _), (lv_c, _) = model.split(mu), model.split(lv)
    zc, zs = model.split(z)
    rec = model.reconstruction_nll(x, z)
    pm, plv = model.cond_prior(y)
    log_pz = gaussian_log_density(zc, pm, plv) + gaussian_log_density(zs, torch.zeros_like(zs), torch.zeros_like(zs))
    log_qz = gaussian_log_density(z, mu, lv)
    kl = log_qz - log_pz  # one-sample KL(q(z|x) ‖ p(z|y))
    log_qyzc = model.log_qy(zc.detach(), y)
    log_qyx = log_qy_given_x(model, mu_c, lv_c, y, k)
    w = (log_qyzc - log_qyx).exp()
    if detach_weight:
        w = w.detach()
    inner = -rec - beta * kl - log_qyzc
    bound = w * inner + classifier_weight * log_qyx + model.log_prior_y(y)
    return {"loss": -bound, "rec": rec, "kl": kl, "log_qyx": log_qyx, "weight": w.detach()}


def paper_unsupervised_terms(model: CCVAE, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """The unlabelled bound with y summed out exactly: rec + β·E_{q(y|z_c)}[log q(z|x)q(y|z_c) − log p(z|y)p(y)].

    Summing over y (K classes, or 2 values per attribute since everything factorises) gives the
    classifier its exact gradient; *sampling* y and dropping the score-function term would not.
    """
    mu, lv, z = _encode_sample(model, x)
    zc, zs = model.split(z)
    rec = model.reconstruction_nll(x, z)
    log_qz = gaussian_log_density(z, mu, lv)
    log_pzs = gaussian_log_density(zs, torch.zeros_like(zs), torch.zeros_like(zs))
    lg = model.logits(zc)
    log_p_zc, log_py = model.mixture_components(zc)  # N × K, or N × A × 2 (yᵢ = 0, 1)
    if model.labels == "categorical":
        log_q = F.log_softmax(lg, 1)
    else:
        log_q = torch.stack([F.logsigmoid(-lg), F.logsigmoid(lg)], -1)
    kl_y = (log_q.exp() * (log_q - log_p_zc - log_py)).flatten(1).sum(1)  # E_q(y|z_c) over every y, exactly
    kl = log_qz - log_pzs + kl_y
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "entropy": model.label_entropy(lg)}


FORMS: dict[str, tuple[Callable, Callable]] = {
    "report": (report_supervised_terms, report_unsupervised_terms),
    "paper": (paper_supervised_terms, paper_unsupervised_terms),
}


# ---------------------------------------------------------------------- semi-supervised data and training
def label_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (labelled S, unlabelled U) keeping ``fraction`` of the labels; stratified per class.

    Class labels keep round(fraction·n_c) of each class (at least one), so 1 % of 4000 digits
    still has every digit; attribute labels (N × A) are split at random.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction of labels must be in (0, 1], got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    labels = labels.cpu()
    if labels.dim() == 1 and not labels.dtype.is_floating_point:
        keep = []
        for c in torch.unique(labels):
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            keep.append(idx[:max(1, int(round(fraction * len(idx))))])
        s = torch.sort(torch.cat(keep)).values
    else:
        s = torch.sort(torch.randperm(n, generator=gen)[:max(1, int(round(fraction * n)))]).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[s] = False
    return s, torch.nonzero(mask).flatten()


def _cycle(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatch indices over range(n) (the small labelled set is revisited)."""
    while True:
        yield from minibatches(n, batch_size, generator)


def fit_ccvae(model: CCVAE, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor | None = None, *,
              form: str = "report", beta: float = 0.05, epochs: int, batch_size: int = 128, lr: float = 1e-3,
              prior_lr: float | None = 0.1, seed: int = 0, sup_kwargs: dict | None = None,
              unsup_kwargs: dict | None = None,
              progress: bool | None = None, desc: str = "ccvae") -> History:
    """Train on labelled (x_l, y_l) and unlabelled x_u: each step one batch of each, loss = mean sup + mean unsup.

    An epoch is one pass over U (or over S when U is empty: fully supervised). The labelled
    batches cycle through S, so a small S is seen many times; p(y) is set from y_l first.
    Logged terms: ``loss``, ``sup``, ``unsup``, ``rec`` (labelled batch, nats) and ``acc_l``.
    ``prior_lr`` (None: ``lr``) is the step size of the conditional prior's means and scales: Adam moves
    a parameter by about lr per step, and with lr = 1e-3 the class means would stay near their random
    start while the encoder's clusters move far away, so sampling from p(z_c|y) would miss them.
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose 'report' (report 000) or 'paper' (Joy et al.)")
    sup_fn, unsup_fn = FORMS[form]
    sup_kw, unsup_kw = dict(sup_kwargs or {}), dict(unsup_kwargs or {})
    y_l = model.check_labels(y_l)
    if x_l.shape[0] != y_l.shape[0] or x_l.shape[0] == 0:
        raise ValueError(f"need as many labels as labelled images (and at least one), got {x_l.shape[0]} images "
                         f"and {y_l.shape[0]} labels")
    model.set_label_prior(y_l)
    prior = [model.prior_mu, model.prior_logvar]
    rest = [p for p in model.parameters() if all(p is not q for q in prior)]
    opt = torch.optim.Adam([{"params": rest}, {"params": prior, "lr": prior_lr or lr}], lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    semi = x_u is not None and x_u.shape[0] > 0
    labelled = _cycle(x_l.shape[0], batch_size, gen)

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        if semi:
            idx = next(labelled).to(x_l.device)
            xs, ys, xu = x_l[idx], y_l[idx], batch[0]
        else:
            xs, ys, xu = batch[0], batch[1], None
        st = sup_fn(model, xs, ys, beta=beta, **sup_kw)
        loss = st["loss"].mean()
        terms = {"sup": loss.detach(), "rec": st["rec"].mean().detach()}
        if xu is not None:
            ut = unsup_fn(model, xu, beta=beta, **unsup_kw)
            terms["unsup"] = ut["loss"].mean().detach()
            loss = loss + ut["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            lg = model.logits(model.split(model.encode(xs)[0])[0])
            pred = lg.argmax(1) if model.labels == "categorical" else (lg > 0).float()
            acc = (pred == ys).float().mean()
        return {"loss": loss.detach(), **terms, "acc_l": acc}

    tensors = [x_u] if semi else [x_l, y_l]
    return fit(model, None, tensors, train_step=step, optimizers={"main": opt}, epochs=epochs,
               batch_size=batch_size, seed=seed, progress=progress, desc=desc)


# ---------------------------------------------------------------------- measurement
@torch.no_grad()
def reconstruction_error(model: CCVAE, x: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean squared error per image ‖x − x̂‖² of reconstructions from the posterior mean."""
    with model_mode(model, training=False):
        err = batched_apply(lambda xb: squared_error(xb, model.decode(model.encode(xb)[0])), x, batch_size)
    return float(err.mean())


@torch.no_grad()
def class_interpolation(model: CCVAE, a: int, b: int, steps: int = 8,
                        style: torch.Tensor | None = None) -> torch.Tensor:
    """Decode the straight path between the prior means of classes a and b (style fixed, 0 by default)."""
    if model.labels != "categorical":
        raise ValueError("class interpolation is for the categorical form; use edit_faces() for attributes")
    t = torch.linspace(0, 1, steps, device=model.prior_mu.device).unsqueeze(1)
    zc = (1 - t) * model.prior_mu[a] + t * model.prior_mu[b]
    zs = torch.zeros(steps, model.s_dim, device=zc.device) if style is None else style.to(zc.device).expand(steps, -1)
    return model.decode(torch.cat([zc, zs], 1))


@torch.no_grad()
def conditional_generation_accuracy(model: CCVAE, judge: Callable[[torch.Tensor], torch.Tensor],
                                    n_per_class: int = 100, generator: torch.Generator | None = None
                                    ) -> tuple[float, list[float]]:
    """How often an independent classifier ``judge`` (images → class indices) reads back the class asked for.

    Draws z_c ~ p(z_c|y), z_\\c ~ N(0, I) for every class; returns the overall accuracy and one per class.
    """
    if model.labels != "categorical":
        raise ValueError("conditional_generation_accuracy is for the categorical form; "
                         "measure attribute edits with vaecourse.edits")
    dev = model.prior_mu.device
    y = torch.arange(model.n_labels, device=dev).repeat_interleave(n_per_class)
    with model_mode(model, training=False):
        pred = judge(model.sample_conditional(y, generator=generator)).to(dev)
    per_class = [float((pred[y == k] == k).float().mean()) for k in range(model.n_labels)]
    return float((pred == y).float().mean()), per_class


# ---------------------------------------------------------------------- interventions as the paper makes them
def _attribute_column(model: CCVAE, attributes: Sequence[str], attribute: str | int) -> int:
    """The z_c dimension of ``attribute`` (a name in ``attributes``, or an index), else a ValueError naming them."""
    if model.labels != "binary":
        raise ValueError("interventions on one attribute need the binary (per-attribute) form: labels='binary'")
    names = list(attributes)
    if len(names) != model.n_labels:
        raise ValueError(f"give one name per attribute the model was trained on: it has {model.n_labels}, got {names}")
    if isinstance(attribute, str):
        if attribute not in names:
            raise ValueError(f"the model was not trained on {attribute!r}; it knows {', '.join(names)}")
        return names.index(attribute)
    if not 0 <= int(attribute) < model.n_labels:
        raise ValueError(f"attribute index must be in 0..{model.n_labels - 1}, got {attribute}")
    return int(attribute)


def _target(direction: str) -> int:
    if direction not in ("add", "remove"):
        raise ValueError(f"direction must be 'add' or 'remove', got {direction!r}")
    return 1 if direction == "add" else 0


def set_characteristic(model: CCVAE, z: torch.Tensor, i: int, value: int, amount: float = 1.0) -> torch.Tensor:
    """A copy of ``z`` with z_c,i moved ``amount`` of the way to the mean of p(z_c,i | y_i = value).

    ``amount`` = 1 sets it to that mean (the paper's intervention); values between 0 and 1 walk there.
    Every other coordinate (the other z_c dimensions, the style) is left as it is.
    """
    if not math.isfinite(float(amount)):
        raise ValueError(f"amount must be a finite number (1 = at the prior mean), got {amount!r}")
    out = z.clone()
    target = model.prior_mu[i, int(value)].detach()
    out[:, i] = out[:, i] + float(amount) * (target - out[:, i])
    return out


@torch.no_grad()
def reconstruct(model: CCVAE, x: torch.Tensor) -> torch.Tensor:
    """Decode the posterior mean: the unedited reconstruction every edit is compared with."""
    with model_mode(model, training=False):
        return model.decode(model.encode(x)[0])


@torch.no_grad()
def edit_faces(model: CCVAE, x: torch.Tensor, attributes: Sequence[str], attribute: str | int, direction: str,
               amount: float = 1.0) -> torch.Tensor:
    """The paper's intervention: encode, put z_c,i at the mean of p(z_c,i | y_i = target), decode.

    ``direction`` "add" targets y_i = 1, "remove" y_i = 0; ``amount`` < 1 stops part of the way.
    """
    i, v = _attribute_column(model, attributes, attribute), _target(direction)
    with model_mode(model, training=False):
        z = model.encode(x)[0]
        return model.decode(set_characteristic(model, z, i, v, amount))


@torch.no_grad()
def random_step_faces(model: CCVAE, x: torch.Tensor, attributes: Sequence[str], attribute: str | int, direction: str,
                      generator: torch.Generator) -> torch.Tensor:
    """The baseline for :func:`edit_faces`: each face's latent moved as far, along a random direction of the whole z.

    The step length of each face is |μ_i(target) − z_c,i|, the length of its own intervention;
    the direction is drawn uniformly on the sphere, one per face, from ``generator``.
    """
    i, v = _attribute_column(model, attributes, attribute), _target(direction)
    with model_mode(model, training=False):
        z = model.encode(x)[0]
        length = (model.prior_mu[i, v] - z[:, i]).abs().unsqueeze(1)
        u = torch.randn(z.shape, generator=generator).to(z.device)
        return model.decode(z + length * u / u.norm(dim=1, keepdim=True))


def edit_functions(model: CCVAE, attributes: Sequence[str], seed: int = 0
                   ) -> dict[str, Callable[..., torch.Tensor]]:
    """``reconstruct``, ``edit`` and ``random_edit`` as ``vaecourse.edits.measure_edits`` takes them."""
    _attribute_column(model, attributes, 0)  # the form and the names, checked once here
    gen = torch.Generator().manual_seed(seed)
    return {"reconstruct": lambda x: reconstruct(model, x),
            "edit": lambda x, a, d: edit_faces(model, x, attributes, a, d),
            "random_edit": lambda x, a, d: random_step_faces(model, x, attributes, a, d, gen)}


@torch.no_grad()
def latent_walk(model: CCVAE, x: torch.Tensor, attribute: int, steps: int = 7, lim: float = 0.5) -> torch.Tensor:
    """Decode ``x`` with z_c,i walked from beyond the mean of p(z_c,i|y_i=0) to beyond that of y_i=1.

    Returns (len(x)·steps, C, H, W), row by row: face k at step 0..steps−1. The walk spans
    [μ_i(0) − lim·d, μ_i(1) + lim·d] with d = μ_i(1) − μ_i(0); everything else stays at the posterior mean.
    """
    if model.labels != "binary" or not 0 <= attribute < model.n_labels:
        raise ValueError(f"latent walks need the binary form and an attribute index in 0..{model.n_labels - 1}")
    if steps < 2:
        raise ValueError(f"a walk needs at least 2 steps, got {steps}")
    with model_mode(model, training=False):
        z = model.encode(x)[0]
        lo, hi = model.prior_mu[attribute, 0], model.prior_mu[attribute, 1]
        d = hi - lo
        values = torch.linspace(float(lo - lim * d), float(hi + lim * d), steps, device=z.device)
        zz = z.unsqueeze(1).repeat(1, steps, 1)
        zz[:, :, attribute] = values
        return model.decode(zz.reshape(-1, z.shape[1]))


# ---------------------------------------------------------------------- live widgets
def _style_directions(n: int, s_dim: int, seed: int) -> torch.Tensor:
    """``n`` random unit directions of the style latent, drawn from ``seed`` (the same on every machine)."""
    if s_dim < 1:
        raise ValueError("this model has no style latent to move (s_dim = 0); build it with s_dim >= 1")
    dirs = torch.randn(n, s_dim, generator=torch.Generator().manual_seed(seed))
    return dirs / dirs.norm(dim=1, keepdim=True)


def digit_widget(model: CCVAE, seed: int = 0, device: torch.device | str = "cpu", *, digit: int = 3,
                 lim: float = 3.0) -> LiveImage:
    """Pick a class, move the style: z_c at the prior mean of the class, z_\\c = a·d₁ + b·d₂.

    d₁, d₂ are two random unit directions of the style latent (from ``seed``); the class should
    stay while slant and thickness change. Categorical form. The model is put in eval mode.
    """
    if model.labels != "categorical":
        raise ValueError("digit_widget picks one class: it needs the categorical form (use face_widget for attributes)")
    if not 0 <= digit < model.n_labels:
        raise ValueError(f"digit must be a class index in 0..{model.n_labels - 1}, got {digit}")
    model.eval()
    dirs = _style_directions(2, model.s_dim, seed)
    class_means = model.prior_mu.detach().cpu()

    def render(digit: str, style_a: float, style_b: float) -> torch.Tensor:
        z = torch.cat([class_means[int(digit)], style_a * dirs[0] + style_b * dirs[1]])
        return model.decode(z.unsqueeze(0).to(device)).cpu()

    controls = {"digit": W.ToggleButtons(options=[str(d) for d in range(model.n_labels)], value=str(digit),
                                         description="digit y", style={"button_width": "28px"}),
                "style_a": W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description="style 1"),
                "style_b": W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description="style 2")}
    return LiveImage(render, controls, scale=5, title="CCVAE: label fixed, style moves")


def face_widget(model: CCVAE, x_face: torch.Tensor, y_face: torch.Tensor, attributes: Sequence[str], seed: int = 0,
                device: torch.device | str = "cpu", *, lim: float = 3.0, style_lim: float = 4.0) -> LiveImage:
    """One face, edited live: a toggle per attribute, a slider per z_c dimension, a style slider.

    Toggle i puts z_cᵢ at the mean of p(z_cᵢ|yᵢ) (starting from the face's label ``y_face``);
    slider ``z_c{i}`` moves it from there in that prior's standard deviations; ``style`` moves
    the face's own z_\\c along a random unit direction (from ``seed``). Binary form; the model is
    put in eval mode.
    """
    if model.labels != "binary":
        raise ValueError("face_widget edits binary attributes: it needs the binary (paper's) form")
    attributes = list(attributes)
    if len(attributes) != model.n_labels:
        raise ValueError(f"give one name per attribute: the model has {model.n_labels}, got {attributes}")
    taken = {"style", *(f"z_c{i}" for i in range(model.n_labels))} & set(attributes)
    if taken or len(set(attributes)) != len(attributes):
        raise ValueError(f"attribute names must be distinct and not 'style' or 'z_c<i>', got {attributes}")
    x = x_face.unsqueeze(0) if x_face.dim() == 3 else x_face
    y = y_face.reshape(-1).float().cpu()
    if x.shape[0] != 1 or y.numel() != model.n_labels:
        raise ValueError(f"give one face (C×H×W or 1×C×H×W) and its {model.n_labels} labels, got "
                         f"{tuple(x_face.shape)} and {tuple(y_face.shape)}")
    model.eval()
    with torch.no_grad():
        face_z = model.encode(x.to(device))[0][0].cpu()
    style_dir = _style_directions(1, model.s_dim, seed)[0]
    prior_mu, prior_sd = model.prior_mu.detach().cpu(), (0.5 * model.prior_logvar.detach().cpu()).exp()
    n = model.n_labels

    def render(style: float = 0.0, **values) -> torch.Tensor:
        z = face_z.clone()
        for i, a in enumerate(attributes):
            v = 1 if values[a] == "on" else 0
            z[i] = prior_mu[i, v] + values[f"z_c{i}"] * prior_sd[i, v]
        z[n:] = face_z[n:] + style * style_dir
        return model.decode(z.unsqueeze(0).to(device)).cpu()

    controls: dict[str, W.ValueWidget] = {}
    for i, a in enumerate(attributes):
        controls[a] = W.ToggleButtons(options=["off", "on"], value="on" if float(y[i]) > 0.5 else "off",
                                      description=a, style={"button_width": "40px"})
        controls[f"z_c{i}"] = W.FloatSlider(value=0.0, min=-lim, max=lim, step=0.1, description=f"z_c[{i}] (sd)")
    controls["style"] = W.FloatSlider(value=0.0, min=-style_lim, max=style_lim, step=0.1, description="style")
    return LiveImage(render, controls, scale=5, title="CCVAE on faces: attributes on/off, live")
