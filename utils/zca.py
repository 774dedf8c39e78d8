"""ZCA whitening of a dataset (raw-pixel ZCA as in the official MTT code), cached on disk and in memory."""

from __future__ import annotations

from dataclasses import replace

import torch

from utils.data import Dataset
from utils.digest import config_hash, data_digest, tensor_digest
from utils.paths import cache_dir, read_cache, require
from utils.results import atomic_write

ZCA_EPSILON = 0.1
ZCA_MAX_DIM = 3 * 64 * 64  # the D x D covariance of larger images (MHIST at 128 px: 49152) does not fit in memory


def zca_whiten(data: Dataset, epsilon: float = ZCA_EPSILON) -> Dataset:
    """A copy of `data` whose train and test images are ZCA-whitened with statistics of the training images.

    As in the official MTT code, whitening acts on raw [0, 1] pixels (the mean/std normalisation is undone
    first), so ε keeps the scale it has there. Every image is flattened to a vector x. With m the mean and
    C = XcᵀXc / (N − 1) the covariance of the centred training vectors Xc, eigen-decomposed as
    C = U diag(λ) Uᵀ, the whitening matrix is W = U diag((λ + ε)^(−1/2)) Uᵀ and each image becomes W (x − m),
    reshaped back to C x H x W. ε regularises the small eigenvalues (0.1, the value of the Kornia `ZCAWhitening`
    used by MTT). m and W are cached under `cache_dir()/zca/`, keyed by the training pixels and ε. The whitened
    images are no longer in the mean/std-normalised space, so `Dataset.denormalise` does not show them faithfully.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    dim = data.x_train[0].numel()
    if dim > ZCA_MAX_DIM:
        raise ValueError(f"ZCA on {data.name} images of {dim} values needs a {dim} x {dim} covariance; at most "
                         f"{ZCA_MAX_DIM} values per image (3 x 64 x 64) are supported. Use zca=False")
    key = (data_digest(data), tensor_digest(data.x_test), tuple(data.mean), tuple(data.std), epsilon)
    if key not in _WHITENED:
        _WHITENED.clear()   # one whitened dataset in memory at a time (CIFAR-10: 740 MB)
        _WHITENED[key] = _whiten(data, epsilon)
    return _WHITENED[key]


# The last whitened dataset, so that the experts, the distiller and every evaluation of a run share one
# whitening instead of hashing and transforming the training set again each time.
_WHITENED: dict[tuple, Dataset] = {}


def _whiten(data: Dataset, epsilon: float) -> Dataset:
    channel_mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    channel_std = torch.tensor(data.std).view(1, -1, 1, 1)

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x * channel_std + channel_mean

    source = config_hash({"images": data_digest(data), "mean": data.mean, "std": data.std})
    train_pixels = pixels(data.x_train)
    mean, matrix = _zca_transform(train_pixels, source, epsilon)

    def whiten(p: torch.Tensor) -> torch.Tensor:
        return ((p.flatten(1) - mean) @ matrix).view_as(p)

    return replace(data, x_train=whiten(train_pixels), x_test=whiten(pixels(data.x_test)))


def _zca_transform(x_train: torch.Tensor, source: str, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and whitening matrix of the pixels `x_train`, cached on disk under `source` (a key of the images and
    their normalisation) and ε."""
    path = cache_dir() / "zca" / f"{source}_eps{epsilon:g}.pt"
    saved = read_cache(path, lambda p: require(torch.load(p, weights_only=True),
                                               {"mean": torch.Tensor, "matrix": torch.Tensor}))
    if saved is not None:
        return saved["mean"], saved["matrix"]
    flat = x_train.flatten(1).float()
    mean = flat.mean(0)
    centred = flat - mean
    covariance = (centred.T @ centred).double() / (len(flat) - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    matrix = (eigenvectors * (eigenvalues.clamp(min=0) + epsilon).rsqrt()) @ eigenvectors.T
    matrix = matrix.float()
    atomic_write(path, lambda p: torch.save({"mean": mean, "matrix": matrix}, p))
    return mean, matrix
