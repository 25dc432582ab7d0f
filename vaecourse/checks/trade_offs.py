"""The checks that follow the exercises of lessons 03 (c and β), 04 (GECO) and 04b (the decoder's fixed points)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .. import kernel_toy as kt
from .common import _close, _diagnose, _fail, _grads, _number, _tensor_out

__all__ = [
    "check_mse_loss_beta",
    "check_calibrated_nll",
    "check_predicted_active_units",
    "check_constraint_average",
    "check_lambda_step",
    "check_predicted_directions",
    "check_fixed_point_update",
    "check_predicted_beta_c",
]


# ----------------------------------------------------------------------------- lesson 03
def check_mse_loss_beta(fn: Callable[[float, tuple[int, ...]], tuple[float, float]]) -> None:
    """The summed-error β and decoder variance c that ``F.mse_loss(x̂, x) + w·KL`` trains, for several image shapes."""
    name = "β and c of F.mse_loss + w·KL"
    for w, shape in ((1.0, (1, 28, 28)), (0.5, (3, 32, 32)), (2.0, (1, 64, 64))):
        out = fn(w, shape)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            _fail(name, f"returned {out!r}", "return the pair: return beta, c")
        beta, c = (float(v) for v in out)
        d = int(np.prod(shape))
        if abs(beta / (w * d) - 1) > 1e-9:
            slips = {w: "F.mse_loss averages over all D numbers of an image: multiply the KL weight by D",
                     w * shape[-1] * shape[-2]: f"count the channels too: D = C·H·W = {d} for images of shape {shape}",
                     w / d: "the other way round: dividing the squared error by D multiplies the KL's weight by D",
                     2 * w * d: "that is 2c: β = D·w and c = β/2"}
            hint = next((h for v, h in slips.items() if abs(beta / v - 1) < 1e-9), "β = D·w with D = C·H·W")
            _fail(name, f"β = {beta:g} for w = {w:g} on images of shape {shape}; expected {w * d:g}", hint)
        if abs(c / (w * d / 2) - 1) > 1e-9:
            slips = {beta: "c = β/2: the Gaussian's ‖x − x̂‖²/(2c) is ‖x − x̂‖² times 1/(2c)",
                     2 * beta: "c = β/2, not 2β", 1 / beta: "c = β/2, not 1/β"}
            hint = next((h for v, h in slips.items() if abs(c / v - 1) < 1e-9), "c = β/2")
            _fail(name, f"c = {c:g} for β = {beta:g}; expected {beta / 2:g}", hint)
    print(f"{name}: correct (w = 1 on MNIST: β = 784, c = 392; on 32×32 RGB images with w = 0.5: β = 1536, c = 768)")


def check_calibrated_nll(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """(−log N(x; x̂, c*I) per image, c*) from a batch's squared errors, c* = their mean per pixel."""
    name = "σ-VAE likelihood"
    n = 784
    sq0 = torch.tensor([20.0, 35.0, 50.0, 43.0], dtype=torch.float64)
    s = sq0.clone().requires_grad_(True)
    out = fn(s, n)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        _fail(name, f"returned {type(out).__name__}", "return the pair: return nll, c")
    nll, c = out
    if not isinstance(c, torch.Tensor) or c.numel() != 1:
        shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
        _fail(name, f"c* is {shape}, expected one number for the batch (a 0-d tensor)",
              "c* = the batch's mean squared error per pixel: one value, sq_err.mean() / n_pixels, as a tensor "
              "(keep it a tensor so the gradient can flow through it)")
    want_c = sq0.mean() / n
    if not _close(c.detach().reshape(()), want_c):
        cv = float(c.detach())
        slips = {float(sq0.mean()): "that is the squared error per image; c* is per pixel: divide by n_pixels",
                 float(sq0.sum() / n): "you summed over the batch: average over the images, then divide by n_pixels",
                 float((sq0.mean() / n).sqrt()): "c* is a variance (the mean squared error), not its square root",
                 float(sq0.mean() / n / 2): "no ½ here: c* = mean squared error per pixel"}
        hint = next((h for v, h in slips.items() if abs(cv / v - 1) < 1e-6), "c* = sq_err.mean() / n_pixels")
        _fail(name, f"c* = {cv:.6g}, expected {float(want_c):.6g}", hint)
    nll = _tensor_out(name, nll, (4,), "one value per image", "nll per image: sq_err/(2c*) + D/2·log(2πc*)")
    want = sq0 / (2 * want_c) + 0.5 * n * torch.log(2 * np.pi * want_c)
    if not _close(nll.detach(), want):
        slip = _diagnose(nll.detach(), {
            "the constant D/2·log(2πc*) is missing: with c chosen by the data it is what stops c from growing "
            "without end": sq0 / (2 * want_c),
            "log(2πc*), not log c*": sq0 / (2 * want_c) + 0.5 * n * torch.log(want_c),
            "the ½ of D/2·log(2πc*) is missing": sq0 / (2 * want_c) + n * torch.log(2 * np.pi * want_c),
            "the constant counts every pixel: D/2·log(2πc*), not ½·log(2πc*)":
                sq0 / (2 * want_c) + 0.5 * torch.log(2 * np.pi * want_c),
            "the factor 2 of ‖x − x̂‖²/(2c*) is missing": sq0 / want_c + 0.5 * n * torch.log(2 * np.pi * want_c),
        })
        _fail(name, f"nll = {nll.detach().numpy().round(3).tolist()}, expected {want.numpy().round(3).tolist()}",
              slip or "−log N(x; x̂, c*I) = ‖x − x̂‖²/(2c*) + D/2·log(2πc*) with D = n_pixels")
    (g,) = _grads(name, nll, {"sq_err": s})
    if not _close(g, torch.full_like(sq0, 1 / (2 * float(want_c)))):
        _fail(name, "the values are right but the gradient of the summed nll is not 1/(2c*) per image",
              "build nll and c* from sq_err with torch operations (no .item(), no in-place edits)")
    zero_nll, zero_c = fn(torch.zeros(2, dtype=torch.float64), n)
    if not torch.isfinite(torch.as_tensor(zero_nll)).all() or abs(float(zero_c) - 1e-6) > 1e-12:
        _fail(name, "a batch with zero error gives c* = 0 and log c* = −∞",
              "clamp c* from below: c = (sq_err.mean() / n_pixels).clamp_min(min_c), with min_c = 1e-6")
    print(f"{name}: correct (c* = {float(want_c):.5f} on 4 images; nll per image to 1e-8; its summed gradient is "
          f"1/(2c*) per image whether or not c* is detached: the loss is flat in c at c*)")


def check_predicted_active_units(fn: Callable[[torch.Tensor, float, int], int]) -> None:
    """How many latent units a linear VAE keeps, #{λᵢ > β/2} capped at the latent size, on a toy spectrum."""
    name = "predicted active units"
    spectrum = torch.tensor([6.0, 3.5, 2.2, 1.2, 0.7, 0.3], dtype=torch.float64)
    cases = ((3.0, 5), (0.2, 4), (5.0, 5), (1.0, 6))

    def count(threshold, cap=True, values=spectrum):
        return tuple(int(min((values > threshold(b)).sum(), k if cap else 99)) for b, k in cases)

    got = []
    for beta, k in cases:
        out = fn(spectrum, beta, k)
        try:
            value = float(out)
        except (TypeError, ValueError):
            _fail(name, f"returned {type(out).__name__}", "return a count, e.g. int((eigenvalues > beta / 2).sum())")
        if value != int(value):
            _fail(name, f"returned {value}, not a whole number", "count the eigenvalues above the threshold")
        got.append(int(value))
    want = count(lambda b: b / 2)
    if tuple(got) == want:
        print(f"{name}: correct on 4 cases (β = 3, 0.2, 5, 1 on a toy spectrum: {list(want)} units)")
        return
    slips = {count(lambda b: b): "the threshold is β/2 = c, not β: this lesson's β is 2c (lesson 04b's β is c)",
             count(lambda b: 2 * b): "the threshold is c = β/2, not 2β",
             count(lambda b: b / 2, values=spectrum.sqrt()): "the eigenvalues are variances already: compare λᵢ "
                                                             "itself with c, not its square root",
             count(lambda b: b / 2, cap=False): "a VAE with k latent units cannot keep more than k: cap the count"}
    hint = slips.get(tuple(got), "a linear VAE keeps direction i when λᵢ > c = β/2, at most n_latent of them")
    cases_text = "; ".join(f"β = {b:g} with {k} units" for b, k in cases)
    _fail(name, f"counts {got} for ({cases_text}) on eigenvalues {spectrum.tolist()}; expected {list(want)}", hint)


# ----------------------------------------------------------------------------- lesson 04
def check_constraint_average(fn: Callable[[float | None, float, float], float]) -> None:
    """GECO's moving average C_ma = α·C_ma + (1 − α)·C, started at the first batch value (c_ma is None)."""
    name = "moving-average constraint"
    try:
        first = fn(None, 5.0, 0.99)
    except TypeError as err:
        _fail(name, f"the first step (c_ma = None) raised TypeError: {err}",
              "at the first step there is no average yet: return c_batch itself (Algorithm 1 starts with C_ma⁰ = C⁰)")
    if _number(name, first, "the new average") != 5.0:
        _fail(name, f"the first step returned {first!r} for c_ma = None, c_batch = 5; expected 5",
              "start the average at the first batch value, C_ma⁰ = C⁰ (not at 0: an average started at 0 "
              "would report the constraint as met for the first hundred steps)")
    for c_ma, c, alpha in ((10.0, 0.0, 0.9), (-2.0, 6.0, 0.99), (3.0, -1.0, 0.5)):
        got = _number(name, fn(c_ma, c, alpha), "the new average")
        want = alpha * c_ma + (1 - alpha) * c
        if abs(got - want) <= 1e-12 * max(1.0, abs(want)):
            continue
        slips = {(1 - alpha) * c_ma + alpha * c: "α and 1 − α are swapped: α is the memory, the weight on the old "
                                                 "average (0.99 keeps ~100 steps), 1 − α that on the new batch",
                 c: "that is the batch value itself: the average must also remember c_ma",
                 c_ma: "the average did not move: add (1 − α)·c_batch",
                 alpha * c_ma + c: "the new value needs its weight (1 − α)",
                 (c_ma + c) / 2: "that is the plain mean of the two: weigh them by α and 1 − α"}
        hint = next((h for v, h in slips.items() if abs(got - v) <= 1e-9 * max(1.0, abs(v))),
                    "C_ma ← α·C_ma + (1 − α)·C")
        _fail(name, f"{got:.6g} for c_ma = {c_ma:g}, c_batch = {c:g}, α = {alpha:g}; expected {want:.6g}", hint)
    series, c_ma = [12.0, 4.0, -3.0, 0.5], None
    for c in series:
        c_ma = fn(c_ma, c, 0.9)
    print(f"{name}: correct (first step C_ma = C; then α·C_ma + (1 − α)·C: the batch values {series} with α = 0.9 "
          f"average to {float(c_ma):.4f})")


def check_lambda_step(fn: Callable[[float, float, float], float]) -> None:
    """GECO's multiplicative step λ·exp(η·C_ma): up when violated, down when met, positive always."""
    name = "λ update"
    for lam, c_ma, eta in ((25.0, -2.5, 1e-3), (2.0, 19.9, 1e-3), (1.0, 2.0, 0.1), (3.0, 0.0, 0.5),
                           (0.5, -1000.0, 0.01)):
        got = _number(name, fn(lam, c_ma, eta), "the new λ")
        want = lam * np.exp(eta * c_ma)
        if abs(got - want) <= 1e-10 * abs(want):
            continue
        slips = {lam + eta * c_ma: "that is plain gradient ascent on λ, λ + η·C_ma, which can drive λ negative "
                                   "(λ = 0.5, C_ma = −1000, η = 0.01 gives −9.5): GECO multiplies λ by exp(η·C_ma), "
                                   "so λ stays positive",
                 lam * np.exp(-eta * c_ma): "the sign: a violated constraint (C_ma > 0) must raise λ, a met one "
                                            "lower it",
                 np.exp(eta * c_ma): "the step multiplies the current λ: λ·exp(η·C_ma)",
                 lam * (1 + eta * c_ma): "that is the first-order expansion of exp; use the exponential itself "
                                         "(it stays positive)",
                 lam * np.exp(eta * lam * c_ma): "that moves log λ by η·λ·C_ma (gradient ascent on log λ); GECO moves "
                                                 "log λ by η·C_ma",
                 lam * np.exp(c_ma): "the rate η is missing: λ·exp(η·C_ma)"}
        hint = next((h for v, h in slips.items() if abs(got - v) <= 1e-9 * max(1.0, abs(v))),
                    "λ ← λ·exp(η·C_ma)")
        _fail(name, f"{got:.6g} for λ = {lam:g}, C_ma = {c_ma:g}, η = {eta:g}; expected {want:.6g}", hint)
    print(f"{name}: correct (λ·exp(η·C_ma): from λ = 25 at C_ma = −2.5, η = 0.001 one step gives "
          f"{25 * np.exp(-2.5e-3):.4f}; at C_ma = −1000 λ shrinks by e^−10 and stays positive)")


def check_predicted_directions(fn: Callable[[float, float], tuple[str, str]]) -> None:
    """Where GECO moves λ and the KL from a fixed-λ run whose distortion is sq_err, for tolerance κ."""
    name = "predicted directions"
    cases = ((14.6, 4.0), (14.6, 3.0), (40.0, 6.0), (30.0, 6.0), (20.0, 5.0))
    got = []
    for sq, kappa in cases:
        out = fn(sq, kappa)
        if not (isinstance(out, tuple | list) and len(out) == 2 and all(v in ("up", "down") for v in out)):
            _fail(name, f"returned {out!r} for sq_err = {sq:g}, κ = {kappa:g}",
                  "return a pair of the words 'up' or 'down': (where λ goes, where the KL goes), e.g. ('up', 'up')")
        got.append(tuple(out))

    def rule(threshold, lam_when_met="down", kl_same=True):
        out = []
        for sq, kappa in cases:
            lam = lam_when_met if sq < threshold(kappa) else ("up" if lam_when_met == "down" else "down")
            kl = lam if kl_same else ("up" if lam == "down" else "down")
            out.append((lam, kl))
        return out

    want = rule(lambda k: k * k)
    if got == want:
        print(f"{name}: correct on {len(cases)} cases (distortion below κ²: λ down, and the KL with it; "
              "above: both up)")
        return
    slips = {tuple(rule(lambda k: k)): "compare the squared error with κ², not κ: the constraint is ‖x − x̂‖² ≤ κ²",
             tuple(rule(lambda k: k * k, "up")): "the other way round: a met constraint has C = ‖x − x̂‖² − κ² < 0, and "
                                                 "λ·exp(η·C) with C < 0 is smaller than λ",
             tuple(rule(lambda k: k * k, "down", False)): "λ is right, the KL is not: λ weighs the distortion "
                                                          "against the KL, so a smaller λ makes distortion cheaper "
                                                          "and rate dearer: the model gives up KL and its distortion "
                                                          "rises towards κ²"}
    hint = slips.get(tuple(got), "distortion below κ² → C < 0 → λ falls → the KL falls (and the distortion rises "
                                 "towards κ²); above κ², the reverse")
    text = "; ".join(f"sq_err {sq:g}, κ {k:g}: {g}" for (sq, k), g, w in zip(cases, got, want) if g != w)
    _fail(name, f"wrong for {text}", hint)


# ----------------------------------------------------------------------------- lesson 04b
def check_fixed_point_update(fn: Callable[..., np.ndarray]) -> None:
    """One encoder + decoder update of the kernel toy, against kernel_toy's, at a moderate and a tiny β."""
    name = "fixed-point update"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2))
    grid = kt.latent_grid(7, lim=2.0)
    psi = rng.normal(size=(len(grid.prior), 2))
    for beta in (0.7, 1e-3):
        out = np.asarray(fn(x, psi, grid.log_prior, beta))
        if out.shape != psi.shape:
            _fail(name, f"returned shape {out.shape}, expected {psi.shape} (one decoded point per grid point)",
                  "the decoder g(z_b) = Σᵢ w_i(b) xᵢ is G×D: weights (n×G) transposed times the data (n×D)")
        if not np.isfinite(out).all():
            _fail(name, f"NaN or inf at β = {beta:g}",
                  "work in the log domain: subtract the largest log term before np.exp (or scipy.special.logsumexp)")
        want = kt.decoder_step(x, kt.encoder_step(x, psi, grid.log_prior, beta))
        if np.allclose(out, want, atol=1e-8):
            continue
        sq = kt.sq_dists(x, psi)
        wrong_norm = np.exp(grid.log_prior - sq / (2 * beta))
        wrong_norm = wrong_norm / wrong_norm.sum(0, keepdims=True)
        variants = {
            "the temperature enters as 2β: q ∝ π(z) exp(−‖x − g‖²/(2β))":
                kt.decoder_step(x, kt.encoder_step(x, psi, grid.log_prior, beta / 2)),
            "the prior π_b is missing from the encoder": kt.decoder_step(x, kt.encoder_step(x, psi, 0 * grid.log_prior,
                                                                                             beta)),
            "the decoder weights must sum to 1 over the data at each z_b (you normalised q over the data only)":
                wrong_norm.T @ x,
        }
        slip = next((h for h, v in variants.items() if np.allclose(out, v, atol=1e-6)), None)
        _fail(name, f"wrong decoded points at β = {beta:g} (max error {np.abs(out - want).max():.3g})",
              slip or "encoder: log q(z_b|xᵢ) = log π_b − ‖xᵢ − ψ_b‖²/(2β), normalised over b; decoder: "
                      "g(z_b) = Σᵢ q(z_b|xᵢ) xᵢ / Σⱼ q(z_b|xⱼ)")
    print(f"{name}: correct at β = 0.7 and at β = 0.001 (max difference from kernel_toy's < 1e-8)")


def check_predicted_beta_c(value: float, pair: np.ndarray) -> None:
    """A predicted β_c for two data points, against λ_max of their (1/n) covariance."""
    name = "predicted β_c"
    if value is None or not np.isscalar(value):
        _fail(name, f"predicted_beta_c is {value!r}", "assign a number, e.g. predicted_beta_c = 0.5")
    want = kt.critical_beta(pair)
    if abs(value / want - 1) < 0.01:
        print(f"{name}: {value:.4g} is right (λ_max of the 1/n covariance = {want:.4g})")
        return
    d2 = float(((pair[0] - pair[1]) ** 2).sum())
    slips = {2 * want: "twice too large: divide the covariance by n (the empirical distribution), not n − 1; and "
                       "this lesson's β is σ²β_KL, half of lesson 03's",
             d2: "that is the squared distance ‖x₁ − x₂‖²; each point sits at ±(x₁ − x₂)/2 from the mean",
             np.sqrt(d2): "that is the distance ‖x₁ − x₂‖; β has units of squared x",
             np.sqrt(want): "that is a standard deviation; β_c is a variance (λ_max of Cov x)"}
    hint = next((h for v, h in slips.items() if abs(value / v - 1) < 0.01), "β_c = λ_max(Cov x), Cov with 1/n")
    _fail(name, f"{value:.4g} is not β_c", hint)
