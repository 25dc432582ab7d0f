"""The swiss-roll toy that lesson 07 starts with."""

from __future__ import annotations

import numpy as np
import torch


# ----------------------------------------------------------------------------- the toy
def swiss_roll(n: int, noise: float = 0.3, seed: int = 0, threshold: float = 10.5
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """sklearn's 3-D swiss roll, standardised, labelled y = [height > threshold].

    Returns (x N×3 float32, y N×1 0/1, t N the roll position, {'mean', 'std'} to undo the scaling).
    The height (the roll's 2nd coordinate, uniform in [0, 21]) is the labelled factor; the roll
    position t is the unlabelled factor z should keep.
    """
    from sklearn.datasets import make_swiss_roll

    pts, t = make_swiss_roll(n, noise=noise, random_state=seed)
    y = (pts[:, 1] > threshold).astype(np.float32)[:, None]
    mean, std = pts.mean(0), pts.std(0)
    x = ((pts - mean) / std).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(t.astype(np.float32)), {"mean": mean, "std": std}


def roll_coordinates(x: torch.Tensor | np.ndarray, scaling: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(height, radius) of standardised swiss-roll points: the labelled factor and the roll position (radius ≈ t)."""
    pts = np.asarray(x, dtype=np.float64) * scaling["std"] + scaling["mean"]
    return pts[:, 1], np.hypot(pts[:, 0], pts[:, 2])
