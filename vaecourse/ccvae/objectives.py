"""CCVAE's objectives: Benyahia et al.'s losses (form 1) and the paper's supervised and unsupervised bounds (form 2),
per example in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..losses import (
    gaussian_kl,
    gaussian_kl_between,
    gaussian_log_density,
    reparameterize,
)
from .model import CCVAE


# ---------------------------------------------------------------------- Benyahia et al.'s losses (form 1)
def _encode_sample(model: CCVAE, x: torch.Tensor):
    mu, lv = model.encode(x)
    z = reparameterize(mu, lv)
    return mu, lv, z


def report_supervised_terms(model: CCVAE, x: torch.Tensor, y: torch.Tensor, beta: float = 0.05,
                            ce_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Benyahia et al.'s labelled loss: rec + β·KL(q(z_\\c|x)‖N(0,I)) + β·KL(q(z_c|x)‖p(z_c|y)) + CE of q(y|z_c).

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
    """Benyahia et al.'s unlabelled loss: rec + β·KL(q(z|x)‖p(z)) + H(q(y|z_c)), p(z_c) = Σ_y p(z_c|y)p(y).

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
    ``classifier_weight`` α multiplies log q(y|x) (the bound is α = 1); like Benyahia et al.'s cross-entropy
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
    log_q = model.label_log_probs(lg)                 # log q(y|z_c) for every y, shaped like log p(z_c|y)
    kl_y = (log_q.exp() * (log_q - log_p_zc - log_py)).flatten(1).sum(1)  # E_q(y|z_c) over every y, exactly
    kl = log_qz - log_pzs + kl_y
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "entropy": model.label_entropy(lg)}


FORMS: dict[str, tuple[Callable, Callable]] = {
    "report": (report_supervised_terms, report_unsupervised_terms),
    "paper": (paper_supervised_terms, paper_unsupervised_terms),
}
