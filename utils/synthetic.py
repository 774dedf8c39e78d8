"""The synthetic-set format every method saves and every later notebook reads, plus initialisation."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.data import Dataset
from utils.paths import load_error
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
            loaded = cls(images=payload["images"], labels=payload["labels"], dataset=payload["dataset"],
                         mean=payload["mean"], std=payload["std"], config=payload["config"], lr=payload.get("lr"),
                         snapshots=payload.get("snapshots", {}))
            loaded.check()
            return loaded
        except FileNotFoundError:
            raise
        except Exception as err:  # truncated, not a torch file, a refused pickle, keys missing, bad images
            raise UnreadableSetError(f"synthetic set {path} cannot be read ({load_error(err)}).") from err

    def check(self) -> None:
        """Raise a ValueError unless the images are finite float N x C x H x W with one int64 label each (the
        snapshots likewise)."""
        if not isinstance(self.images, torch.Tensor) or not self.images.is_floating_point() or self.images.ndim != 4:
            raise ValueError(f"images must be a float tensor N x C x H x W, got {_describe(self.images)}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 \
                or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},), got {_describe(self.labels)}")
        for name, images in [("images", self.images)] + [(f"snapshot {it}", snap.get("images"))
                                                         for it, snap in self.snapshots.items()]:
            if not isinstance(images, torch.Tensor) or images.shape != self.images.shape:
                raise ValueError(f"{name} must have the shape of the images {tuple(self.images.shape)}, got "
                                 f"{_describe(images)}")
            if not torch.isfinite(images).all():
                raise ValueError(f"{name} hold non-finite values (NaN or infinity)")


def _describe(value: object) -> str:
    return (f"{value.dtype} of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
            else type(value).__name__)


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
