"""Expert trajectories for trajectory matching, cached on disk, and the optional ZCA whitening.

An expert is a network trained on the whole real training set (SGD at a constant learning rate, no momentum,
no weight decay, DSA augmentation, as in the MTT buffers) whose flattened parameters are recorded at
initialisation and after every epoch. Expert k of a configuration lives in
`cache_dir()/experts/<hash>/expert_<k>.pt` together with the configuration that produced it, and is reused
whenever that configuration (which includes a digest of the training images) matches.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from networks import get_network
from utility import set_seed, train
from utils.augment import DSA, strategy_for
from utils.data import Dataset, stratified_subset
from utils.distill.base import check_positive_ints, config_hash, data_digest, tensor_digest, versioned
from utils.executor import LOCAL, Executor
from utils.paths import CacheFormatError, cache_dir, read_cache, require
from utils.progress import progress
from utils.results import atomic_write

ZCA_EPSILON = 0.1
ZCA_MAX_DIM = 3 * 64 * 64  # the D x D covariance of larger images (MHIST at 128 px: 49152) does not fit in memory


@dataclass(frozen=True)
class ExpertConfig:
    """How the experts are trained and how many there are."""

    num_experts: int
    epochs: int
    lr: float = 0.01
    batch_size: int = 256
    dsa: bool = True
    architecture: str = "ConvNet"
    zca: bool = False
    train_images: int | None = None   # None: the whole training set; else a stratified subset (cpu profile)

    def __post_init__(self):
        check_positive_ints(self, "num_experts", "epochs", "batch_size")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


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


def expert_key(data: Dataset, config: ExpertConfig, *, seed: int, precision: str,
               device: torch.device | str = "cpu") -> dict:
    """Everything that determines an expert's trajectory (its number excepted), as a JSON-able dict."""
    return versioned({"dataset": data.name, "im_size": list(data.im_size), "channels": data.channels,
                      "num_classes": data.num_classes, "train_digest": tensor_digest(data.x_train, data.y_train),
                      "network": config.architecture, "epochs": config.epochs, "lr": config.lr,
                      "batch_size": config.batch_size, "momentum": 0.0, "weight_decay": 0.0,
                      "augmentation": strategy_for(data.name) if config.dsa else "none",
                      "zca": config.zca, "zca_epsilon": ZCA_EPSILON if config.zca else None, "seed": seed,
                      "train_images": config.train_images, "precision": precision,
                      "device_class": torch.device(device).type, "zca_space": "pixels"})


def expert_dir(data: Dataset, config: ExpertConfig, *, seed: int, precision: str,
               device: torch.device | str = "cpu") -> Path:
    """The folder holding the experts of this configuration."""
    return cache_dir() / "experts" / config_hash(expert_key(data, config, seed=seed, precision=precision,
                                                            device=device))


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All parameters of `model` as one flat float32 CPU vector (in `named_parameters` order)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()]).float().cpu()


def train_expert(data: Dataset, config: ExpertConfig, *, seed: int, device: torch.device,
                 precision: str) -> list[torch.Tensor]:
    """Train one expert and return its flat parameters at initialisation and after every epoch."""
    set_seed(seed)
    model = get_network(config.architecture, data.channels, data.num_classes, data.im_size).to(device)
    augment = DSA(strategy_for(data.name), seed=seed, device=device) if config.dsa else None
    x, y = data.x_train, data.y_train
    if config.train_images is not None and config.train_images < len(x):
        x, y = stratified_subset(x, y, config.train_images, seed)
    x, y = x.to(device), y.to(device)   # once, not every epoch
    trajectory = [flat_parameters(model)]
    for _ in progress(range(config.epochs), desc=f"expert seed {seed}", unit="epoch", leave=False):
        # one epoch per call: `schedule='step'` with epochs=1 has no milestone, so the lr stays constant
        train(model, x, y, epochs=1, lr=config.lr, batch_size=config.batch_size, momentum=0.0, weight_decay=0.0,
              schedule="step", augment=augment, precision=precision)
        trajectory.append(flat_parameters(model))
    return trajectory


def load_or_train_experts(data: Dataset, config: ExpertConfig, *, seed: int, device: torch.device,
                          precision: str, executor: Executor = LOCAL) -> list[list[torch.Tensor]]:
    """`config.num_experts` trajectories (each a list of epochs + 1 flat parameter vectors), cached on disk.

    `data` is the normalised dataset; with `config.zca` the experts are trained on `zca_whiten(data)`.
    Expert k is trained with seed `seed + k`; cached experts with a matching configuration are reused, and the
    missing ones are trained as units of `executor` (the driver writes each to the cache as it arrives).
    """
    key = expert_key(data, config, seed=seed, precision=precision, device=device)
    folder = cache_dir() / "experts" / config_hash(key)
    trajectories: dict[int, list[torch.Tensor]] = {}

    def store(k: int, trajectory: list[torch.Tensor]) -> None:
        payload = {"key": key, "trajectory": torch.stack(trajectory)}
        atomic_write(folder / f"expert_{k}.pt", lambda p: torch.save(payload, p))
        trajectories[k] = trajectory

    with executor.pool(f"experts {data.name}", unit="expert") as pool:
        for k in range(config.num_experts):
            saved = read_cache(folder / f"expert_{k}.pt", lambda p: _read_expert(p, config.epochs))
            if saved is not None and saved["key"] == key:
                trajectories[k] = list(saved["trajectory"].unbind())
                continue
            pool.submit(_expert_unit, data, config, seed=seed + k, device=device, precision=precision,
                        done=lambda t, k=k: store(k, t))
    return [trajectories[k] for k in range(config.num_experts)]


def _read_expert(path: Path, epochs: int) -> dict:
    """A cached expert: its key and a finite trajectory of `epochs` + 1 flat parameter vectors (else it raises)."""
    saved = require(torch.load(path, weights_only=True), {"key": dict, "trajectory": torch.Tensor})
    trajectory = saved["trajectory"]
    if trajectory.ndim != 2 or len(trajectory) != epochs + 1 or not torch.isfinite(trajectory).all():
        raise CacheFormatError(f"its trajectory is {trajectory.dtype} of shape {tuple(trajectory.shape)}; expected "
                               f"{epochs + 1} finite flat parameter vectors")
    return saved


def _expert_unit(data: Dataset, config: ExpertConfig, *, seed: int, device: torch.device,
                 precision: str) -> list[torch.Tensor]:
    """One expert trajectory, whitened first when the configuration asks for ZCA."""
    return train_expert(zca_whiten(data) if config.zca else data, config, seed=seed, device=device,
                        precision=precision)


def buffer_size_mib(data: Dataset, config: ExpertConfig, *, seed: int, precision: str,
                    device: torch.device | str = "cpu") -> float:
    """Disk size (MiB) of the cached experts 0 .. num_experts - 1 of this configuration that exist."""
    folder = expert_dir(data, config, seed=seed, precision=precision, device=device)
    paths = [folder / f"expert_{k}.pt" for k in range(config.num_experts)]
    return sum(os.path.getsize(p) for p in paths if p.exists()) / 2**20


def prepare_experts(data: Dataset, config: ExpertConfig, *, seed: int, device: torch.device, precision: str,
                    executor: Executor = LOCAL) -> dict[str, float | int | str]:
    """Train (or reuse) the expert buffer of `config` and report its size and the time it took here."""
    start = time.perf_counter()
    load_or_train_experts(data, config, seed=seed, device=device, precision=precision, executor=executor)
    return {"dataset": data.name, "experts": config.num_experts, "epochs": config.epochs,
            "train images": config.train_images or len(data.x_train), "augmentation": "DSA" if config.dsa else "none",
            "disk (MiB)": round(buffer_size_mib(data, config, seed=seed, precision=precision, device=device), 1),
            "time this run (s)": round(time.perf_counter() - start, 1)}
