"""Live controls that decode as they move, and the static grids shown where no widget front end runs.

Every widget in the course is a :class:`LiveImage`: named ipywidgets controls (sliders, toggles,
dropdowns) and a ``render(**values)`` function that returns images. Moving a control re-renders
into an ``ipywidgets.Image`` (PNG, no matplotlib in the loop: a decode takes milliseconds) and
writes the values set and the decode time into a status line, which a browser test waits for.
Tests drive widgets without a browser: ``w.set(z0=1.5)`` then look at ``w.image.value``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch

from .plots import png_bytes, show_images, tile

Render = Callable[..., torch.Tensor | np.ndarray]


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        # two decimals for slider values; small ones (a variance c = 1e-4) keep their digits
        return f"{value:+.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:+.2g}"
    return str(value)


def format_value(control: W.ValueWidget, value: Any) -> str:
    """How the status line shows ``control`` at ``value``: a selection control by its option's label."""
    if isinstance(control, (W.SelectionSlider, W.Dropdown, W.ToggleButtons, W.RadioButtons)):
        for label, option in zip(control._options_labels, control._options_values):
            if option == value:
                return label
    return _format(value)


class LiveImage:
    """Controls plus an image that ``render(**values)`` redraws whenever a control moves."""

    def __init__(self, render: Render, controls: dict[str, W.ValueWidget], scale: int = 4, nrow: int | None = None,
                 title: str = "", caption: Callable[..., str] | None = None):
        self.render_fn = render
        self.caption = caption  # values -> text added to the status line (e.g. the numbers the image shows)
        self.controls = controls
        self.scale = scale
        self.nrow = nrow
        self.image = W.Image(format="png")
        self.status = W.HTML()
        self.title = title
        self.last_decode_ms = float("nan")
        self.renders = 0
        for c in controls.values():
            c.observe(self._on_change, names="value")
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        self.widget = W.VBox(header + [W.HBox([W.VBox(list(controls.values())), self.image]), self.status])
        self.update()

    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.controls.items()}

    def _on_change(self, _change: dict) -> None:
        self.update()

    def frame(self, **values: Any) -> np.ndarray:
        """The image for ``values`` (the current control values where not given)."""
        vals = {**self.values(), **values}
        with torch.no_grad():
            out = self.render_fn(**vals)
        return tile(out, self.nrow) if (torch.is_tensor(out) or np.asarray(out).ndim >= 3) else np.asarray(out)

    def update(self) -> None:
        t0 = time.perf_counter()
        arr = self.frame()
        self.image.value = png_bytes(arr, self.scale)
        self.last_decode_ms = 1000 * (time.perf_counter() - t0)
        self.renders += 1
        shown = " · ".join(f"{k} = {format_value(self.controls[k], v)}" for k, v in self.values().items())
        extra = f" · {html.escape(self.caption(**self.values()))}" if self.caption is not None else ""
        self.status.value = (f"<span class='vaecourse-status'>{shown} · decoded in {self.last_decode_ms:.1f} ms"
                             f"{extra}</span>")

    def set(self, **values: Any) -> None:
        """Move controls by name (as a user would); each move re-renders."""
        for k, v in values.items():
            if k not in self.controls:
                raise KeyError(f"no control {k!r}; this widget has {', '.join(self.controls)}")
            self.controls[k].value = v

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def check_dims(dims: Sequence[int], latent_dim: int) -> list[int]:
    """Validate latent indices: a ValueError naming the model's latent size for one it does not have."""
    dims = list(dims)
    bad = [d for d in dims if not 0 <= d < latent_dim]
    if bad:
        raise ValueError(f"the model's latent has {latent_dim} dimension(s) (indices 0..{latent_dim - 1}); "
                         f"it has no dimension {bad[0]}. Choose dims within that range.")
    return dims


def latent_sliders(decode: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, *,
                   z0: torch.Tensor | None = None, dims: Sequence[int] | None = None,
                   directions: dict[str, torch.Tensor] | None = None, lim: float | None = None, step: float = 0.05,
                   scale: int = 4, title: str = "", device: torch.device | str = "cpu") -> LiveImage:
    """One slider per latent dimension in ``dims`` (default: all, up to 10), or per named direction.

    The decoded point is z0 + Σ aᵢ·eᵢ (coordinate sliders) or z0 + Σ aⱼ·dⱼ/‖dⱼ‖ (direction sliders,
    e.g. a classifier's normal w/‖w‖). Sliders span ±``lim``: 3 prior standard deviations for
    coordinates, 5 along directions (the edit lengths δ ≈ 3–5 of the IntroVAC paper).
    """
    lim = lim if lim is not None else (5.0 if directions else 3.0)
    base = torch.zeros(latent_dim) if z0 is None else z0.detach().reshape(-1).cpu().float()
    if base.numel() != latent_dim:
        raise ValueError(f"z0 has {base.numel()} entries but the latent has {latent_dim}")
    controls: dict[str, W.ValueWidget] = {}
    moves: dict[str, torch.Tensor | int] = {}  # a unit direction to add, or the coordinate to set
    if directions:
        for name, d in directions.items():
            d = d.detach().reshape(-1).cpu().float()
            if d.numel() != latent_dim:
                raise ValueError(f"direction {name!r} has {d.numel()} entries but the latent has {latent_dim}")
            moves[name] = d / d.norm().clamp_min(1e-12)
            controls[name] = W.FloatSlider(value=0.0, min=-lim, max=lim, step=step, description=name,
                                           continuous_update=True, readout_format="+.2f")
    else:
        for d in check_dims(range(min(latent_dim, 10)) if dims is None else dims, latent_dim):
            moves[f"z{d}"] = d
            controls[f"z{d}"] = W.FloatSlider(value=float(base[d]), min=-lim, max=lim, step=step,
                                              description=f"z[{d}]", continuous_update=True, readout_format="+.2f")

    def render(**values: float) -> torch.Tensor:
        z = base.clone()
        for k, v in values.items():
            if isinstance(moves[k], int):
                z[moves[k]] = float(v)
            else:
                z += float(v) * moves[k]
        return decode(z.unsqueeze(0).to(device)).cpu()

    return LiveImage(render, controls, scale=scale, title=title)


def compare_decoders(decoders: dict[str, Callable[[torch.Tensor], torch.Tensor]], latent_dim: int, *,
                     lim: float = 3.0, step: float = 0.05, scale: int = 4, title: str = "",
                     device: torch.device | str = "cpu") -> LiveImage:
    """One slider per latent coordinate (up to 10); every decoder decodes the same z, side by side in dict order.

    E.g. ``{"AE": ae.decode, "VAE": vae.decode}``: walk one point through both latent spaces and see where
    one decoder has a hole the other fills.
    """
    if not decoders:
        raise ValueError("compare_decoders needs at least one decoder, e.g. {'AE': ae.decode, 'VAE': vae.decode}")
    dims = range(min(latent_dim, 10))
    controls: dict[str, W.ValueWidget] = {
        f"z{d}": W.FloatSlider(value=0.0, min=-lim, max=lim, step=step, description=f"z[{d}]",
                               continuous_update=True, readout_format="+.2f") for d in dims}

    def render(**values: float) -> torch.Tensor:
        z = torch.zeros(1, latent_dim)
        for d in dims:
            z[0, d] = float(values[f"z{d}"])
        z = z.to(device)
        return torch.cat([decode(z).cpu() for decode in decoders.values()])

    return LiveImage(render, controls, scale=scale, nrow=len(decoders), title=title)


@torch.no_grad()
def traversal_grid(decode: Callable[[torch.Tensor], torch.Tensor], latent_dim: int, *,
                   z0: torch.Tensor | None = None, dims: Sequence[int] | None = None,
                   directions: dict[str, torch.Tensor] | None = None, values: Sequence[float] = (-3, -1.5, 0, 1.5, 3),
                   device: torch.device | str = "cpu", title: str = "latent traversal"):
    """The static counterpart of ``latent_sliders``: one row per dimension/direction, one column per value."""
    import matplotlib.pyplot as plt

    base = torch.zeros(latent_dim) if z0 is None else z0.detach().reshape(-1).cpu().float()
    rows, names = [], []
    if directions:
        for name, d in directions.items():
            u = d.detach().reshape(-1).cpu().float()
            u = u / u.norm().clamp_min(1e-12)
            rows.append(torch.stack([base + v * u for v in values]))
            names.append(name)
    else:
        for d in check_dims(range(min(latent_dim, 10)) if dims is None else dims, latent_dim):
            z = base.repeat(len(values), 1)
            z[:, d] = torch.tensor(values, dtype=z.dtype)
            rows.append(z)
            names.append(f"z[{d}]")
    images = decode(torch.cat(rows).to(device)).cpu()
    fig, ax = plt.subplots(figsize=(0.9 * len(values) + 0.8, 0.9 * len(rows) + 0.5))
    show_images(images, nrow=len(values), ax=ax)
    h = images.shape[-2] + 1
    ax.set_axis_on()
    ax.set_xticks([(images.shape[-1] + 1) * (i + 0.5) for i in range(len(values))], [f"{v:+g}" for v in values],
                  fontsize=7)
    ax.set_yticks([h * (i + 0.5) for i in range(len(rows))], names, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def show_live(widget: LiveImage, static: Callable[[], Any] | None = None) -> None:
    """Display a live widget and, for viewers without a widget front end, a static picture below it."""
    from IPython.display import display

    display(widget.widget)
    if static is not None:
        fig = static()
        if fig is not None:
            display(fig)
            import matplotlib.pyplot as plt

            plt.close(fig)
