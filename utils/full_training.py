"""Train a network on a whole (or sub-sampled) real training set: the full-data baselines of 01, 04 and 05.

Results are cached with their configuration and reused when it matches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from networks import get_network
from utility import Timer, count_macs, count_parameters, evaluate, set_seed, train
from utils import ledger
from utils.data import Dataset, stratified_subset
from utils.digest import config_hash, data_digest, versioned
from utils.paths import cache_dir, read_cache, require
from utils.results import atomic_write

FULL_TRAINING = "full_training"   # the unit records' kind


@dataclass(frozen=True)
class FullTrainingConfig:
    """One full-data training run (SGD momentum 0.9, wd 5e-4, cosine annealing from `lr`)."""

    dataset: str
    architecture: str = "ConvNet"
    epochs: int = 20
    train_images: int | None = None
    batch_size: int = 256
    lr: float = 0.01
    seed: int = 0
    precision: str = "fp32"


def full_training_path(data: Dataset, config: FullTrainingConfig, device: torch.device) -> tuple[Path, dict]:
    """The cache file of one full-data training run and the key it must hold."""
    key = versioned({**asdict(config), "im_size": list(data.im_size), "test_images": len(data.x_test),
                     "data": data_digest(data), "device_class": torch.device(device).type})
    return cache_dir() / "full_training" / f"{config_hash(key)}.json", key


def read_full_training(path: Path, key: dict) -> dict | None:
    """The result of the training with `key`: its unit record in the results (at this code digest, from any
    machine), else the cached result at `path` if it was made with `key` (then recorded as a unit)."""
    unit = ledger.recorded(FULL_TRAINING, key)
    if unit is not None:
        return unit["value"]
    cached = read_cache(path, lambda p: require(json.loads(p.read_text()), {"config": dict, "metrics": dict}))
    if cached is None or cached.get("config") != key:
        return None
    ledger.record(FULL_TRAINING, key, cached, cached["train_seconds"] + cached["test_seconds"])
    return cached


def training_machine(result: dict) -> str:
    """The machine a full-data training result was computed on (its unit record's; '' without a ledger)."""
    return ledger.machine_of(FULL_TRAINING, result["config"])


def write_full_training(path: Path, key: dict, result: dict) -> None:
    """Write a finished training to the cache at `path` and record it as a unit of the results."""
    atomic_write(path, lambda p: p.write_text(json.dumps(result)))
    ledger.record(FULL_TRAINING, key, result, result["train_seconds"] + result["test_seconds"])


def train_full(data: Dataset, config: FullTrainingConfig, device: torch.device, progress: bool = True) -> dict:
    """Train and test one network; returns metrics, per-epoch history, MACs and times (cached by config)."""
    path, key = full_training_path(data, config, device)
    cached = read_full_training(path, key)
    if cached is not None:
        return cached
    ledger.check_budget()
    result = train_full_uncached(data, config, device, key, progress)
    write_full_training(path, key, result)
    return result


def train_full_uncached(data: Dataset, config: FullTrainingConfig, device: torch.device, key: dict,
                        progress: bool = True) -> dict:
    """One full-data training run (a unit of an executor); its result records `key`."""
    set_seed(config.seed)
    x, y = data.x_train, data.y_train
    if config.train_images is not None and config.train_images < len(x):
        x, y = stratified_subset(x, y, config.train_images, config.seed)
    model = get_network(config.architecture, data.channels, data.num_classes, data.im_size).to(device)
    history = train(model, x, y, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                    schedule="cosine", test=(data.x_test, data.y_test), precision=config.precision,
                    progress=f"{config.architecture} on {config.dataset}" if progress else False)
    with Timer() as test_timer:
        metrics = evaluate(model, data.x_test, data.y_test, precision=config.precision)
    return {"config": key, "metrics": metrics, "train_loss": history.train_loss,
            "test_accuracy": history.test_accuracy, "train_seconds": history.train_seconds,
            "test_seconds": test_timer.seconds, "train_images": len(x), "test_images": len(data.x_test),
            "macs_per_image": count_macs(model, (data.channels, *data.im_size)),
            "parameters": count_parameters(model), "device": str(device)}
