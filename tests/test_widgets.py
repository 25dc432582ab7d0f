import re
import time

import ipywidgets as W
import numpy as np
import pytest
import torch

from vaecourse.plots import latent_plane, png_bytes, tile
from vaecourse.widgets import LiveImage, latent_sliders, traversal_grid


def decoder(z):
    """A fixed 'decoder': a 6×6 image whose brightness pattern depends on every latent coordinate."""
    base = torch.linspace(0, 1, 36).view(1, 1, 6, 6)
    return torch.sigmoid(base * z[:, :1, None, None] + z[:, 1:2, None, None] - z[:, 2:3, None, None])


def test_moving_a_slider_redraws_the_decoded_image():
    w = latent_sliders(decoder, 3)
    before = w.image.value
    w.set(z1=1.5)
    assert w.image.value != before
    assert "z1 = +1.50" in w.status.value and "decoded in" in w.status.value
    # the image shown is the decoder's output for the slider values
    expected = tile(decoder(torch.tensor([[0.0, 1.5, 0.0]])))
    assert np.allclose(w.frame(), expected, atol=1e-6)


def test_direction_sliders_move_along_the_unit_vector():
    d = torch.tensor([3.0, 4.0, 0.0])
    w = latent_sliders(decoder, 3, directions={"smile": d})
    w.set(smile=5.0)
    expected = tile(decoder(torch.tensor([[3.0, 4.0, 0.0]])))  # 5 · d/‖d‖
    assert np.allclose(w.frame(), expected, atol=1e-6)
    w.set(smile=9.0)  # beyond the slider's range: clamped to its maximum, as a user would see
    assert w.controls["smile"].value == 5.0
    assert np.allclose(w.frame(), expected, atol=1e-6)


def test_unknown_dimension_or_control_is_a_clear_error():
    with pytest.raises(ValueError, match="no dimension 7"):
        latent_sliders(decoder, 3, dims=[0, 7])
    with pytest.raises(ValueError, match="direction"):
        latent_sliders(decoder, 3, directions={"w": torch.ones(4)})
    w = latent_sliders(decoder, 3)
    with pytest.raises(KeyError, match="no control"):
        w.set(z9=1.0)


def test_generic_live_image_with_a_toggle_and_a_dropdown():
    controls = {"glasses": W.Checkbox(value=False), "model": W.Dropdown(options=["a", "b"], value="a")}

    def render(glasses, model):
        v = (0.8 if glasses else 0.2) + (0.1 if model == "b" else 0.0)
        return torch.full((1, 3, 4, 4), v)

    w = LiveImage(render, controls, caption=lambda glasses, model: f"brightness {0.8 if glasses else 0.2} <b>")
    first = w.image.value
    w.set(glasses=True)
    assert w.image.value != first and "glasses = on" in w.status.value
    assert "brightness 0.8 &lt;b&gt;" in w.status.value  # the caption follows the controls, escaped as text
    assert w.renders == 2


def test_each_move_decodes_once_and_reports_the_time_it_took():
    """The status line's time is measured around the decode (a shared CPU's speed: benchmarks.bench_widgets)."""
    calls = []

    def slow(z):
        calls.append(z.clone())
        time.sleep(0.03)
        return decoder(z)

    w = latent_sliders(slow, 3)
    assert len(calls) == 1 and w.renders == 1  # the first picture
    for i, v in enumerate(np.linspace(-2, 2, 5), start=2):
        w.set(z0=float(v))
        assert len(calls) == i and w.renders == i, "one move, one decode"
        assert torch.allclose(calls[-1], torch.tensor([[float(v), 0.0, 0.0]]))
        assert w.last_decode_ms >= 30.0, "the reported time must include the decode"
        shown = float(re.search(r"decoded in ([0-9.]+) ms", w.status.value).group(1))
        assert shown == round(w.last_decode_ms, 1)
    w.set(z0=2.0)  # the value it already has: no move, no decode
    assert len(calls) == 6


def test_static_traversal_grid_and_helpers():
    fig = traversal_grid(decoder, 3, values=(-1, 0, 1))
    assert len(fig.axes) == 1
    z = latent_plane(3, lim=2, n=4, dims=(0, 2))
    assert z.shape == (16, 3) and float(z[0, 2]) == 2.0 and float(z[-1, 0]) == 2.0 and float(z[:, 1].abs().max()) == 0
    assert png_bytes(np.zeros((4, 4)), scale=2)[:4] == b"\x89PNG"


def test_compare_decoders_shows_every_decoder_at_the_same_z_side_by_side():
    from vaecourse.widgets import compare_decoders

    def inverted(z):
        return 1 - decoder(z)

    w = compare_decoders({"A": decoder, "B": inverted}, 3, lim=6.0, step=0.1)
    before = w.image.value
    w.set(z0=2.5, z2=-1.0)
    assert w.image.value != before and "z0 = +2.50" in w.status.value and "z2 = -1.00" in w.status.value
    z = torch.tensor([[2.5, 0.0, -1.0]])
    frame = w.frame()
    assert frame.shape == (6 + 2, 2 * 6 + 3)  # one row, the two decoders side by side
    assert np.allclose(frame, tile(torch.cat([decoder(z), inverted(z)]), nrow=2), atol=1e-6)
    with pytest.raises(ValueError, match="at least one decoder"):
        compare_decoders({}, 2)
