"""Expert trajectories for trajectory matching, cached on disk.

An expert is a network trained on the whole real training set (SGD at a constant learning rate, no momentum,
no weight decay, DSA augmentation, as in the MTT buffers) whose flattened parameters are recorded at
initialisation and after every epoch. Expert k of a configuration lives in
`cache_dir()/experts/<hash>/expert_<k>.pt` together with the configuration that produced it, and is reused
whenever that configuration (which includes a digest of the training images) matches.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from networks import get_network
from utility import RunContext, set_seed, train
from utils import ledger
from utils.augment import DSA, strategy_for
from utils.data import Dataset, stratified_subset
from utils.digest import config_hash, tensor_digest, versioned
from utils.distill.base import check_positive_ints
from utils.distill.method import PREPARATION_SECONDS
from utils.executor import LOCAL, Executor
from utils.paths import CacheFormatError, cache_dir, read_cache, require
from utils.progress import progress
from utils.results import atomic_write
from utils.zca import ZCA_EPSILON, zca_whiten

EXPERT_BUFFER = "expert_buffer"   # the unit records' kind of a buffer's summary


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



def expert_key(data: Dataset, config: ExpertConfig, context: RunContext) -> dict:
    """Everything that determines an expert's trajectory (its number excepted), as a JSON-able dict."""
    return versioned({"dataset": data.name, "im_size": list(data.im_size), "channels": data.channels,
                      "num_classes": data.num_classes, "train_digest": tensor_digest(data.x_train, data.y_train),
                      "network": config.architecture, "epochs": config.epochs, "lr": config.lr,
                      "batch_size": config.batch_size, "momentum": 0.0, "weight_decay": 0.0,
                      "augmentation": strategy_for(data.name) if config.dsa else "none",
                      "zca": config.zca, "zca_epsilon": ZCA_EPSILON if config.zca else None, "seed": context.seed,
                      "train_images": config.train_images, "precision": context.precision,
                      "device_class": torch.device(context.device).type, "zca_space": "pixels"})


def expert_dir(data: Dataset, config: ExpertConfig, context: RunContext) -> Path:
    """The folder holding the experts of this configuration."""
    return cache_dir() / "experts" / config_hash(expert_key(data, config, context))


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All parameters of `model` as one flat float32 CPU vector (in `named_parameters` order)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()]).float().cpu()


def train_expert(data: Dataset, config: ExpertConfig, context: RunContext) -> list[torch.Tensor]:
    """Train one expert (seeded with `context.seed`) and return its flat parameters at initialisation and after
    every epoch."""
    seed, device = context.seed, context.device
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
              schedule="step", augment=augment, precision=context.precision)
        trajectory.append(flat_parameters(model))
    return trajectory


def load_or_train_experts(data: Dataset, config: ExpertConfig, context: RunContext,
                          executor: Executor = LOCAL) -> list[list[torch.Tensor]]:
    """`config.num_experts` trajectories (each a list of epochs + 1 flat parameter vectors), cached on disk.

    `data` is the normalised dataset; with `config.zca` the experts are trained on `zca_whiten(data)`.
    Expert k is trained with seed `context.seed + k`; cached experts with a matching configuration are reused, and
    the missing ones are trained as units of `executor` (the driver writes each to the cache).
    """
    return _experts_and_seconds(data, config, context, executor)[0]


def _experts_and_seconds(data: Dataset, config: ExpertConfig, context: RunContext,
                         executor: Executor) -> tuple[list[list[torch.Tensor]], float]:
    """`load_or_train_experts`, and the seconds the experts took to train (recorded with each, whenever trained)."""
    key = expert_key(data, config, context)
    folder = cache_dir() / "experts" / config_hash(key)
    saved = [read_cache(folder / f"expert_{k}.pt", lambda p: _read_expert(p, config.epochs))
             for k in range(config.num_experts)]
    with executor.pool(f"experts {data.name}", unit="expert") as pool:
        training = {k: pool.submit(_expert_unit, data, config, context.with_seed(context.seed + k))
                    .when_done(partial(_write_expert, folder / f"expert_{k}.pt", key))
                    for k, found in enumerate(saved) if found is None or found["key"] != key}
        trajectories, total_seconds = [], 0.0
        for k, found in enumerate(saved):
            if k not in training:
                trajectories.append(list(found["trajectory"].unbind()))
                total_seconds += found["train_seconds"]
                continue
            trajectory, seconds = training[k].result()
            trajectories.append(trajectory)
            total_seconds += seconds
    return trajectories, total_seconds


def _write_expert(path: Path, key: dict, trained: tuple[list[torch.Tensor], float]) -> None:
    """Cache one trained expert (on the driver, the moment it finishes)."""
    trajectory, seconds = trained
    atomic_write(path, partial(torch.save, {"key": key, "trajectory": torch.stack(trajectory),
                                            "train_seconds": seconds}))


def _read_expert(path: Path, epochs: int) -> dict:
    """A cached expert: its key, a finite trajectory of `epochs` + 1 flat parameter vectors and the seconds its
    training took (else it raises)."""
    saved = require(torch.load(path, weights_only=True),
                    {"key": dict, "trajectory": torch.Tensor, "train_seconds": float})
    trajectory = saved["trajectory"]
    if trajectory.ndim != 2 or len(trajectory) != epochs + 1 or not torch.isfinite(trajectory).all():
        raise CacheFormatError(f"its trajectory is {trajectory.dtype} of shape {tuple(trajectory.shape)}; expected "
                               f"{epochs + 1} finite flat parameter vectors")
    return saved


def _expert_unit(data: Dataset, config: ExpertConfig, context: RunContext) -> tuple[list[torch.Tensor], float]:
    """One expert trajectory, whitened first when the configuration asks for ZCA, and the seconds it took."""
    start = time.perf_counter()
    trajectory = train_expert(zca_whiten(data) if config.zca else data, config, context)
    return trajectory, time.perf_counter() - start


def buffer_size_mib(data: Dataset, config: ExpertConfig, context: RunContext) -> float:
    """Disk size (MiB) of the cached experts 0 .. num_experts - 1 of this configuration that exist."""
    folder = expert_dir(data, config, context)
    paths = [folder / f"expert_{k}.pt" for k in range(config.num_experts)]
    return sum(os.path.getsize(p) for p in paths if p.exists()) / 2**20


def prepare_experts(data: Dataset, config: ExpertConfig, context: RunContext,
                    executor: Executor = LOCAL) -> dict[str, float | int | str]:
    """Train (or reuse) the expert buffer of `config` and report its size, the compute time of its training
    (recorded with each expert, so a reused buffer reports it too) and the time it took here. The report is a
    unit of the results: where it is recorded at this code digest, the buffer is not needed (the distillations
    that use it train it if they run)."""
    start = time.perf_counter()
    key = {**expert_key(data, config, context), "num_experts": config.num_experts}
    unit = ledger.recorded(EXPERT_BUFFER, key)
    if unit is None:
        _, train_seconds = _experts_and_seconds(data, config, context, executor)
        summary = {"dataset": data.name, "experts": config.num_experts, "epochs": config.epochs,
                   "train images": config.train_images or len(data.x_train),
                   "augmentation": "DSA" if config.dsa else "none",
                   "disk (MiB)": round(buffer_size_mib(data, config, context), 1),
                   PREPARATION_SECONDS: round(train_seconds, 1)}
        unit = ledger.record(EXPERT_BUFFER, key, summary, train_seconds) or {"value": summary}
    return {**unit["value"], "time this run (s)": round(time.perf_counter() - start, 1)}
