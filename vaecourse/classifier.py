"""One image classifier for the lessons that need one: a yardstick, a judge, or a baseline.

Lesson 03 grades prior samples with a small MLP trained once on the digits; lesson 05 reads
generated digits back with a small CNN and compares its CCVAE with a classifier of the CCVAE
encoder's layers trained on the labelled images alone (MLP layers on the digits, the face
backbone's convolutions on the faces). All are a :class:`Classifier`: a body (MLP, stride-2 conv
layers, or the face encoder's trunk) and a linear head giving K class logits, or one logit per
binary attribute, trained by :func:`fit_classifier` on cross-entropy with the course's ``fit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .batching import batched_apply
from .losses import bernoulli_nll, binary_labels
from .nets import check_images, conv_sizes
from .train import History, adam, fit, model_mode

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _mlp_body(image_shape: Sequence[int], hidden: Sequence[int], activation: str) -> tuple[list[nn.Module], int]:
    """Flatten → (Linear, activation) per hidden width; returns the layers and the width they end with."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(image_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), _activation(activation)]
        width = h
    return layers, width


def _conv_body(image_shape: Sequence[int], channels: Sequence[int], activation: str) -> tuple[list[nn.Module], int]:
    """(3×3 stride-2 conv, BatchNorm, activation) per channel count, then Flatten (the course's ConvEncoder body)."""
    layers: list[nn.Module] = []
    c_in = image_shape[0]
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), _activation(activation)]
        c_in = c
    layers.append(nn.Flatten())
    return layers, channels[-1] * math.prod(conv_sizes(image_shape[1:], len(channels))[-1])


def _face_body(image_shape: Sequence[int], width: int) -> tuple[list[nn.Module], int]:
    """The face backbone encoder's trunk (``face_vae.FaceEncoder``: stride-2 4×4 convs down to 4×4), flattened."""
    from .face_vae import FaceEncoder

    if len(image_shape) != 3 or image_shape[0] != 3 or image_shape[1] != image_shape[2]:
        raise ValueError(f"kind='face' takes square RGB faces (3, size, size), got {tuple(image_shape)}; "
                         "use kind='mlp' or 'conv' for other images")
    encoder = FaceEncoder(image_shape[-1], 1, width)
    return [encoder.trunk], encoder.feature_dim


class Classifier(nn.Module):
    """Images → logits: ``n_outputs`` class logits, or (``binary=True``) one logit per 0/1 attribute.

    ``kind="mlp"``: Linear layers of widths ``hidden``; ``kind="conv"``: stride-2 3×3 convs with
    BatchNorm, ``channels`` wide; ``kind="face"``: the face backbone encoder's trunk of ``width``
    channels (the layers a faces CCVAE encodes with). ``activation`` is "relu" or "elu" (the course's
    encoders use ELU; the face trunk keeps its LeakyReLU).
    """

    def __init__(self, image_shape: Sequence[int], n_outputs: int, *, binary: bool = False, kind: str = "mlp",
                 hidden: Sequence[int] = (256,), channels: Sequence[int] = (32, 64, 64), activation: str = "relu",
                 width: int = 32):
        super().__init__()
        if n_outputs < (1 if binary else 2):
            raise ValueError(f"a classifier needs at least 2 classes (or 1 binary attribute), "
                             f"got n_outputs={n_outputs}")
        self.image_shape = tuple(image_shape)
        self.n_outputs, self.binary = n_outputs, binary
        if kind == "mlp":
            body, width = _mlp_body(self.image_shape, hidden, activation)
        elif kind == "conv":
            body, width = _conv_body(self.image_shape, channels, activation)
        elif kind == "face":
            body, width = _face_body(self.image_shape, width)
        else:
            raise ValueError(f"unknown classifier kind {kind!r}; choose 'mlp', 'conv' or 'face'")
        self.net = nn.Sequential(*body, nn.Linear(width, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.image_shape, "the classifier")
        return self.net(x)

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Labels from logits: the top class, or 0/1 per attribute (logit > 0)."""
        return (logits > 0).float() if self.binary else logits.argmax(1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Class indices (N,), or 0/1 attributes (N, n_outputs), for images ``x`` (eval mode, in batches)."""
        with model_mode(self, training=False):
            return batched_apply(lambda xb: self.decide(self(xb)), x, batch_size)

    def check_labels(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` as training needs it, or a ValueError naming the expected shape."""
        if self.binary:
            return binary_labels(y, self.n_outputs, fix="or build the Classifier with binary=False for class labels")
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ValueError(f"class labels are integer indices of shape (N,), got {tuple(y.shape)} {y.dtype}; "
                             "for 0/1 attributes build the Classifier with binary=True")
        return y

    def terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean cross-entropy of a batch (summed over attributes when binary) and its accuracy."""
        logits = self(x)
        ce = bernoulli_nll(y, logits).mean() if self.binary else F.cross_entropy(logits, y)
        return {"loss": ce, "acc": (self.decide(logits) == y).float().mean()}


def fit_classifier(clf: Classifier, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int = 128,
                   lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, progress: bool | None = None,
                   desc: str = "classifier") -> History:
    """Train ``clf`` by cross-entropy on (x, y) with Adam; ``seed`` fixes the batch order. Leaves it in eval mode."""
    y = clf.check_labels(y)
    opt = adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    return fit(clf, lambda model, batch: model.terms(*batch), [x, y], epochs=epochs, batch_size=batch_size,
               optimizer=opt, seed=seed, progress=progress, desc=desc)


def accuracy(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions (per attribute and example for binary labels), in [0, 1]."""
    if predicted.shape != y.shape:
        raise ValueError(f"predictions {tuple(predicted.shape)} and labels {tuple(y.shape)} differ in shape")
    return float((predicted.to(y.device) == y).float().mean())
