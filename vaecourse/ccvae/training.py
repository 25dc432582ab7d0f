"""Semi-supervised training: the labelled/unlabelled split and fit_ccvae, which alternates labelled and unlabelled
batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from ..batching import minibatches
from ..train import History, adam, fit
from .model import CCVAE
from .objectives import (
    FORMS,
)


# ---------------------------------------------------------------------- semi-supervised data and training
def label_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (labelled S, unlabelled U) keeping ``fraction`` of the labels; stratified per class.

    Class labels keep round(fraction·n_c) of each class (at least one), so 1 % of 4000 digits
    still has every digit; attribute labels (N × A) are split at random.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction of labels must be in (0, 1], got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    labels = labels.cpu()
    if labels.dim() == 1 and not labels.dtype.is_floating_point:
        keep = []
        for c in torch.unique(labels):
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            keep.append(idx[:max(1, int(round(fraction * len(idx))))])
        s = torch.sort(torch.cat(keep)).values
    else:
        s = torch.sort(torch.randperm(n, generator=gen)[:max(1, int(round(fraction * n)))]).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[s] = False
    return s, torch.nonzero(mask).flatten()


def _cycle(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatch indices over range(n) (the small labelled set is revisited)."""
    while True:
        yield from minibatches(n, batch_size, generator)


@contextlib.contextmanager
def _first_output(module: torch.nn.Module) -> Iterator[list]:
    """A list that receives ``module``'s first output inside the block (left empty if it is not called)."""
    outputs: list = []
    handle = module.register_forward_hook(lambda _m, _inputs, out: outputs.append(out) if not outputs else None)
    try:
        yield outputs
    finally:
        handle.remove()


def fit_ccvae(model: CCVAE, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor | None = None, *,
              form: str = "report", beta: float = 0.05, epochs: int, batch_size: int = 128, lr: float = 1e-3,
              prior_lr: float | None = 0.1, seed: int = 0, sup_kwargs: dict | None = None,
              unsup_kwargs: dict | None = None, sup_terms: Callable | None = None,
              progress: bool | None = None, desc: str = "ccvae") -> History:
    """Train on labelled (x_l, y_l) and unlabelled x_u: each step one batch of each, loss = mean sup + mean unsup.

    An epoch is one pass over U (or over S when U is empty: fully supervised). The labelled
    batches cycle through S, so a small S is seen many times; p(y) is set from y_l first.
    Logged terms: ``loss``, ``sup``, ``unsup``, ``rec`` (labelled batch, nats) and ``acc_l``: the accuracy of
    q(y|z_c) at the posterior means of the labelled batch, as the step's labelled bound encoded them (before the
    update).
    ``prior_lr`` (None: ``lr``) is the step size of the conditional prior's means and scales: Adam moves
    a parameter by about lr per step, and with lr = 1e-3 the class means would stay near their random
    start while the encoder's clusters move far away, so sampling from p(z_c|y) would miss them.
    ``sup_terms(model, x, y, beta=β, **sup_kwargs)`` replaces the form's labelled terms (lesson 05 passes its own).
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose 'report' (Benyahia et al.) or 'paper' (Joy et al.)")
    sup_fn, unsup_fn = sup_terms or FORMS[form][0], FORMS[form][1]
    sup_kw, unsup_kw = dict(sup_kwargs or {}), dict(unsup_kwargs or {})
    y_l = model.check_labels(y_l)
    if x_l.shape[0] != y_l.shape[0] or x_l.shape[0] == 0:
        raise ValueError(f"need as many labels as labelled images (and at least one), got {x_l.shape[0]} images "
                         f"and {y_l.shape[0]} labels")
    model.set_label_prior(y_l)
    prior = [model.prior_mu, model.prior_logvar]
    rest = [p for p in model.parameters() if all(p is not q for q in prior)]
    opt = adam([{"params": rest}, {"params": prior, "lr": prior_lr or lr}], lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    semi = x_u is not None and x_u.shape[0] > 0
    labelled = _cycle(x_l.shape[0], batch_size, gen)

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        if semi:
            idx = next(labelled).to(x_l.device)
            xs, ys, xu = x_l[idx], y_l[idx], batch[0]
        else:
            xs, ys, xu = batch[0], batch[1], None
        with _first_output(model.encoder) as encoded:
            st = sup_fn(model, xs, ys, beta=beta, **sup_kw)
        with torch.no_grad():
            # read at the labelled bound's own posterior means, before the update: an encoder pass of their
            # own cost 5 % of a step on MNIST (a bound that does not encode xs first gets one)
            mu = encoded[0][0] if encoded and encoded[0][0].shape[0] == xs.shape[0] else model.encode(xs)[0]
            acc = (model.hard_labels(model.logits(model.split(mu)[0])) == ys).float().mean()
        loss = st["loss"].mean()
        terms = {"sup": loss.detach(), "rec": st["rec"].mean().detach()}
        if xu is not None:
            ut = unsup_fn(model, xu, beta=beta, **unsup_kw)
            terms["unsup"] = ut["loss"].mean().detach()
            loss = loss + ut["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), **terms, "acc_l": acc}

    tensors = [x_u] if semi else [x_l, y_l]
    return fit(model, None, tensors, train_step=step, optimizers={"main": opt}, epochs=epochs,
               batch_size=batch_size, seed=seed, progress=progress, desc=desc)
