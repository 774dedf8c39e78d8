"""Tiny synthetic datasets for unit tests of the distillation methods."""

from __future__ import annotations

import pandas as pd
import torch

from utils.data import Dataset
from utils.results import std_column


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


def _mean_std(cell) -> tuple[float, float | None] | None:
    """(mean, std) of a 'mean ± std' cell or a number (std None); (nan, None) for '-'; None for other text."""
    if not isinstance(cell, str):
        return (float(cell), None) if cell is not None else (float("nan"), None)
    if cell.strip() == "-":
        return float("nan"), None
    try:
        parts = [float(v) for v in cell.split("±")]
    except ValueError:
        return None
    return parts[0], parts[1] if len(parts) > 1 else None


def numeric_table(rows: list[dict]) -> pd.DataFrame:
    """A results table from rows written as the Markdown shows them ('mean ± std' cells, '-' where not measured),
    stored as the CSVs store it: a mean column and its std column, missing values empty."""
    frame = pd.DataFrame(rows)
    for column in list(frame.columns):
        if not frame[column].map(lambda c: isinstance(c, str)).any():
            continue
        parsed = frame[column].map(_mean_std)
        if parsed.map(lambda p: p is None).any():
            continue
        frame[column] = pd.to_numeric(parsed.map(lambda p: p[0]))
        if not column.endswith("(%)") and frame[column].dropna().map(float.is_integer).all():
            frame[column] = frame[column].astype("Int64")
        if parsed.map(lambda p: p[1] is not None).any():
            frame.insert(frame.columns.get_loc(column) + 1, std_column(column),
                         pd.to_numeric(parsed.map(lambda p: p[1] if p[1] is not None else float("nan"))))
    return frame
