"""Pictures the lessons share: image grids, latent maps, decoded latent planes, loss curves.

Figures are small (modest dpi) so executed notebooks stay light.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def as_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """N×C×H×W (or C×H×W) in [0, 1] → N×H×W×C numpy, clipped; grey stays one channel."""
    x = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected images N×C×H×W or C×H×W, got shape {x.shape}")
    return np.clip(x.transpose(0, 2, 3, 1), 0.0, 1.0)


def tile(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 1,
         pad_value: float = 1.0) -> np.ndarray:
    """Arrange N images in a grid of ``nrow`` columns: an H×W (grey) or H×W×3 array in [0, 1]."""
    x = as_hwc(images)
    n, h, w, c = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol_rows = int(np.ceil(n / nrow))
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = x[i]
    return grid[..., 0] if c == 1 else grid


def show_images(images: torch.Tensor | np.ndarray, nrow: int | None = None, title: str | None = None,
                ax: plt.Axes | None = None, size: float = 4.0) -> plt.Axes:
    """Show a grid of images (grey or RGB) with a title."""
    grid = tile(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def image_rows(rows: dict[str, torch.Tensor], size: float = 1.0, title: str | None = None) -> plt.Figure:
    """One row per named set of images (e.g. originals / reconstructions / edits), labelled on the left."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), 1, figsize=(size * n, size * len(rows) + 0.3), squeeze=False)
    for ax, (name, imgs) in zip(axes[:, 0], rows.items()):
        show_images(imgs, nrow=len(imgs), ax=ax)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        for s in ax.spines.values():
            s.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def latent_scatter(z: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | None = None,
                   class_names: Sequence[str] | None = None, ax: plt.Axes | None = None, title: str | None = None,
                   dims: tuple[int, int] = (0, 1), s: float = 3.0, colors: Sequence | None = None) -> plt.Axes:
    """2-D scatter of latent codes coloured by label, with a legend of class names.

    ``colors`` gives class k its colour (a lesson keeps one colour per class across its figures); else tab10's.
    """
    z = z.detach().cpu().numpy() if torch.is_tensor(z) else np.asarray(z)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if labels is None:
        ax.scatter(z[:, dims[0]], z[:, dims[1]], s=s, alpha=0.6)
    else:
        y = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
        cmap = plt.get_cmap("tab10")
        for c in np.unique(y):
            m = y == c
            name = class_names[int(c)] if class_names is not None else str(c)
            color = colors[int(c)] if colors is not None else cmap(int(c) % 10)
            ax.scatter(z[m, dims[0]], z[m, dims[1]], s=s, color=color, label=name, alpha=0.6)
        ax.legend(markerscale=3, fontsize=6, loc="best", ncol=2, frameon=False)
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def latent_plane(latent_dim: int, lim: float = 3.0, n: int = 15, dims: tuple[int, int] = (0, 1),
                 base: torch.Tensor | None = None) -> torch.Tensor:
    """n×n latent points on a square [−lim, lim]² in ``dims``, other coordinates from ``base`` (zeros).

    Rows go from top (+lim) to bottom (−lim) so the decoded grid reads like the scatter plot.
    """
    if max(dims) >= latent_dim:
        raise ValueError(f"dims {dims} outside a latent of size {latent_dim}")
    ticks = torch.linspace(-lim, lim, n)
    zz = torch.zeros(n * n, latent_dim) if base is None else base.detach().cpu().reshape(1, -1).repeat(n * n, 1)
    gy, gx = torch.meshgrid(ticks.flip(0), ticks, indexing="ij")
    zz[:, dims[0]] = gx.reshape(-1)
    zz[:, dims[1]] = gy.reshape(-1)
    return zz


@torch.no_grad()
def show_latent_plane(decode: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, lim: float = 3.0,
                      n: int = 15, dims: tuple[int, int] = (0, 1), ax: plt.Axes | None = None,
                      title: str | None = None, device: torch.device | str = "cpu") -> plt.Axes:
    """Decode a grid over the latent plane: holes show up as images that look like no digit."""
    z = latent_plane(latent_dim, lim, n, dims).to(device)
    ax = show_images(decode(z), nrow=n, ax=ax, title=title)
    return ax


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str = "epoch", ylabel: str = "", ax: plt.Axes | None = None,
                title: str | None = None, logy: bool = False, x: Sequence[float] | None = None) -> plt.Axes:
    """Several named curves on one axis (loss terms over training, a sweep...)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    for name, ys in curves.items():
        xs = x if x is not None else np.arange(1, len(ys) + 1)
        ax.plot(xs, ys, label=name, marker="o" if len(ys) < 30 else None, ms=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """Encode an H×W or H×W×3 array in [0, 1] as PNG (nearest-neighbour upscaled): what widgets show."""
    from PIL import Image

    arr = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if scale > 1:
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class LiveLossPlot:
    """A loss plot in the notebook that redraws in place after each epoch (no-op outside IPython)."""

    def __init__(self, keys: bool | Sequence[str] = True):
        self.keys = None if keys is True else list(keys)
        self.handle = None

    def update(self, history) -> None:
        """Redraw from a training History's per-epoch rows."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        import matplotlib.pyplot as plt

        keys = self.keys or [k for k in history.epochs[-1] if k not in ("epoch", "seconds", "partial")]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.4), squeeze=False)
        for ax, k in zip(axes[0], keys):
            ax.plot(history.series("epoch"), history.series(k), marker="o")
            ax.set_title(k)
            ax.set_xlabel("epoch")
        fig.tight_layout()
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)
