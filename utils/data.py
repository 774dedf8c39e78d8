"""Load MNIST, CIFAR-10 and MHIST as normalised in-memory tensors, with a fast array cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.paths import cache_dir, data_root

DATASETS = ("MNIST", "CIFAR10", "MHIST")
CLASS_NAMES = {
    "MNIST": [str(i) for i in range(10)],
    "CIFAR10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "MHIST": ["HP", "SSA"],
}
MHIST_REQUEST = "https://bmirds.github.io/MHIST/ (fill in the dataset request form; the files arrive by e-mail)"


@dataclass
class Dataset:
    """A whole dataset as tensors: normalised float32 N x C x H x W images and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def im_size(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[2:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_indices(self) -> list[torch.Tensor]:
        """Indices of the training images of each class."""
        return [torch.nonzero(self.y_train == c).flatten() for c in range(self.num_classes)]

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images back to [0, 1] pixel space for display."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x.cpu() * std + mean).clamp(0, 1)


def stratified_subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` examples with classes in their original proportions, chosen reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(x), generator=generator)[:n].sort().values
    return x[keep], y[keep]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing from the data root and cannot be downloaded."""


def _missing(name: str, root: Path, expected: str, how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found under data root {root.resolve()}: expected {expected}. {how} "
        "Set the data root with the `data_root` parameter or the DD_DATA_ROOT environment variable.")


def _mnist_raw(root: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets import MNIST

    try:
        splits = {train: MNIST(str(root), train=train, download=True) for train in (True, False)}
    except Exception as err:
        raise _missing("MNIST", root, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
                       f"Download failed ({type(err).__name__}: {err}); copy torchvision's MNIST files there.") from err
    return {"x_train": splits[True].data.numpy()[:, None], "y_train": splits[True].targets.numpy(),
            "x_test": splits[False].data.numpy()[:, None], "y_test": splits[False].targets.numpy()}


def _cifar10_raw(root: Path) -> dict[str, np.ndarray]:
    npz = root / "cifar10.npz"
    if npz.exists():
        arrays = np.load(npz)
        return {k: arrays[k].transpose(0, 3, 1, 2) if k.startswith("x") else arrays[k]
                for k in ("x_train", "y_train", "x_test", "y_test")}
    from torchvision.datasets import CIFAR10

    try:
        splits = {train: CIFAR10(str(root), train=train, download=True) for train in (True, False)}
    except Exception as err:
        raise _missing("CIFAR10", root, "cifar10.npz (x_train/y_train/x_test/y_test arrays) or cifar-10-batches-py/",
                       f"Download failed ({type(err).__name__}: {err}).") from err
    return {"x_train": splits[True].data.transpose(0, 3, 1, 2), "y_train": np.array(splits[True].targets),
            "x_test": splits[False].data.transpose(0, 3, 1, 2), "y_test": np.array(splits[False].targets)}


def _mhist_raw(root: Path, im_size: int) -> dict[str, np.ndarray]:
    import pandas as pd
    from PIL import Image

    folder = root / "mhist"
    if not (folder / "annotations.csv").exists() or not (folder / "images").is_dir():
        raise _missing("MHIST", root, "mhist/annotations.csv and mhist/images/*.png (MHIST's own layout)",
                       f"MHIST cannot be downloaded automatically: request it at {MHIST_REQUEST}.")
    table = pd.read_csv(folder / "annotations.csv")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        rows = table[table["Partition"] == split]
        images = [np.asarray(Image.open(folder / "images" / f).convert("RGB").resize((im_size, im_size),
                                                                                      Image.BICUBIC))
                  for f in rows["Image Name"]]
        out[f"x_{split}"] = np.stack(images).transpose(0, 3, 1, 2)
        out[f"y_{split}"] = rows["Majority Vote Label"].map({"HP": 0, "SSA": 1}).to_numpy()
    return out


def _source_stamp(root: Path, name: str) -> str:
    """Identifies the source files, so that a changed source invalidates the cache."""
    sources = {"MNIST": [root / "MNIST" / "raw"], "CIFAR10": [root / "cifar10.npz"],
               "MHIST": [root / "mhist" / "annotations.csv", root / "mhist" / "images"]}[name]
    parts = [f"{p.resolve()}:{p.stat().st_mtime_ns}:{p.stat().st_size}" if p.exists() else f"{p}:missing"
             for p in sources]
    return "|".join(parts)


def _prepared(name: str, root: Path, im_size: int) -> dict:
    """uint8 arrays of a dataset and its training-set channel mean/std, from the project cache when the
    source is unchanged."""
    stamp = _source_stamp(root, name)
    cache = cache_dir() / "data" / f"{name}_{im_size}.pt"
    if cache.exists():
        cached = torch.load(cache, weights_only=True)
        if cached["stamp"] == stamp:
            return cached
    raw = {"MNIST": _mnist_raw, "CIFAR10": _cifar10_raw}.get(name)
    arrays = raw(root) if raw else _mhist_raw(root, im_size)
    tensors = {k: torch.from_numpy(np.array(v)).to(torch.uint8 if k.startswith("x") else torch.int64)
               for k, v in arrays.items()}
    pixels = tensors["x_train"].transpose(0, 1).reshape(tensors["x_train"].shape[1], -1).double() / 255
    prepared = {"stamp": stamp, "arrays": tensors, "mean": pixels.mean(1).float(), "std": pixels.std(1).float()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    torch.save(prepared, tmp)
    os.replace(tmp, cache)
    return prepared


def load_dataset(name: str, root: str | os.PathLike | None = None, im_size: int | None = None) -> Dataset:
    """Load dataset `name` (MNIST, CIFAR10, MHIST) from the data root, normalised by training-set mean/std."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if im_size is not None and name != "MHIST":
        raise ValueError(f"im_size is only configurable for MHIST, not {name}")
    prepared = _prepared(name, data_root(root), im_size or 64)
    arrays, mean, std = prepared["arrays"], prepared["mean"], prepared["std"]
    x_train = arrays["x_train"].float().div_(255)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))

    return Dataset(name=name, x_train=normalise(x_train), y_train=arrays["y_train"],
                   x_test=normalise(arrays["x_test"].float().div_(255)), y_test=arrays["y_test"],
                   classes=CLASS_NAMES[name], mean=mean.tolist(), std=std.tolist())
