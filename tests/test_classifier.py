"""Tests for vaecourse.classifier: the networks, label checks, training and accuracy."""

import pytest
import torch

from vaecourse.classifier import Classifier, accuracy, fit_classifier

SHAPE = (1, 8, 8)


def striped_classes(n: int = 400, n_classes: int = 4):
    """Class k lights up row 2k of a noisy 8×8 image."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n_classes).repeat(n // n_classes)
    images = 0.3 * torch.rand(n, *SHAPE, generator=gen)
    for k in range(n_classes):
        images[labels == k, 0, 2 * k, :] += 0.7
    return images, labels


def test_default_mlp_is_lesson_03s_yardstick():
    # Flatten → Linear(D, 256) → ReLU → Linear(256, K): lesson 03's numbers depend on exactly this net
    clf = Classifier((1, 28, 28), 10)
    assert [tuple(p.shape) for p in clf.parameters()] == [(256, 784), (256,), (10, 256), (10,)]
    assert [type(m).__name__ for m in clf.net] == ["Flatten", "Linear", "ReLU", "Linear"]
    elu = Classifier((1, 28, 28), 10, hidden=(64, 32), activation="elu")
    assert [type(m).__name__ for m in elu.net] == ["Flatten", "Linear", "ELU", "Linear", "ELU", "Linear"]


def test_conv_classifier_fits_odd_image_sizes():
    clf = Classifier((3, 7, 9), 5, kind="conv", channels=(4, 8), activation="elu")
    assert clf(torch.rand(2, 3, 7, 9)).shape == (2, 5)
    with pytest.raises(ValueError, match="N×3×7×9"):
        clf(torch.rand(2, 1, 7, 9))
    with pytest.raises(ValueError, match="kind"):
        Classifier(SHAPE, 3, kind="rnn")
    with pytest.raises(ValueError, match="activation"):
        Classifier(SHAPE, 3, activation="tanh")


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_classifier_learns_classes(kind):
    images, labels = striped_classes()
    torch.manual_seed(0)
    clf = Classifier(SHAPE, 4, kind=kind, channels=(8, 8))
    hist = fit_classifier(clf, images[:300], labels[:300], epochs=5, batch_size=32, lr=3e-3, progress=False)
    assert hist.series("loss")[-1] < hist.series("loss")[0]
    pred = clf.predict(images[300:], batch_size=17)
    assert pred.shape == (100,) and pred.dtype == torch.long
    assert accuracy(pred, labels[300:]) > 0.9


def test_binary_classifier_learns_attributes():
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(600, 2, generator=gen) > 0.5).float()
    x = 0.15 * torch.rand(600, *SHAPE, generator=gen)
    x[:, :, :4, :] += 0.7 * y[:, 0].view(-1, 1, 1, 1)  # attribute 0: bright top half
    x[:, :, :, :4] += 0.3 * y[:, 1].view(-1, 1, 1, 1)  # attribute 1: brighter left half
    torch.manual_seed(0)
    clf = Classifier(SHAPE, 2, binary=True, hidden=(32,))
    fit_classifier(clf, x, y, epochs=10, batch_size=64, lr=3e-3, progress=False)
    pred = clf.predict(x)
    assert pred.shape == (600, 2) and set(pred.unique().tolist()) <= {0.0, 1.0}
    assert accuracy(pred, y) > 0.9
    with torch.no_grad():  # the loss is the cross-entropy summed over attributes
        terms, logits = clf.terms(x[:5], y[:5]), clf(x[:5])
    by_hand = -(y[:5] * torch.log(torch.sigmoid(logits)) + (1 - y[:5]) * torch.log(1 - torch.sigmoid(logits))).sum(1)
    assert float(terms["loss"]) == pytest.approx(float(by_hand.mean()), rel=1e-5)


def test_wrong_labels_name_the_fix():
    images, labels = striped_classes(40)
    with pytest.raises(ValueError, match="binary=True"):
        fit_classifier(Classifier(SHAPE, 4), images, torch.zeros(40, 3), epochs=1)
    with pytest.raises(ValueError, match="binary=False"):
        fit_classifier(Classifier(SHAPE, 3, binary=True), images, labels, epochs=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        Classifier(SHAPE, 1)
    with pytest.raises(ValueError, match="differ in shape"):
        accuracy(torch.zeros(3), torch.zeros(4))
