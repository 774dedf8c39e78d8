"""Load MNIST, CIFAR-10 and MHIST as normalised in-memory tensors, with a fast array cache.

Normalisation uses the official DC/DSA/DM/MTT code's fixed constants (`NORMALISATION`: CIFAR-10 mean
(0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010); MNIST 0.1307 / 0.3081), so noise initialisation, DSA's
brightness and the image learning rates act at the papers' scale. MHIST, absent from that code, uses its
training-set channel mean and std.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.paths import cache_dir, data_root, read_cache, require, write_cache

DATASETS = ("MNIST", "CIFAR10", "MHIST")
CLASS_NAMES = {
    "MNIST": [str(i) for i in range(10)],
    "CIFAR10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "MHIST": ["HP", "SSA"],
}
# Per-channel (mean, std) of the official implementations (VICO-UoE/DatasetCondensation `utils.get_dataset`).
NORMALISATION = {
    "MNIST": ([0.1307], [0.3081]),
    "CIFAR10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
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


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what the loader expects (named: file, field, found, expected)."""


def _missing(name: str, root: Path, expected: str, how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found under data root {root.resolve()}: expected {expected}. {how} "
        "Set the data root with the `data_root` parameter or the DD_DATA_ROOT environment variable.")


def _invalid(path: Path, field: str, found: str, expected: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {field} {found}; expected {expected}. Nothing was cached.")


MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
CIFAR10_BATCHES = {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]}
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SHAPES = {"MNIST": (1, 28, 28), "CIFAR10": (3, 32, 32)}


def _downloads() -> Path:
    """Where a missing dataset is downloaded: the project cache, so that the data root is only ever read."""
    return cache_dir() / "downloads"


def _mnist_files(root: Path) -> dict[str, Path]:
    """The four IDX files, from the data root or an earlier download; downloaded if neither has them."""
    for folder in (root / "MNIST" / "raw", _downloads() / "MNIST" / "raw"):
        files = {key: folder / name for key, name in MNIST_FILES.items()}
        if all(p.is_file() for p in files.values()):
            return files
    from torchvision.datasets import MNIST

    try:
        MNIST(str(_downloads()), download=True)
    except Exception as err:
        raise _missing("MNIST", root, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
                       f"Download failed ({type(err).__name__}: {err}); copy torchvision's MNIST files there.") from err
    return {key: _downloads() / "MNIST" / "raw" / name for key, name in MNIST_FILES.items()}


def _cifar10_files(root: Path) -> dict[str, Path]:
    """`cifar10.npz`, else torchvision's python batches from the data root or an earlier download (downloaded
    if none is there)."""
    if (root / "cifar10.npz").is_file():
        return {"npz": root / "cifar10.npz"}
    for base in (root, _downloads()):
        files = {name: base / "cifar-10-batches-py" / name for names in CIFAR10_BATCHES.values() for name in names}
        if all(p.is_file() for p in files.values()):
            return files
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(_downloads()), download=True)
    except Exception as err:
        raise _missing("CIFAR10", root, "cifar10.npz (x_train/y_train/x_test/y_test arrays) or cifar-10-batches-py/",
                       f"Download failed ({type(err).__name__}: {err}).") from err
    return _cifar10_files(_downloads())


def _mhist_files(root: Path) -> dict[str, Path]:
    folder = root / "mhist"
    if not (folder / "annotations.csv").is_file() or not (folder / "images").is_dir():
        raise _missing("MHIST", root, "mhist/annotations.csv and mhist/images/*.png (MHIST's own layout)",
                       f"MHIST cannot be downloaded automatically: request it at {MHIST_REQUEST}.")
    return {"annotations": folder / "annotations.csv",
            **{p.name: p for p in sorted((folder / "images").iterdir()) if p.is_file()}}


def _mnist_raw(files: dict[str, Path]) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    arrays = {}
    for key, path in files.items():
        try:
            arrays[key] = read_sn3_pascalvincent_tensor(str(path), strict=False).numpy()
        except Exception as err:
            raise _invalid(path, "the file", f"cannot be read ({type(err).__name__}: {err})",
                           "an IDX file as distributed with MNIST") from err
        if key.startswith("x") and arrays[key].ndim == 3:
            arrays[key] = arrays[key][:, None]
    return arrays, files


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays (CIFAR-10's python batches), never arbitrary code."""

    ALLOWED = {(f"numpy{core}.{module}", name) for core in (".core", "._core")
               for module, name in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))}
    ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: bytes in protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        return super().find_class(module, name)


def _cifar10_raw(files: dict[str, Path]) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    if "npz" in files:
        return _cifar10_npz(files["npz"])
    arrays, sources = {}, {}
    for split, names in CIFAR10_BATCHES.items():
        images, labels = [], []
        for name in names:
            try:
                with open(files[name], "rb") as handle:
                    entry = _ArrayUnpickler(handle, encoding="latin1").load()
                images.append(np.asarray(entry["data"]).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(entry["labels"]))
            except Exception as err:
                raise _invalid(files[name], "the file", f"cannot be read ({type(err).__name__}: {err})",
                               "a CIFAR-10 python batch (a dict with 'data' N x 3072 uint8 and 'labels')") from err
        arrays[f"x_{split}"], arrays[f"y_{split}"] = np.concatenate(images), np.concatenate(labels)
        sources[f"x_{split}"] = sources[f"y_{split}"] = files[names[0]].parent
    return arrays, sources


def _cifar10_npz(npz: Path) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    arrays = {}
    try:
        with np.load(npz, allow_pickle=False) as archive:
            missing = [k for k in SPLIT_KEYS if k not in archive.files]
            if missing:
                raise _invalid(npz, "the archive", f"has no {', '.join(missing)} (it holds {archive.files})",
                               f"the arrays {', '.join(SPLIT_KEYS)}")
            for key in SPLIT_KEYS:
                arrays[key] = archive[key]
    except DatasetFormatError:
        raise
    except Exception as err:
        raise _invalid(npz, "the file", f"cannot be read ({type(err).__name__}: {err})",
                       "a complete .npz archive (re-copy it)") from err
    for key in ("x_train", "x_test"):
        if arrays[key].ndim != 4 or arrays[key].shape[1:] != (32, 32, 3):
            raise _invalid(npz, key, f"has shape {arrays[key].shape}", "N x 32 x 32 x 3 (channels last)")
        arrays[key] = arrays[key].transpose(0, 3, 1, 2)
    return arrays, dict.fromkeys(SPLIT_KEYS, npz)


def _mhist_raw(files: dict[str, Path], im_size: int) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    import pandas as pd
    from PIL import Image

    csv = files["annotations"]
    columns = ["Image Name", "Majority Vote Label", "Partition"]
    try:
        table = pd.read_csv(csv)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise _invalid(csv, "the file", f"cannot be read as CSV ({type(err).__name__}: {err})",
                       f"a header with {', '.join(columns)} and one row per image") from err
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise _invalid(csv, "the header", f"lacks {', '.join(absent)} (found {list(table.columns)})",
                       f"the columns {', '.join(columns)}")
    labels = table["Majority Vote Label"]
    unknown = sorted(set(labels.astype(str)) - set(CLASS_NAMES["MHIST"]))
    if unknown:
        raise _invalid(csv, "column 'Majority Vote Label'", f"holds {unknown}",
                       f"only {CLASS_NAMES['MHIST']} (exact case)")
    partitions = sorted(set(table["Partition"].astype(str)) - {"train", "test"})
    if partitions:
        raise _invalid(csv, "column 'Partition'", f"holds {partitions}", "only 'train' and 'test'")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        rows = table[table["Partition"] == split]
        if rows.empty:
            raise _invalid(csv, "column 'Partition'", f"has no '{split}' rows ({len(table)} rows in all)",
                           "at least one 'train' and one 'test' image")
        images = []
        for name in rows["Image Name"]:
            if Path(str(name)).is_absolute() or ".." in Path(str(name)).parts:
                raise _invalid(csv, "column 'Image Name'", f"holds {str(name)!r}",
                               "a file name inside mhist/images/ (no absolute path, no '..')")
            path = csv.parent / "images" / str(name)
            try:
                with Image.open(path) as image:
                    images.append(np.asarray(image.convert("RGB").resize((im_size, im_size), Image.BICUBIC)))
            except Exception as err:
                raise _invalid(path, f"image listed in {csv.name}", f"cannot be read ({type(err).__name__}: {err})",
                               "a readable image file") from err
        out[f"x_{split}"] = np.stack(images).transpose(0, 3, 1, 2)
        out[f"y_{split}"] = rows["Majority Vote Label"].map({c: i for i, c in enumerate(CLASS_NAMES["MHIST"])}
                                                            ).to_numpy(np.int64)
    return out, {"x_train": csv.parent / "images", "x_test": csv.parent / "images", "y_train": csv, "y_test": csv}


def _validate(name: str, arrays: dict[str, np.ndarray], sources: dict[str, Path], im_size: int) -> None:
    """Refuse, naming the file and field, anything that is not uint8 N x C x H x W images with valid labels."""
    shape = IMAGE_SHAPES.get(name, (3, im_size, im_size))
    classes = len(CLASS_NAMES[name])
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        xs, ys = sources[f"x_{split}"], sources[f"y_{split}"]
        if x.dtype != np.uint8:
            raise _invalid(xs, f"x_{split}", f"has dtype {x.dtype}",
                           "uint8 pixel values 0-255 (float images in [0, 1] would be cast to black)")
        if x.ndim != 4 or x.shape[1:] != shape:
            raise _invalid(xs, f"x_{split}", f"has shape {x.shape} as N x C x H x W",
                           f"N x {' x '.join(map(str, shape))}")
        if len(x) == 0:
            raise _invalid(xs, f"x_{split}", "is empty", f"at least one {split} image")
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise _invalid(ys, f"y_{split}", f"has dtype {y.dtype} and shape {y.shape}", "integer class labels (N,)")
        if len(y) != len(x):
            raise _invalid(ys, f"y_{split}", f"has {len(y)} labels for {len(x)} images in x_{split}",
                           "one label per image")
        if y.min() < 0 or y.max() >= classes:
            bad = sorted(set(y[(y < 0) | (y >= classes)].tolist()))[:10]
            raise _invalid(ys, f"y_{split}", f"holds labels {bad}", f"labels 0-{classes - 1} ({name})")
    counts = np.bincount(arrays["y_train"], minlength=classes)
    if (counts == 0).any():
        raise _invalid(sources["y_train"], "y_train", f"has {counts.tolist()} images per class",
                       "at least one training image of every class")


FORMAT_VERSION = 2  # bump when the prepared arrays change for the same source files


def _file_hashes(paths: list[Path]) -> dict[str, str]:
    """SHA-256 of each file, memoised beside the data cache by (path, size, mtime).

    A file is re-hashed only when its size or modification time changes; a rewrite that keeps both (e.g. a
    copy with preserved timestamps of a same-size file) is not noticed until the memo is deleted."""
    memo_path = cache_dir() / "data" / "file_hashes.json"
    memo = read_cache(memo_path, lambda p: require(json.loads(p.read_text()), {})) or {}
    hashes, changed = {}, False
    for path in paths:
        stat = path.stat()
        key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
        if memo.get(key, {}).get("stamp") != stamp:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
            memo[key], changed = {"stamp": stamp, "sha256": digest.hexdigest()}, True
        hashes[key] = memo[key]["sha256"]
    if changed:
        write_cache(memo_path, lambda p: p.write_text(json.dumps(memo)))
    return hashes


def _read_prepared(path: Path) -> dict:
    """A data cache file: its key, the four arrays and the channel statistics (else it raises)."""
    cached = require(torch.load(path, weights_only=True),
                     {"key": str, "arrays": dict, "mean": torch.Tensor, "std": torch.Tensor})
    require(cached["arrays"], dict.fromkeys(SPLIT_KEYS, torch.Tensor))
    return cached


def _prepared(name: str, root: Path, im_size: int) -> dict:
    """Validated uint8 arrays of a dataset and its training-set channel mean/std, from the project cache when
    the source files' contents are unchanged."""
    files = {"MNIST": _mnist_files, "CIFAR10": _cifar10_files, "MHIST": _mhist_files}[name](root)
    hashes = _file_hashes(list(files.values()))
    key = hashlib.sha256(json.dumps([name, im_size, FORMAT_VERSION, sorted(hashes.values())]).encode()).hexdigest()
    cache = cache_dir() / "data" / f"{name}_{im_size}.pt"
    cached = read_cache(cache, _read_prepared)
    if cached is not None and cached.get("key") == key:
        return cached
    arrays, sources = (_mhist_raw(files, im_size) if name == "MHIST"
                       else {"MNIST": _mnist_raw, "CIFAR10": _cifar10_raw}[name](files))
    _validate(name, arrays, sources, im_size)
    tensors = {k: torch.from_numpy(np.array(v)).to(torch.uint8 if k.startswith("x") else torch.int64)
               for k, v in arrays.items()}
    pixels = tensors["x_train"].transpose(0, 1).reshape(tensors["x_train"].shape[1], -1).double() / 255
    prepared = {"key": key, "arrays": tensors, "mean": pixels.mean(1).float(), "std": pixels.std(1).float()}
    write_cache(cache, lambda p: torch.save(prepared, p))
    return prepared


def load_dataset(name: str, root: str | os.PathLike | None = None, im_size: int | None = None) -> Dataset:
    """Load dataset `name` (MNIST, CIFAR10, MHIST) from the data root, normalised per channel (`NORMALISATION`)."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if im_size is not None and name != "MHIST":
        raise ValueError(f"im_size is only configurable for MHIST, not {name}")
    prepared = _prepared(name, data_root(root), im_size or 64)
    arrays = prepared["arrays"]
    mean, std = (torch.tensor(v) for v in NORMALISATION[name]) if name in NORMALISATION else (
        prepared["mean"], prepared["std"])
    scale, shift = (1 / (255 * std)).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)

    def normalise(pixels: torch.Tensor) -> torch.Tensor:
        """(pixels / 255 − mean) / std in two in-place passes over the float copy."""
        return pixels.float().mul_(scale).add_(shift)

    return Dataset(name=name, x_train=normalise(arrays["x_train"]), y_train=arrays["y_train"],
                   x_test=normalise(arrays["x_test"]), y_test=arrays["y_test"],
                   classes=CLASS_NAMES[name], mean=mean.tolist(), std=std.tolist())
