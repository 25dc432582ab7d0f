"""VAC's loss and IntroVAC's Algorithm 1 step (the encoder/classifier and the decoder in an introspective game)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..losses import binary_labels, gaussian_kl, reparameterize
from ..train import adam
from .model import (
    LABELS_FIX,
    PAPER_BETAS,
    VAC,
    Betas,
    Calibrated,
    Terms,
    Weights,
)


def l1_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per pixel, per example: IntroVAC's L_AE (L1 gives sharper images than MSE)."""
    return (x - x_hat).abs().flatten(1).mean(1)


def with_real_column(y: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Append the fake-logit target (0 = real, 1 = fake) to attribute labels."""
    return torch.cat([y, torch.full_like(y[:, :1], value)], dim=1)


def objective(model: VAC, x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              x_hat: torch.Tensor, logits: torch.Tensor, weights: Weights = PAPER_BETAS) -> Terms:
    """The VAC loss of one batch from its forward pass, under the paper's β's or the calibrated weights.

    ``Betas`` (the paper): β_AE·mean L1 + β_CL·mean BCE + β_reg·KL/d. ``Calibrated``: the Gaussian
    likelihood with the σ-VAE's c + kl·KL + cl·Σ BCE, nats per image. With a fake logit (IntroVAC)
    real images also teach it "real" (target 0): the classifier's extra class must be told what real
    looks like. Returns ``loss`` and, to print, ``l1`` and ``mse`` per pixel, ``bce`` per logit,
    ``kl`` in nats per image, ``acc`` (attributes, threshold 0) and ``c`` (the variance used; for the
    paper's weights the Laplace scale's variance 2b² is not a Gaussian c, so it reports the batch MSE).
    """
    target = with_real_column(y) if model.fake_logit else y
    l1 = l1_error(x, x_hat).mean()
    kl = gaussian_kl(mu, logvar).mean()
    bce_cols = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    mse = (x - x_hat).detach().pow(2).mean()
    if isinstance(weights, Betas):
        loss = weights.ae * l1 + weights.cl * bce_cols.mean() + weights.reg * kl / mu.shape[1]
        c = mse
    elif isinstance(weights, Calibrated):
        nll, c = model.likelihood(x, x_hat)
        loss = nll.mean() + weights.kl * kl + weights.cl * bce_cols.sum(1).mean()
    else:
        raise TypeError(f"weights must be introvac.Betas (the paper's) or introvac.Calibrated, got {type(weights)}")
    acc = ((logits[:, :model.n_attributes] > 0).float() == y).float().mean()
    return {"loss": loss, "l1": l1.detach(), "mse": mse, "bce": bce_cols.mean().detach(), "kl": kl.detach(),
            "acc": acc, "c": c.detach()}


def vac_terms(model: VAC, x: torch.Tensor, y: torch.Tensor, weights: Weights = PAPER_BETAS) -> Terms:
    """VAC's loss on a batch (see :func:`objective`): z ~ q(z|x) in training, μ(x) in eval mode."""
    y = binary_labels(y, model.n_attributes, LABELS_FIX)
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar) if model.training else mu
    return objective(model, x, y, mu, logvar, model.decode(z), model.classifier(z), weights)


def vac_loss(weights: Weights = PAPER_BETAS) -> Callable[[VAC, tuple[torch.Tensor, ...]], Terms]:
    """``loss_fn(model, (x, y))`` for ``vaecourse.fit``: the VAC objective with the paper's or calibrated weights."""

    def loss_fn(model: VAC, batch: tuple[torch.Tensor, ...]) -> Terms:
        if len(batch) < 2:
            raise ValueError("the VAC loss needs (images, attribute labels) batches: fit(model, loss, [x, y])")
        return vac_terms(model, batch[0], batch[1], weights)

    return loss_fn


# ----------------------------------------------------------------------------- IntroVAC
def introvac_optimizers(model: VAC, lr: float = 2e-4, betas: tuple[float, float] = (0.9, 0.999)
                        ) -> dict[str, torch.optim.Optimizer]:
    """Two Adam optimisers: ``"enc_cls"`` for encoder + classifier (Φ, w) and ``"dec"`` for the decoder (θ)."""
    if not model.fake_logit:
        raise ValueError("IntroVAC needs the extra fake logit: build VAC(..., fake_logit=True)")
    return {"enc_cls": adam([*model.encoder.parameters(), *model.classifier.parameters()], lr=lr, betas=betas),
            "dec": adam(model.decoder.parameters(), lr=lr, betas=betas)}


def fake_scores(model: VAC, x: torch.Tensor) -> torch.Tensor:
    """All logits of C(E(x)) at the posterior mean: attributes then the fake logit (N × attributes+1)."""
    return model.classifier(model.encode(x)[0])


def introvac_step(model: VAC, optimizers: dict[str, torch.optim.Optimizer], weights: Weights = PAPER_BETAS,
                  generator: torch.Generator | None = None) -> Callable[[tuple[torch.Tensor, ...]], Terms]:
    """``train_step(batch)`` for ``vaecourse.fit``: one batch of Algorithm 1 (Maggipinto et al. 2020).

    Step 1 (encoder + classifier) minimises the VAC objective (:func:`objective`: reconstruction,
    classification with real images labelled real, KL) + ec·(BCE(fake | E(dt X_rr)) + BCE(fake | E(dt X_g)))
    with X_rr = G(dt Z_r) and X_g = G(Z_g), Z_g ~ N(0, I). Its backward pass also leaves the
    reconstruction's gradient in the decoder's ``.grad``. Step 2 (decoder) adds the gradient of
    g·(BCE([Y, real] | C(E(X_rr))) + BCE(real | C(E(X_g)))), computed by a *fresh* encoder pass
    after step 1 changed the encoder (backpropagating through the old pass would use weights that
    the optimiser overwrote in place), and steps the decoder on the sum.
    """
    opt_ec, opt_dec = optimizers["enc_cls"], optimizers["dec"]
    dec_params = [p for p in model.decoder.parameters() if p.requires_grad]

    def step(batch: tuple[torch.Tensor, ...]) -> Terms:
        x, y = batch[0], binary_labels(batch[1], model.n_attributes, LABELS_FIX)
        opt_ec.zero_grad(set_to_none=True)
        opt_dec.zero_grad(set_to_none=True)
        # ---- step 1: encoder + classifier
        mu, logvar = model.encode(x)
        z_r = reparameterize(mu, logvar)
        x_r = model.decode(z_r)                                     # reconstruction: trains E and G
        x_rr = model.decode(z_r.detach())                           # the decoder's own graph, for step 2
        z_g = torch.randn(z_r.shape, generator=generator).to(z_r)   # drawn on the CPU: the same codes on any device
        x_g = model.decode(z_g)                                     # a prior sample, for step 2
        terms = objective(model, x, y, mu, logvar, x_r, model.classifier(z_r), weights)
        fake_rr = fake_scores(model, x_rr.detach())[:, -1]          # dt: E,C's loss must not reach G
        fake_g = fake_scores(model, x_g.detach())[:, -1]
        ones = torch.ones_like(fake_rr)
        l_ec = F.binary_cross_entropy_with_logits(fake_rr, ones) + F.binary_cross_entropy_with_logits(fake_g, ones)
        loss_ec = terms["loss"] + weights.ec * l_ec
        loss_ec.backward()
        opt_ec.step()
        # ---- step 2: decoder (its .grad already holds the reconstruction term's gradient from step 1)
        real = with_real_column(y)
        s_rr = fake_scores(model, x_rr)                             # fresh pass through the updated E and C
        s_g = fake_scores(model, x_g)[:, -1]
        l_g_r = F.binary_cross_entropy_with_logits(s_rr, real)      # right class and real
        l_g_g = F.binary_cross_entropy_with_logits(s_g, torch.zeros_like(s_g))  # looks real
        loss_g = weights.g * (l_g_r + l_g_g)
        loss_g.backward(inputs=dec_params)                          # only θ collects this gradient
        opt_dec.step()
        with torch.no_grad():
            p_fake_rr = torch.sigmoid(fake_rr).mean()
            p_fake_g = torch.sigmoid(fake_g).mean()
        return {**terms, "loss": loss_ec.detach(), "l_ec": l_ec.detach(), "l_g": (l_g_r + l_g_g).detach(),
                "p_fake_rec": p_fake_rr.detach(), "p_fake_gen": p_fake_g.detach()}

    return step
