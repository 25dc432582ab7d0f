"""Minibatches by index slicing of tensors that already live on the training device.

A per-sample DataLoader spends most of a small model's epoch in Python; slicing one tensor with
a shuffled index costs one gather per batch (see ``python -m benchmarks.bench_trainer``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None, *,
                shuffle: bool = True, drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Yield index tensors covering ``range(n)`` once, shuffled by ``generator`` (CPU) when asked."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def check_same_length(tensors: Sequence[torch.Tensor]) -> int:
    """The common first dimension of ``tensors``, or a ValueError naming the mismatch."""
    lengths = [t.shape[0] for t in tensors]
    if len(set(lengths)) != 1:
        raise ValueError(f"tensors to batch together must have the same length, got {lengths}")
    return lengths[0]


def iterate(tensors: Sequence[torch.Tensor], batch_size: int, generator: torch.Generator | None = None, *,
            shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of batches: each a tuple of the same rows of every tensor."""
    n = check_same_length(tensors)
    device = tensors[0].device
    for idx in minibatches(n, batch_size, generator, shuffle=shuffle, drop_last=drop_last):
        idx = idx.to(device, non_blocking=True)
        yield tuple(t[idx] for t in tensors)


@torch.no_grad()
def batched_apply(fn, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Apply ``fn`` to ``x`` in chunks (evaluation without autograd), concatenating the outputs."""
    outs = [fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)
