"""The terms of the VAE objectives, each per example (summed over pixels / latent dims).

Per-example sums keep the scale the papers use (the 293 + 14 of Zhao's report, 2023, is a per-image sum);
a per-pixel mean silently rescales β by the number of pixels (lesson 03 shows it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I): a sample whose gradient flows into μ and σ."""
    eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) in nats per example: ½ Σ (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def gaussian_kl_between(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                        mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) per example for diagonal Gaussians (conditional priors)."""
    var_ratio = (logvar_q - logvar_p).exp()
    mahalanobis = (mu_q - mu_p).pow(2) / logvar_p.exp()
    return 0.5 * (var_ratio + mahalanobis - 1.0 - (logvar_q - logvar_p)).flatten(1).sum(1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) per example (summed over dimensions)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).flatten(1).sum(1)


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """‖x − x̂‖² per example (the distortion of lessons 03 and 04)."""
    return (x - x_hat).pow(2).flatten(1).sum(1)


def gaussian_nll(x: torch.Tensor, x_hat: torch.Tensor, c: float | torch.Tensor, constant: bool = False) -> torch.Tensor:
    """−log N(x; x̂, c·I) per example: ‖x − x̂‖²/(2c), plus D/2·log(2πc) when ``constant``.

    The constant does not move the optimum for a fixed c; it matters when c is learned (σ-VAE)
    or when likelihoods of different c are compared.
    """
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    nll = squared_error(x, x_hat) / (2 * c)
    if constant:
        nll = nll + 0.5 * x[0].numel() * torch.log(2 * math.pi * c)
    return nll


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """−log Bernoulli(x; sigmoid(logits)) per example (binary cross-entropy summed over pixels)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of independent Bernoullis sigmoid(logits) in nats per example, summed over the last dims.

    −p log p − (1−p) log(1−p) written as softplus(ℓ) − p·ℓ, which stays finite for large |ℓ|.
    """
    p = torch.sigmoid(logits)
    return (F.softplus(logits) - p * logits).flatten(1).sum(1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over dimension 1, in nats per example."""
    logp = F.log_softmax(logits, 1)
    return -(logp.exp() * logp).sum(1)


def binary_labels(y: torch.Tensor, n_labels: int, fix: str = "") -> torch.Tensor:
    """Binary attribute labels as a float N × ``n_labels`` tensor (a length-N vector is one attribute).

    A wrong shape raises a ValueError naming the expected shape and ``fix`` (what to change).
    """
    y = y.float()
    if y.dim() == 1:
        y = y.unsqueeze(1)
    if y.dim() != 2 or y.shape[1] != n_labels:
        raise ValueError(f"expected N×{n_labels} binary attribute labels, got shape {tuple(y.shape)}"
                         + (f"; {fix}" if fix else ""))
    return y


def terms_as_floats(terms: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Scalar values of a dict of loss terms (means of tensors) for logging."""
    out = {}
    for k, v in terms.items():
        out[k] = float(v.detach().float().mean()) if torch.is_tensor(v) else float(v)
    return out


def vae_terms(model, x: torch.Tensor, c: float = 0.05, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """The Gaussian-decoder VAE objective per batch: ‖x − x̂‖²/(2c) + β·KL(q(z|x) ‖ N(0, I)).

    Returns the batch means of ``loss``, ``rec`` (the scaled squared error), ``kl`` (nats) and
    ``sq_err`` (‖x − x̂‖² per image). With ``model.variational`` False (an AE) the KL is
    reported but not added, so the AE and the VAE train the same nets on the same distortion.
    """
    out = model(x)
    sq = squared_error(x, out.x_hat)
    rec = sq / (2 * c)
    kl = gaussian_kl(out.mu, out.logvar)
    loss = rec + beta * kl if getattr(model, "variational", True) else rec
    return {"loss": loss.mean(), "rec": rec.mean(), "kl": kl.mean(), "sq_err": sq.mean()}


def vae_loss(c: float = 0.05, beta: float = 1.0):
    """``loss_fn(model, batch)`` for ``fit``: the Gaussian VAE objective on the batch's first tensor."""
    if c <= 0:
        raise ValueError(f"the decoder variance c must be positive, got {c}")
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")

    def loss_fn(model, batch):
        return vae_terms(model, batch[0], c=c, beta=beta)

    return loss_fn
