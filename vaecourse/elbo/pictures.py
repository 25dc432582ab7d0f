"""The picture of the bound: log p(x) split into the ELBO and KL(q‖p(z|x)), as a figure, an image and a live widget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .model import (
    LinearGaussian,
    log_normal,
)


# ----------------------------------------------------------------------------- the picture of the bound
def q_scale_2d(logvar: Sequence[float], rho: float = 0.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 2×2 scale L of a 2-D Gaussian with log-variances ``logvar`` and correlation ``rho`` (|ρ| < 1)."""
    if not -1 < rho < 1:
        raise ValueError(f"the correlation rho must lie strictly between -1 and 1, got {rho}")
    s1, s2 = (math.exp(0.5 * float(v)) for v in logvar)
    return torch.tensor([[s1, 0.0], [rho * s2, math.sqrt(1 - rho * rho) * s2]], dtype=dtype)


@dataclass
class BoundTerms:
    """What the bound pictures draw for one x and one q: posterior, q, log p(x), ELBO, gap, bar range (nats)."""

    post_mean: torch.Tensor
    post_scale: torch.Tensor
    q_mean: torch.Tensor
    q_scale: torch.Tensor
    log_px: float
    elbo: float

    @property
    def kl(self) -> float:
        return self.log_px - self.elbo

    @property
    def bar_range(self) -> tuple[float, float]:
        """The nats a bar shows: room below the ELBO for the gap to read, a margin above log p(x)."""
        lo = min(self.elbo, self.log_px) - max(2.0, 0.6 * self.kl + 1.0)
        return lo, self.log_px + 0.15 * (self.log_px - lo) + 0.5


def bound_terms(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor) -> BoundTerms:
    """log p(x), the ELBO of q = N(mean, LLᵀ) and the exact posterior for one x of a 2-D latent model."""
    if model.latent_dim != 2:
        raise ValueError(f"the bound pictures draw a 2-D latent; this model has latent_dim={model.latent_dim}")
    x = model._x(x).reshape(1, -1)
    mu = torch.as_tensor(mean, dtype=model.W.dtype).reshape(1, 2)
    scale = scale_tril.reshape(1, 2, 2).to(model.W.dtype)
    pm, ps = model.posterior(x)
    return BoundTerms(pm[0], ps[0], mu[0], scale[0], float(model.log_evidence(x)), float(model.elbo(x, mu, scale)))


def bound_figure(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor,
                 lim: float | None = None, n_grid: int = 120, title: str | None = None):
    """Two panels for one x and a 2-D latent: p(z|x) (filled) and q (lines); log p(x), the ELBO and their gap.

    ``title`` goes above both panels, with room kept for it (a suptitle added afterwards would overlap theirs).
    """
    import matplotlib.pyplot as plt

    t = bound_terms(model, x, mean, scale_tril)
    log_px, elbo, kl = t.log_px, t.elbo, t.kl
    lim = lim or 3.0
    g = torch.linspace(-lim, lim, n_grid, dtype=t.q_mean.dtype)
    gx, gy = torch.meshgrid(t.post_mean[0] + g, t.post_mean[1] + g, indexing="xy")
    grid = torch.stack([gx, gy], -1)
    p_dens = log_normal(grid, t.post_mean, t.post_scale).exp().numpy()
    q_dens = log_normal(grid, t.q_mean, t.q_scale).exp().numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.4, 2.9), gridspec_kw={"width_ratios": [1.35, 1]})
    ax.contourf(gx.numpy(), gy.numpy(), p_dens, levels=8, cmap="Blues")
    ax.contour(gx.numpy(), gy.numpy(), q_dens, levels=6, colors="tab:red", linewidths=1.0)
    ax.plot(*t.post_mean.numpy(), "b+", ms=8, label="p(z|x) mean")
    ax.plot(*t.q_mean.numpy(), "rx", ms=6, label="q mean")
    ax.set(xlabel="z[0]", ylabel="z[1]", title="exact posterior p(z|x) (blue) vs q (red)")
    ax.set_aspect("equal")
    ax.legend(fontsize=6, loc="lower right", frameon=False)
    lo, hi = t.bar_range
    bx.bar([0], [elbo - lo], bottom=lo, color="tab:red", width=0.6, label=f"ELBO = {elbo:.2f}")
    bx.bar([0], [log_px - elbo], bottom=elbo, color="tab:orange", alpha=0.5, width=0.6,
           label=f"gap = KL(q‖p(z|x)) = {kl:.2f}")
    bx.axhline(log_px, color="k", lw=1.2, label=f"log p(x) = {log_px:.2f}")
    bx.set(xlim=(-0.5, 2.2), ylim=(lo, hi), xticks=[], ylabel="nats",  # room on the right for the legend
           title="log p(x) = ELBO + KL(q ‖ p(z|x))")
    if log_px - elbo < 0.03 * (hi - lo):  # a gap of a few hundredths of a nat is thinner than the line
        bx.annotate("gap: too thin to see here", xy=(0.3, log_px), xytext=(0.4, log_px - 0.25 * (hi - lo)),
                    fontsize=6, arrowprops={"arrowstyle": "->", "lw": 0.6})
    bx.legend(fontsize=6, loc="lower right", frameon=False)  # below the log p(x) line, beside the bar
    if title:
        # the equal-aspect left panel leaves the axes lower than the layout's top, so the title is placed from
        # the panels themselves: 0.14 of this 2.9-inch figure clears a panel title and its padding
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        fig.suptitle(title, fontsize=9, y=max(ax.get_position().y1, bx.get_position().y1) + 0.14)
    else:
        fig.tight_layout()
    return fig


BLUE = np.array([0.12, 0.35, 0.75])
RED = np.array([0.85, 0.10, 0.10])
ORANGE = np.array([1.0, 0.70, 0.35])


def bound_image(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor,
                lim: float = 3.0, n_grid: int = 120) -> torch.Tensor:
    """``bound_figure`` drawn with numpy for live widgets (milliseconds, not a matplotlib redraw): 3×H×W in [0, 1].

    Left: p(z|x) as blue shading, q's density contours in red, on a square of half-width ``lim`` around the
    posterior mean (z[1] upwards). Right: a bar from the ELBO (red) up to log p(x) (black line), the gap
    KL(q‖p(z|x)) in orange; the bar's scale is the same as ``bound_figure``'s.
    """
    t = bound_terms(model, x, mean, scale_tril)
    g = torch.linspace(-lim, lim, n_grid, dtype=t.q_mean.dtype)
    gx, gy = torch.meshgrid(t.post_mean[0] + g, t.post_mean[1] + g.flip(0), indexing="xy")  # row 0 is the top
    grid = torch.stack([gx, gy], -1)
    p = log_normal(grid, t.post_mean, t.post_scale).exp().numpy()
    q = log_normal(grid, t.q_mean, t.q_scale).exp().numpy()
    panel = 1.0 - (p / p.max())[..., None] * (1.0 - BLUE)
    band = np.floor(q / max(q.max(), 1e-300) * 6).clip(0, 5)  # 5 contour levels at 1/6 ... 5/6 of q's peak
    edge = np.zeros_like(band, dtype=bool)
    edge[:, 1:] |= band[:, 1:] != band[:, :-1]
    edge[1:, :] |= band[1:, :] != band[:-1, :]
    panel[edge] = RED
    bar = np.ones((n_grid, n_grid // 3, 3))
    lo, hi = t.bar_range

    def row(value: float) -> int:  # value in nats -> pixel row (top = hi)
        return int(round((hi - value) / (hi - lo) * (n_grid - 1)))

    cols = slice(n_grid // 12, n_grid // 3 - n_grid // 12)
    bar[row(t.elbo):, cols] = RED
    bar[row(t.log_px):row(t.elbo), cols] = ORANGE
    bar[max(row(t.log_px) - 1, 0):row(t.log_px) + 1, :] = 0.0
    gap = np.ones((n_grid, 4, 3))
    return torch.from_numpy(np.concatenate([panel, gap, bar], axis=1).astype(np.float32)).permute(2, 0, 1)


def bound_numbers(model: LinearGaussian, x: torch.Tensor, mean: Sequence[float], scale_tril: torch.Tensor) -> str:
    """The numbers ``bound_image`` shows, as text: ELBO, KL(q‖p(z|x)) and log p(x) in nats."""
    t = bound_terms(model, x, mean, scale_tril)
    return f"ELBO = {t.elbo:.2f} nats, gap KL(q‖p(z|x)) = {t.kl:.2f}, log p(x) = {t.log_px:.2f}"


def figure_to_image(fig) -> torch.Tensor:
    """Render a matplotlib figure to a 3×H×W tensor in [0, 1] (what ``LiveImage`` shows) and close it."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255.0
    plt.close(fig)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


BOUND_WIDGET_TITLE = "p(z|x0) blue, q red contours | bar: ELBO (red) + gap KL (orange) = log p(x0) (black line)"


def bound_widget(model: LinearGaussian, x: torch.Tensor, lim: float = 3.0, title: str = BOUND_WIDGET_TITLE):
    """Lesson 01's live bound: sliders for q's means, log-variances and correlation over ``bound_image``.

    Controls ``mu0``, ``mu1`` (means, ±3), ``logvar0``, ``logvar1`` (−4 … 1) and ``rho`` (±0.95), all
    starting at the prior N(0, I); the status line adds ``bound_numbers`` (ELBO, gap, log p(x)) for the q shown.
    Works for any 2-D latent ``LinearGaussian`` and one data point ``x``.
    """
    import ipywidgets as W  # here, not at the top: the rest of the module needs no widget library

    from ..widgets import LiveImage

    if model.latent_dim != 2:
        raise ValueError(f"the bound widget draws a 2-D latent; this model has latent_dim={model.latent_dim}")

    def slider(lo: float, hi: float, label: str) -> W.FloatSlider:
        return W.FloatSlider(value=0.0, min=lo, max=hi, step=0.05, description=label)

    controls = {"mu0": slider(-3, 3, "mean z[0]"), "mu1": slider(-3, 3, "mean z[1]"),
                "logvar0": slider(-4, 1, "log var z[0]"), "logvar1": slider(-4, 1, "log var z[1]"),
                "rho": slider(-0.95, 0.95, "correlation")}

    def render(mu0: float, mu1: float, logvar0: float, logvar1: float, rho: float) -> torch.Tensor:
        # drawn with numpy, not matplotlib: a redraw takes milliseconds, so the picture follows the slider
        return bound_image(model, x, [mu0, mu1], q_scale_2d([logvar0, logvar1], rho), lim=lim)

    def numbers(mu0: float, mu1: float, logvar0: float, logvar1: float, rho: float) -> str:
        return bound_numbers(model, x, [mu0, mu1], q_scale_2d([logvar0, logvar1], rho))

    return LiveImage(render, controls, scale=2, caption=numbers, title=title)
