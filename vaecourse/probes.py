"""Probes: how much of a label a set of features holds, read by a fresh classifier fitted to them.

One probe serves the course: lesson 05's label sweep reads a label-free VAE's posterior means with it (Kingma et
al.'s M1), lesson 07 reads what the CSVAE's latents keep of a label. ``majority_rate`` is the floor every probe is
compared with: always answering the commoner value.
"""

from __future__ import annotations

import numpy as np
import torch

Array = torch.Tensor | np.ndarray


def _columns(y: Array) -> np.ndarray:
    """Labels as floats, one column per attribute (a vector of labels becomes one column)."""
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y, dtype=float)
    return y.reshape(len(y), -1)


def majority_rate(y_train: Array, y_test: Array) -> np.ndarray:
    """Per attribute: the test accuracy of always predicting the training set's majority label."""
    ytr, yte = _columns(y_train), _columns(y_test)
    majority = (ytr.mean(0) >= 0.5).astype(float)
    return (yte == majority).mean(0)


def probe_accuracy(train: Array, y_train: Array, test: Array, y_test: Array, kind: str = "linear", seed: int = 0,
                   *, l2: float = 0.5, max_train: int | None = None, standardise: bool = True) -> np.ndarray:
    """Per attribute: the test accuracy of a probe fitted to the training features, one probe per attribute.

    ``kind="linear"`` is a logistic regression (scikit-learn's, L-BFGS) that minimises, per attribute,
    Σ_rows log-loss + ``l2``·‖w‖² (the bias is not penalised): scikit-learn's C = 1/(2·l2), so the default ½ is
    its default C = 1 (0: no penalty). ``kind="mlp"`` is a small MLP (32-32, early stopping, ``seed``), ``l2`` unused.
    Only the first ``max_train`` training rows are used (None: all). ``standardise`` scales the features by the
    mean and spread of those rows first (then the penalty treats every coordinate alike); pass False for features
    already standardised. An attribute with one value in the training rows is predicted as that value.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    if kind not in ("linear", "mlp"):
        raise ValueError(f"unknown probe kind {kind!r}; choose 'linear' or 'mlp'")
    if not l2 >= 0:
        raise ValueError(f"l2 must be non-negative (scikit-learn's C = 1/(2·l2); 0: no penalty), got {l2}")
    xtr, xte = (np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64) for a in (train, test))
    ytr, yte = _columns(y_train), _columns(y_test)
    xtr, ytr = xtr[:max_train], ytr[:max_train]
    if standardise:
        scaler = StandardScaler().fit(xtr)
        xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    accs = []
    for j in range(ytr.shape[1]):
        if len(np.unique(ytr[:, j])) < 2:
            accs.append(float((yte[:, j] == ytr[0, j]).mean()))
            continue
        if kind == "linear":
            clf = LogisticRegression(C=1.0 / (2.0 * l2) if l2 else np.inf, max_iter=500)
        else:
            clf = MLPClassifier(hidden_layer_sizes=(32, 32), max_iter=200, early_stopping=True, random_state=seed)
        clf.fit(xtr, ytr[:, j].astype(int))
        accs.append(float((clf.predict(xte) == yte[:, j].astype(int)).mean()))
    return np.array(accs)
