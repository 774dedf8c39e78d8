"""Distillation methods behind one call: `distill(method, data, task, config, ...)` returns a SyntheticSet.

To add a method: write a module with a frozen config dataclass (with `iterations` and `checkpoint_every`)
and a distiller class with `step`, `state_dict`, `load_state_dict` and `synthetic`, then register it in
`METHODS`.
"""

from __future__ import annotations

import os

import torch

from utility import set_seed
from utils.data import Dataset
from utils.distill.base import DistillTask, data_digest, distill_or_load, method_config, run_distillation
from utils.distill.distribution_matching import DistributionMatching, DistributionMatchingConfig
from utils.distill.gradient_matching import GradientMatching, GradientMatchingConfig
from utils.distill.trajectory_matching import TrajectoryMatching, TrajectoryMatchingConfig
from utils.synthetic import SyntheticSet, synthetic_path

METHODS = {"gm": GradientMatching, "dm": DistributionMatching, "mtt": TrajectoryMatching}
# Bumped whenever a change to the methods' computation makes earlier saved sets stale (2: siamese DSA with one
# draw per class, official normalisation constants, raw-pixel ZCA, GM network SGD without momentum).
IMPLEMENTATION_VERSION = 2
METHOD_LABELS = {"gm": "Gradient matching + DSA", "dm": "Distribution matching", "mtt": "Trajectory matching"}

__all__ = ["METHODS", "DistillTask", "DistributionMatchingConfig", "GradientMatchingConfig", "TrajectoryMatchingConfig",
           "distill"]


def distill(method: str, data: Dataset, task: DistillTask, config, *, results_dir: str | os.PathLike,
            profile: str, seed: int, device: torch.device, precision: str) -> tuple[SyntheticSet, bool]:
    """Distil `task` with `method` or reuse a saved set of the same configuration; returns (set, reused)."""
    full = distill_key(method, data, task, config, profile=profile, seed=seed, device=device, precision=precision)
    return distill_or_load(synthetic_path(results_dir, method, task.dataset, task.ipc, task.init),
                           lambda: build_set(method, data, task, config, full, seed=seed, device=device,
                                             precision=precision), full)


def distill_key(method: str, data: Dataset, task: DistillTask, config, *, profile: str, seed: int,
                device: torch.device, precision: str, snapshots_at: tuple[int, ...] = ()) -> dict:
    """Everything that determines a distilled set (a saved set is reused only when its configuration matches),
    including the iterations whose images are kept for an accuracy-vs-iterations curve."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if task.dataset != data.name:
        raise ValueError(f"task.dataset={task.dataset!r} does not match the loaded dataset {data.name!r}")
    return {"method": method, "implementation": IMPLEMENTATION_VERSION, "dataset": task.dataset, "ipc": task.ipc,
            "init": task.init, "im_size": list(data.im_size), "method_config": method_config(config),
            "profile": profile, "seed": seed, "precision": precision, "device_class": torch.device(device).type,
            "data": data_digest(data), **({"snapshots_at": list(snapshots_at)} if snapshots_at else {})}


def build_set(method: str, data: Dataset, task: DistillTask, config, full: dict, *, seed: int,
              device: torch.device, precision: str) -> SyntheticSet:
    """Distil `task` (configuration `full`, from `distill_key`) from scratch or from its checkpoint."""
    set_seed(seed)
    distiller = METHODS[method](data, task, config, seed=seed, device=device, precision=precision)
    return run_distillation(distiller, iterations=config.iterations, config=full, data=data,
                            checkpoint_every=config.checkpoint_every, device=device,
                            snapshots_at=tuple(full.get("snapshots_at", ())),
                            desc=f"{method} {task.dataset} ipc{task.ipc} {task.init}")
