"""Tiny synthetic datasets for unit tests of the distillation methods."""

from __future__ import annotations

import torch

from utils.data import Dataset


def fake_dataset(name: str, classes: int, shape: tuple[int, int, int], per_class: int, seed: int = 0) -> Dataset:
    """Random images whose mean depends on the class, `per_class` of each class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(per_class)
    x = torch.randn(len(y), *shape, generator=g) + y.view(-1, 1, 1, 1).float()
    return Dataset(name, x, y, x[:4].clone(), y[:4].clone(), [str(c) for c in range(classes)],
                   [0.0] * shape[0], [1.0] * shape[0])
