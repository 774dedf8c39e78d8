"""The synthetic-set format every method saves and every later notebook reads, plus initialisation."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.data import Dataset
from utils.results import atomic_write

INITS = ("real", "noise")
_NAME = re.compile(r"(?P<method>[a-z]+)_(?P<dataset>[A-Z0-9]+)_ipc(?P<ipc>\d+)_(?P<init>real|noise)\.pt")


@dataclass
class SyntheticSet:
    """Distilled images (normalised space) with labels, provenance and, for MTT, a learned learning rate."""

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    mean: list[float]
    std: list[float]
    config: dict = field(default_factory=dict)
    lr: float | None = None
    snapshots: dict[int, dict] = field(default_factory=dict)   # iteration -> {"images", "lr"} during distillation

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as a dict of plain tensors and values."""
        payload = {"images": self.images.detach().cpu().float(), "labels": self.labels.cpu().long(),
                   "dataset": self.dataset, "mean": self.mean, "std": self.std, "config": self.config}
        if self.lr is not None:
            payload["lr"] = float(self.lr)
        if self.snapshots:
            payload["snapshots"] = {int(it): {"images": snap["images"].detach().cpu().float(),
                                              "lr": None if snap["lr"] is None else float(snap["lr"])}
                                    for it, snap in self.snapshots.items()}
        return atomic_write(Path(path), lambda p: torch.save(payload, p))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SyntheticSet:
        """Read a set written by `save` (plain tensors only: a file holding anything else is refused)."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return cls(images=payload["images"], labels=payload["labels"], dataset=payload["dataset"],
                       mean=payload["mean"], std=payload["std"], config=payload["config"], lr=payload.get("lr"),
                       snapshots=payload.get("snapshots", {}))
        except FileNotFoundError:
            raise
        except Exception as err:  # truncated, not a torch file, a refused pickle, or keys missing
            raise UnreadableSetError(f"synthetic set {path} cannot be read ({type(err).__name__}: {err}).") from err


class UnreadableSetError(ValueError):
    """A saved synthetic set in the results folder cannot be read."""


def synthetic_path(results_dir: str | os.PathLike, method: str, dataset: str, ipc: int, init: str) -> Path:
    """`<results>/synthetic/<method>_<dataset>_ipc<k>_<init>.pt`."""
    return Path(results_dir) / "synthetic" / f"{method}_{dataset}_ipc{ipc}_{init}.pt"


def parse_synthetic_name(path: str | os.PathLike) -> dict[str, str | int] | None:
    """Method, dataset, ipc and init encoded in a synthetic-set file name (None if it is not one)."""
    match = _NAME.fullmatch(Path(path).name)
    return None if match is None else {**match.groupdict(), "ipc": int(match["ipc"])}


def check_init(init: str) -> None:
    """Reject an unknown initialisation name."""
    if init not in INITS:
        raise ValueError(f"Unknown init {init!r}; allowed: {', '.join(INITS)}")


def initial_images(data: Dataset, ipc: int, init: str, generator: torch.Generator) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """`ipc` images per class: random real training images, or Gaussian noise in the normalised space."""
    check_init(init)
    labels = torch.arange(data.num_classes).repeat_interleave(ipc)
    if init == "noise":
        return torch.randn(len(labels), data.channels, *data.im_size, generator=generator), labels
    return random_real_subset(data, ipc, generator)[0], labels


def random_real_subset(data: Dataset, ipc: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`ipc` random real training images per class (the floor a distilled set must beat)."""
    picks = [idx[torch.randperm(len(idx), generator=generator)[:ipc]] for idx in data.class_indices()]
    chosen = torch.cat(picks)
    return data.x_train[chosen].clone(), data.y_train[chosen].clone()
