"""How a procedural face is drawn: soft-edged shapes on a pixel grid, painted back to front.

``vaecourse.faces`` samples the numbers (attributes, nuisance factors) and holds the data sets; this module
turns one chunk of those numbers into pixels. Each part of the face (hair, face, eyes and glasses, mouth) is a
function of the chunk's shared context, so a part can be read, or changed, alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# the columns of the attribute and factor tensors the drawing reads, in this order
ATTRIBUTES: tuple[str, ...] = ("glasses", "facial_hair", "smile")
FACTOR_NAMES: tuple[str, ...] = (
    "skin_tone", "hair_color", "face_width", "head_x", "head_y", "head_scale", "clothes_hue",
    "eye_spacing", "hair_length", "background_hue", "background_brightness", "lighting",
)


# ----------------------------------------------------------------------------- drawing primitives
def _ellipse(x: torch.Tensor, y: torch.Tensor, cx, cy, a, b) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse: (F - 1) / |grad F| for F = (x/a)^2 + (y/b)^2.

    x varies along columns and y along rows, so the per-axis terms stay small until the last sums.
    """
    ia, ib = 1.0 / a, 1.0 / b
    px = (x - cx) * ia
    py = (y - cy) * ib
    gx, gy = px * ia, py * ib
    f = (px * px - 1.0) + py * py
    g = (gx * gx + 1e-6) + gy * gy
    return f * torch.rsqrt(g) * 0.5


def _box(x: torch.Tensor, y: torch.Tensor, cx, cy, hx, hy, r=0.0) -> torch.Tensor:
    """Signed distance to a box with half sizes (hx, hy) and corner radius r."""
    qx = (x - cx).abs() - hx + r
    qy = (y - cy).abs() - hy + r
    ox, oy = qx.clamp(min=0.0), qy.clamp(min=0.0)
    outside = torch.sqrt(ox * ox + oy * oy)
    inside = torch.maximum(qx, qy).clamp_(max=0.0)
    return (outside - r) + inside


def _paint(img: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> None:
    """Composite ``colour`` (B or 1, 3, 1, 1) over ``img`` with coverage ``mask`` (B, H, W), in place (one pass)."""
    img.lerp_(colour.expand(img.shape[0], 3, 1, 1), mask.unsqueeze(1))


def _palette(t: torch.Tensor, stops: Sequence[Sequence[float]]) -> torch.Tensor:
    """Piecewise-linear colour ramp through ``stops`` at t in [0, 1]: (B,) -> (B, 3)."""
    s = torch.tensor(stops, dtype=torch.float32)
    k = len(stops) - 1
    pos = t.clamp(0, 1) * k
    out = torch.zeros(t.shape[0], 3)
    for i in range(len(stops)):
        w = (1.0 - (pos - i).abs()).clamp(min=0.0)  # hat function around stop i
        out += w[:, None] * s[i]
    return out


SKIN = ((0.97, 0.83, 0.72), (0.87, 0.66, 0.52), (0.66, 0.45, 0.32), (0.38, 0.25, 0.18))
HAIR = ((0.07, 0.06, 0.06), (0.32, 0.19, 0.10), (0.58, 0.27, 0.12), (0.88, 0.74, 0.45))


def _hue(h: torch.Tensor) -> torch.Tensor:
    """A saturated colour for hue h in [0, 1] using only arithmetic: (B,) -> (B, 3)."""
    h6 = h * 6.0
    r = ((h6 - 3.0).abs() - 1.0).clamp(0, 1)
    g = (2.0 - (h6 - 2.0).abs()).clamp(0, 1)
    b = (2.0 - (h6 - 4.0).abs()).clamp(0, 1)
    return torch.stack([r, g, b], 1)


def hidden_styles(factors: torch.Tensor) -> torch.Tensor:
    """Three style numbers in [0, 1) per face (frame shape, kind of facial hair, resting mouth).

    They are an exact hash of the factors (float32 times small integers, summed in float64), so
    that ``render_faces(attrs, factors)`` reproduces every image, attribute toggles included.
    """
    f = factors.double()
    out = []
    for mult in ((97, 389, 613, 211, 829, 53, 449, 167, 743, 311, 577, 19),
                 (59, 701, 137, 877, 263, 491, 31, 953, 109, 647, 227, 383),
                 (883, 41, 509, 179, 337, 619, 769, 71, 991, 157, 431, 293)):
        s = (f * torch.tensor(mult[: f.shape[1]], dtype=torch.float64)).sum(1)
        out.append(s - torch.floor(s))
    return torch.stack(out, 1).float()


def _grid(size: int) -> torch.Tensor:
    """Pixel-centre coordinates in [-1, 1] along one axis."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


class _Canvas:
    """A chunk of faces being drawn: the image, each face's pose, and row windows that bound the work.

    Faces are upright, so face-local x depends only on the column and y only on the row: shapes
    are computed on (B, 1, W) and (B, h, 1) pieces and meet in one broadcast, and small features
    (eyes, mouth) touch only the rows the chunk's faces can reach.
    """

    def __init__(self, img: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, scale: torch.Tensor) -> None:
        self.img = img
        self.b, _, self.size, _ = img.shape
        self.cy, self.scale = cy, scale
        self.k = (scale * self.size / 2.0).view(self.b, 1, 1)  # pixels per face-local unit
        self.axis = _grid(self.size)
        self.x = (self.axis.view(1, 1, -1) - cx.view(self.b, 1, 1)) / scale.view(self.b, 1, 1)

    def rows(self, y0: float, y1: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (B, 1, W), y (B, h, 1), image rows) for the rows where face-local y in [y0, y1] can fall."""
        half = self.size / 2.0
        lo = int(math.floor((float((self.cy + self.scale * y0).min()) + 1.0) * half)) - 1
        hi = int(math.ceil((float((self.cy + self.scale * y1).max()) + 1.0) * half)) + 1
        r = slice(min(max(lo, 0), self.size), min(max(hi, 0), self.size))
        y = (self.axis[r].view(1, -1, 1) - self.cy.view(self.b, 1, 1)) / self.scale.view(self.b, 1, 1)
        return self.x, y, self.img[:, :, r]

    def cover(self, d: torch.Tensor) -> torch.Tensor:
        """Coverage of d < 0 with a one-pixel ramp (antialiasing)."""
        return torch.addcmul(_HALF, d, -self.k).clamp_(0.0, 1.0)


_HALF = torch.tensor(0.5)
WHITE = torch.tensor([0.96, 0.96, 0.94])
PUPIL = torch.tensor([0.10, 0.07, 0.05])
TEETH = torch.tensor([0.97, 0.96, 0.92])
LENS = torch.tensor([0.75, 0.88, 1.0])
FRAMES = ((0.05, 0.05, 0.06), (0.25, 0.12, 0.06), (0.05, 0.05, 0.06), (0.55, 0.1, 0.1))


class _Face:
    """What every part of a chunk's faces is drawn from: the canvas, the attributes as (B, 1, 1) 0/1 masks,
    the factors by name, the hidden styles, and the head's proportions in face-local units (the face is about
    1.3 units tall, centred at 0; y grows downwards)."""

    def __init__(self, attrs: torch.Tensor, factors: torch.Tensor, size: int) -> None:
        self.b = b = attrs.shape[0]
        self.f = f = {name: factors[:, i] for i, name in enumerate(FACTOR_NAMES)}
        self.glasses, self.beard, self.smile = (self.col((attrs[:, i] > 0.5).float()) for i in range(3))
        self.style = hidden_styles(factors)
        self.skin = _palette(f["skin_tone"], SKIN)
        self.hair = _palette(f["hair_color"], HAIR)
        self.fw = self.col(f["face_width"])
        self.a = 0.40 + 0.14 * self.fw  # face half width
        scale = 0.78 + 0.22 * f["head_scale"]  # the head's size and position in the picture
        cx = (f["head_x"] - 0.5) * 0.28
        cy = 0.02 + (f["head_y"] - 0.5) * 0.16
        bright = 0.2 + 0.7 * f["background_brightness"]
        bg = 0.55 * bright[:, None] + 0.45 * bright[:, None] * _hue(f["background_hue"])
        self.axis = _grid(size)
        # the background darkens slightly towards the bottom
        img = (self.c3(bg) * (1.05 - 0.1 * self.axis.view(1, 1, size, 1))).expand(b, 3, size, size).contiguous()
        self.cv = _Canvas(img, cx, cy, scale)

    def col(self, v: torch.Tensor) -> torch.Tensor:
        """A per-face scalar, broadcastable over pixels."""
        return v.view(self.b, 1, 1)

    def c3(self, c: torch.Tensor) -> torch.Tensor:
        """A colour (one or one per face), broadcastable over pixels."""
        return c.reshape(-1, 3, 1, 1).expand(self.b, 3, 1, 1)


def _draw_hair_behind_and_shoulders(fc: _Face) -> None:
    """Long hair behind the head, then shoulders in clothes of some hue, and the neck."""
    cv, f, a = fc.cv, fc.f, fc.a
    x, y, win = cv.rows(-0.7, 0.85)
    hl = -0.05 + 0.85 * fc.col(f["hair_length"])
    _paint(win, cv.cover(_box(x, y, 0.0, (hl - 0.62) / 2, a + 0.13, (hl + 0.62) / 2, 0.2)), fc.c3(fc.hair * 0.9))
    x, y, win = cv.rows(0.55, 1.6)
    clothes = 0.25 + 0.5 * _hue(f["clothes_hue"]) * (0.4 + 0.6 * f["background_brightness"][:, None])
    _paint(win, cv.cover(_box(x, y, 0.0, 1.25, 0.75, 0.5, 0.3)), fc.c3(clothes))
    _paint(win, cv.cover(_box(x, y, 0.0, 0.9, 0.17 + 0.06 * fc.fw, 0.4, 0.05)), fc.c3(fc.skin * 0.82))


def _draw_ears_face_and_facial_hair(fc: _Face) -> None:
    """Ears, the face (an ellipse, with a squarer jaw for wide faces), then facial hair over its lower part:
    full beard, goatee or moustache only, the kind from the hidden style (the moustache is drawn with the mouth)."""
    cv, a, top, bottom = fc.cv, fc.a, 0.62, 0.70
    x, y, win = cv.rows(-0.13, 0.17)
    _paint(win, cv.cover(_ellipse(x.abs(), y, a, 0.02, 0.08, 0.13)), fc.c3(fc.skin * 0.9))
    x, y, win = cv.rows(-0.64, 0.72)
    lower = (y > 0.0).float()
    ell = _ellipse(x, y, 0.0, 0.0, a, top + (bottom - top) * lower)
    face = ell + (0.6 * fc.fw * lower) * (_box(x, y, 0.0, 0.0, a, bottom, 0.5 * a) - ell)
    _paint(win, cv.cover(face), fc.c3(fc.skin))
    kind = fc.style[:, 1]
    full = fc.col((kind < 0.4).float()) * fc.beard
    goatee = fc.col(((kind >= 0.4) & (kind < 0.7)).float()) * fc.beard
    r0 = int(lower.shape[1] - (y.view(fc.b, -1) > 0.12).sum(1).max())  # rows of this window below y = 0.12
    sub = slice(max(r0, 0), None)
    xs, ys, ws = x, y[:, sub], win[:, :, sub]
    region = cv.cover(torch.maximum(face[:, sub] - 0.015, 0.16 - ys)) * full
    region = torch.maximum(region, cv.cover(_ellipse(xs, ys, 0.0, 0.5, 0.15, 0.16)) * goatee)
    _paint(ws, region, fc.c3(fc.hair * 0.55))


def _draw_hair_cap(fc: _Face) -> None:
    """The hair on top, above a hairline that comes down at the temples."""
    x, y, win = fc.cv.rows(-0.72, 0.0)
    xr = x / fc.a
    cap = torch.maximum(_ellipse(x, y, 0.0, -0.06, fc.a + 0.06, 0.64), (y + 0.34) - 0.22 * xr * xr)
    _paint(win, fc.cv.cover(cap), fc.c3(fc.hair))


def _draw_eyes_and_glasses(fc: _Face) -> None:
    """Eyes and brows (x mirrored: both eyes at once), then glasses: round or rectangular rims (the frame's shape
    and colour from the hidden style), bridge and arms, tinted lenses."""
    cv = fc.cv
    ex = (0.14 + 0.09 * fc.col(fc.f["eye_spacing"])) * (fc.a / 0.47)
    ey = -0.06
    x, y, win = cv.rows(-0.24, 0.08)
    xa = x.abs() - ex
    _paint(win, cv.cover(_ellipse(xa, y, 0.0, ey, 0.085, 0.05)), fc.c3(WHITE))
    r2 = xa * xa + (y - ey) * (y - ey)
    _paint(win, cv.cover(torch.sqrt(r2) - 0.042), fc.c3(PUPIL))
    _paint(win, cv.cover(_box(xa, y, 0.0, -0.18, 0.095, 0.022, 0.02)), fc.c3(fc.hair * 0.75))
    square = fc.col((fc.style[:, 0] < 0.5).float())
    rnd = torch.sqrt(r2) - 0.135
    shape = rnd + square * (_box(xa, y, 0.0, ey, 0.15, 0.1, 0.04) - rnd)
    rims = shape.abs() - 0.028
    bar = _box(x, y, 0.0, ey - 0.025, fc.a, 0.018)  # bridge and arms in one bar, hidden inside the lenses
    frame = torch.minimum(rims, torch.maximum(bar, -shape))
    _paint(win, cv.cover(shape) * (fc.glasses * 0.3), fc.c3(LENS))
    _paint(win, cv.cover(frame) * fc.glasses, fc.c3(_palette(fc.style[:, 0], FRAMES)))


def _draw_nose_and_mouth(fc: _Face) -> None:
    """The nose; the moustache (any facial hair has one); the mouth: a thin resting line whose curve comes from
    the hidden style, or an open smile with teeth."""
    cv = fc.cv
    x, y, win = cv.rows(0.02, 0.2)
    _paint(win, cv.cover(_ellipse(x, y, 0.0, 0.11, 0.04, 0.08)), fc.c3(fc.skin * 0.82))
    x, y, win = cv.rows(0.14, 0.46)
    _paint(win, cv.cover(_ellipse(x, y, 0.0, 0.215, 0.19, 0.055)) * fc.beard, fc.c3(fc.hair * 0.55))
    my = 0.33
    curve = fc.col((fc.style[:, 2] - 0.6) * 1.2)  # resting mouth: slightly down .. slightly up
    x2 = x * x
    line = torch.maximum(((y - my) + curve * x2).abs() - 0.022, x.abs() - 0.13)
    open_mouth = torch.maximum((my - 0.035 + 0.9 * x2) - y, y - (my + 0.09 - 2.4 * x2))
    lips = fc.c3(fc.skin * 0.55 + torch.tensor([0.25, 0.0, 0.02]))
    _paint(win, cv.cover(line + fc.smile * (open_mouth - 0.02 - line)), lips)
    _paint(win, cv.cover(open_mouth + 0.01) * fc.smile, fc.c3(TEETH))


def draw_chunk(attrs: torch.Tensor, factors: torch.Tensor, size: int) -> torch.Tensor:
    """Draw one chunk of faces, back to front (each part paints over what is behind it), light them from one
    side and round to 8-bit levels: (B, 3, size, size) in [0, 1]."""
    fc = _Face(attrs, factors, size)
    _draw_hair_behind_and_shoulders(fc)
    _draw_ears_face_and_facial_hair(fc)
    _draw_hair_cap(fc)
    _draw_eyes_and_glasses(fc)
    _draw_nose_and_mouth(fc)
    light = ((fc.f["lighting"] - 0.5) * 0.3).view(fc.b, 1, 1, 1)
    img = fc.cv.img
    img.mul_(1.0 + light * fc.axis.view(1, 1, 1, size))
    return img.clamp_(0.0, 1.0).mul_(255.0).round_().div_(255.0)
