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


class Counter:
    """A stand-in distiller whose images count its steps (so a checkpoint or snapshot shows when it was taken);
    its loss is the step number and its learned lr half of it."""

    def __init__(self):
        self.x, self.steps = torch.zeros(1, 1, 2, 2), 0

    def step(self) -> float:
        self.steps += 1
        self.x += 1
        return float(self.steps)

    def state_dict(self) -> dict:
        return {"x": self.x.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.steps = state["x"].clone(), state["steps"]

    def synthetic(self):
        return self.x, torch.zeros(1, dtype=torch.long), 0.5 * self.steps
