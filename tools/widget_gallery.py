"""Every live widget of the course, built on small untrained models of each lesson's sizes.

The browser test (tests/test_browser.py) shows these in JupyterLab and moves each one's
controls in headless Chromium; ``python -m benchmarks.bench_widgets`` times their decodes. An untrained
model of the lesson's architecture decodes exactly as fast as the trained one, so the timings
are the lesson's, while building the whole gallery takes seconds instead of the lessons' minutes.

Each :class:`GalleryItem` is one lesson widget plus the :class:`Move` s a reader would make; a
move sets a control to a value (or presses a button) and the widget's status line must then
read ``status_text(item, move)``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W
import torch

from vaecourse.widgets import LiveImage, format_value


@dataclass
class Move:
    """Set ``control`` to ``value``; with ``button``, press the button of that description instead."""

    control: str
    value: Any
    button: str | None = None


@dataclass
class GalleryItem:
    lesson: str  # the notebook it comes from, e.g. "03_c_and_beta"
    name: str  # what the widget is, in a few words
    live: LiveImage
    moves: list[Move] = field(default_factory=list)

    @property
    def widget(self) -> W.Widget:
        """What the notebook displays (a builder may wrap the controls, e.g. with a button)."""
        return self.live.widget


def status_text(item: GalleryItem, move: Move) -> str:
    """The text the widget's status line shows once ``move`` has been made."""
    return f"{move.control} = {format_value(item.live.controls[move.control], move.value)}"


def find_button(root: W.Widget, description: str) -> W.Button:
    """The button labelled ``description`` anywhere inside ``root``."""
    todo = [root]
    while todo:
        w = todo.pop()
        if isinstance(w, W.Button) and w.description == description:
            return w
        todo.extend(getattr(w, "children", ()))
    raise KeyError(f"no button {description!r} in this widget")


def make_move(item: GalleryItem, move: Move) -> None:
    """Make ``move`` in the kernel, as the browser does by hand (tests and benchmarks without a browser)."""
    if move.button is not None:
        find_button(item.widget, move.button).click()
    else:
        item.live.set(**{move.control: move.value})


def time_moves(item: GalleryItem, repeats: int = 5) -> list[float]:
    """Decode milliseconds of each move of ``item``, each the median of ``repeats`` moves."""
    out = []
    for move in item.moves:
        start = item.live.controls[move.control].value
        times = []
        for _ in range(repeats):
            make_move(item, move)
            times.append(item.live.last_decode_ms)
            if move.button is None:
                item.live.set(**{move.control: start})  # back again, so the next repeat is a move too
        out.append(statistics.median(times))
    return out


GALLERY: list[Callable[[], list[GalleryItem]]] = []


def lesson(fn: Callable[[], list[GalleryItem]]) -> Callable[[], list[GalleryItem]]:
    """Register a function that builds one lesson's widgets."""
    GALLERY.append(fn)
    return fn


def course_widgets(seed: int = 0) -> list[GalleryItem]:
    """Every lesson widget in course order, on untrained models (seeded, so the pictures repeat)."""
    torch.manual_seed(seed)
    items = []
    for build in GALLERY:
        items.extend(build())
    return items


# ----------------------------------------------------------------------------------------- lessons
# Sizes are the lessons' cpu-profile models (the profile a reader on this CPU runs); data are random.
FACE_ATTRIBUTES = ["glasses", "facial_hair"]


@lesson
def elbo() -> list[GalleryItem]:
    from vaecourse import elbo as E

    model = E.LinearGaussian.random(20, 2, noise_var=0.5, overlap=0.8)  # the lesson's pPCA: D = 20, 2-D latent
    live = E.bound_widget(model, model.sample(1)[0][0], lim=3.0)
    return [GalleryItem("01_elbo", "ELBO and gap for a chosen q", live, [Move("mu0", 1.5), Move("rho", -0.5)])]


@lesson
def ae_vs_vae() -> list[GalleryItem]:
    from vaecourse.nets import make_vae
    from vaecourse.widgets import compare_decoders, latent_sliders

    ae, vae = make_vae((1, 28, 28), 2, variational=False).eval(), make_vae((1, 28, 28), 2).eval()
    sliders = latent_sliders(vae.decode, 2, lim=3.0, title="VAE decoder: move z")
    both = compare_decoders({"AE": ae.decode, "VAE": vae.decode}, 2, lim=6.0, step=0.1,
                            title="left: AE, right: VAE, at the same z")
    return [GalleryItem("02_ae_vs_vae", "latent sliders", sliders, [Move("z0", 1.25)]),
            GalleryItem("02_ae_vs_vae", "AE and VAE at the same z", both, [Move("z1", -2.0)])]


@lesson
def c_and_beta() -> list[GalleryItem]:
    from vaecourse import rate_distortion as rd
    from vaecourse.nets import make_vae

    models = {c: make_vae((1, 28, 28), 2).eval() for c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)}
    live = rd.c_widget(models, torch.randn(1000, 2))
    return [GalleryItem("03_c_and_beta", "samples and latent plane per c", live, [Move("c", "1")])]


@lesson
def geco() -> list[GalleryItem]:
    from vaecourse import geco as G
    from vaecourse.nets import make_vae

    names = ["ELBO (β=1)", "β=0.5", "β=2", "GECO κ=4", "GECO κ=5", "GECO κ=6"]
    models = {n: make_vae((1, 28, 28), 16, hidden=(256, 128)).eval() for n in names}
    live = G.traversal_widget(models, 16, "cpu")
    return [GalleryItem("04_geco", "one latent dimension, six models", live, [Move("dim", 3), Move("value", 2.0)])]


@lesson
def fixed_points() -> list[GalleryItem]:
    import numpy as np

    from vaecourse import kernel_toy as kt

    sweep = kt.anneal(kt.toy_points(), kt.latent_grid(41), np.geomspace(8.0, 0.02, 8), max_iter=100)
    live = kt.beta_widget(sweep)
    last = live.controls["beta"].options[-1]
    return [GalleryItem("04b_fixed_points", "partition and decoded points per β", live, [Move("beta", last)])]


@lesson
def ccvae() -> list[GalleryItem]:
    from vaecourse import ccvae as cc

    mnist = cc.CCVAE((1, 28, 28), 10, c_dim=16, s_dim=16, hidden=(256, 128))
    digits = cc.digit_widget(mnist, seed=7)
    faces = cc.CCVAE((3, 32, 32), 3, c_dim=3, s_dim=29, labels="binary", kind="face", width=32, likelihood="optimal")
    face = cc.face_widget(faces, torch.rand(3, 32, 32), torch.tensor([1.0, 0.0, 1.0]),
                          ["glasses", "facial_hair", "smile"], seed=3)
    return [GalleryItem("05_ccvae", "digit fixed, style moves", digits, [Move("digit", "7"), Move("style_a", 1.5)]),
            GalleryItem("05_ccvae", "face attributes on/off", face, [Move("glasses", "off"), Move("z_c1", 1.5)])]


@lesson
def introvac() -> list[GalleryItem]:
    from vaecourse import introvac as iv

    def vac() -> iv.VAC:
        return iv.face_vac(FACE_ATTRIBUTES, size=32, latent_dim=32, width=16)  # the lesson's cpu size

    x, y = torch.rand(16, 3, 32, 32), torch.tensor([[0.0, 0.0]] * 8 + [[1.0, 0.0]] * 8)
    intro = vac().introspective_copy()
    editor = iv.edit_widget({"VAC": vac(), "IntroVAC": intro}, x, y)
    # the lesson pages through latents its Langevin chains produced; any latents decode as fast
    sampler = iv.langevin_widget(intro, {a: torch.randn(16, 32) for a in FACE_ATTRIBUTES})
    return [GalleryItem("06_vac_introvac", "edit along the classifier's normal", editor,
                        [Move("facial_hair", 4.0), Move("model", "VAC"), Move("image", 5)]),
            GalleryItem("06_vac_introvac", "Langevin samples per attribute", sampler,
                        [Move("attribute", "facial_hair"), Move("draws", 1, button="draw Langevin samples")])]


@lesson
def csvae() -> list[GalleryItem]:
    from vaecourse import csvae as cs

    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 2, (16, 2)).float()
    model = cs.CSVAE((3, 32, 32), 2, z_dim=32, w_dim=2)  # the lesson's size: the backbone of width 32
    live = cs.w_widget(model, x, y, FACE_ATTRIBUTES)
    return [GalleryItem("07_csvae", "2-D pad of w per attribute", live,
                        [Move("glasses[0]", 3.0), Move("glasses[1]", 3.0)])]
