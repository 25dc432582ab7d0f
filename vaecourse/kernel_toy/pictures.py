"""Pictures of the kernel toy: partitions, the data canvas, frames along β and the β widget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .fixed_points import (
    FixedPoint,
)


# ----------------------------------------------------------------------------- pictures (numpy, fast enough to be live)
def point_colors(n: int) -> np.ndarray:
    """An RGB colour in [0, 1] per data point (n×3): matplotlib's tab10 cycle, as the lesson's plots use."""
    from matplotlib import colormaps

    return colormaps["tab10"](np.arange(n) % 10)[:, :3]


def partition_image(fp: FixedPoint, colors: np.ndarray) -> np.ndarray:
    """The latent grid as an H×W×3 image, each cell coloured by the data points it decodes to (mixed colours: blur).

    Rows run from z[1] = +lim (top) to −lim, columns from z[0] = −lim to +lim, as ``imshow`` with
    ``extent=[-lim, lim, -lim, lim]`` expects.
    """
    if len(fp.grid.shape) != 2:
        raise ValueError(f"the partition picture needs a 2-D latent grid, got shape {fp.grid.shape}")
    colors = np.asarray(colors, float)
    if colors.shape != (len(fp.x), 3):
        raise ValueError(f"need one RGB colour per data point ({len(fp.x)}×3), got shape {colors.shape}")
    # grid points run z[0]-major ("ij" meshgrid): transpose so z[0] is the column, flip so +z[1] is the top row
    return (fp.weights.T @ colors).reshape(*fp.grid.shape, 3).transpose(1, 0, 2)[::-1]


def data_canvas(fp: FixedPoint, colors: np.ndarray, size: int = 64, lim: float = 3.2) -> np.ndarray:
    """The decoded points g(z_b) rasterised on [−lim, lim]² (darker = more prior mass), data as coloured squares.

    A size×size×3 image in [0, 1], x[1] upwards.
    """
    img = np.ones((size, size, 3))
    lo, hi = np.array([-lim, -lim]), np.array([lim, lim])
    ij = np.clip(((fp.psi - lo) / (hi - lo) * (size - 1)).round().astype(int), 0, size - 1)
    dens = np.zeros((size, size))
    np.add.at(dens, (size - 1 - ij[:, 1], ij[:, 0]), fp.grid.prior)
    img *= (1 - np.clip(dens / 0.05, 0, 0.9))[..., None]  # a pixel holding 5 % of the prior mass is at its darkest
    for c, p in zip(np.asarray(colors, float), np.clip(((fp.x - lo) / (hi - lo) * (size - 1)).round().astype(int),
                                                       1, size - 2)):
        img[size - 2 - p[1]: size + 1 - p[1], p[0] - 1: p[0] + 2] = c
    return img


def resize_nearest(img: np.ndarray, size: int) -> np.ndarray:
    """An H×W(×C) image resampled to size×size by nearest neighbour (keeps the whole picture, any grid size)."""
    rows = np.arange(size) * img.shape[0] // size
    cols = np.arange(size) * img.shape[1] // size
    return img[rows][:, cols]


def beta_frame(fp: FixedPoint, colors: np.ndarray, size: int = 64) -> np.ndarray:
    """What the β widget shows for one fixed point: [latent partition, decoded points in data space], 2×3×size×size."""
    panels = [resize_nearest(partition_image(fp, colors), size), data_canvas(fp, colors, size)]
    return np.stack(panels).transpose(0, 3, 1, 2).astype(np.float32)


def beta_widget(sweep: Sequence[FixedPoint], *, colors: np.ndarray | None = None, size: int = 64):
    """Lesson 04b's live view: a β slider over the fixed points of ``sweep`` (e.g. ``anneal``'s output).

    Left: the latent partition (``partition_image``), right: the decoded points in data space
    (``data_canvas``). The slider offers each fixed point's β (rounded to 4 decimals) and starts mid-sweep;
    moving it only looks a fixed point up, nothing is solved while the reader slides.
    """
    import ipywidgets as W  # here, not at the top: the fixed-point solver needs no widget library

    from ..widgets import LiveImage

    if not sweep:
        raise ValueError("beta_widget needs at least one fixed point, e.g. kt.anneal(x, grid, betas)")
    colors = point_colors(len(sweep[0].x)) if colors is None else np.asarray(colors, float)
    betas = np.array([fp.beta for fp in sweep])
    options = [round(float(b), 4) for b in betas]

    def render(beta: float) -> np.ndarray:
        return beta_frame(sweep[int(np.argmin(np.abs(betas - beta)))], colors, size)

    slider = W.SelectionSlider(options=options, value=options[len(options) // 2], description="β",
                               continuous_update=True)
    return LiveImage(render, {"beta": slider}, nrow=2, scale=3,
                     title="left: latent partition · right: decoded points in data space")
