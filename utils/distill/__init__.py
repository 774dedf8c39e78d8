"""The registered distillation methods (`METHODS`: key -> `Method` record) behind one call:
`distill(method, data, task, config, context, results_dir=..., profile=...)` returns a SyntheticSet; and the
saved sets of every registered method (`find_synthetic`, `load_synthetic`).

To add a method: write a module with a frozen config dataclass (with `iterations`, `checkpoint_every`,
`architecture`, `dsa`), a distiller class and one `METHOD = Method(...)` record, then add that record to
`METHODS` below.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from utility import RunContext, set_seed
from utils.data import Dataset
from utils.digest import data_digest
from utils.distill import distribution_matching, gradient_matching, trajectory_matching
from utils.distill.base import DistillTask, distill_or_load, method_config, run_distillation
from utils.distill.distribution_matching import DistributionMatchingConfig
from utils.distill.gradient_matching import GradientMatchingConfig
from utils.distill.method import Method
from utils.distill.trajectory_matching import TrajectoryMatchingConfig
from utils.synthetic import INITS, SyntheticSet, UnreadableSetError, parse_synthetic_name, synthetic_path

METHODS: dict[str, Method] = {record.key: record for record in (
    gradient_matching.METHOD, distribution_matching.METHOD, trajectory_matching.METHOD)}
# Bumped whenever a change to the methods' computation makes earlier saved sets stale (2: siamese DSA with one
# draw per class, official normalisation constants, raw-pixel ZCA, GM network SGD without momentum).
IMPLEMENTATION_VERSION = 2

__all__ = ["METHODS", "DistillTask", "DistributionMatchingConfig", "GradientMatchingConfig", "Method",
           "TrajectoryMatchingConfig", "distill", "find_synthetic", "load_synthetic"]


def distill(method: str, data: Dataset, task: DistillTask, config, context: RunContext, *,
            results_dir: str | os.PathLike, profile: str) -> tuple[SyntheticSet, bool]:
    """Distil `task` with `method` or reuse a saved set of the same configuration; returns (set, reused)."""
    full = distill_key(method, data, task, config, context, profile=profile)
    return distill_or_load(synthetic_path(results_dir, method, task.dataset, task.ipc, task.init),
                           lambda: build_set(method, data, task, config, full, context), full)


def distill_key(method: str, data: Dataset, task: DistillTask, config, context: RunContext, *, profile: str,
                snapshots_at: tuple[int, ...] = ()) -> dict:
    """Everything that determines a distilled set (a saved set is reused only when its configuration matches),
    including the iterations whose images are kept for an accuracy-vs-iterations curve."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if task.dataset != data.name:
        raise ValueError(f"task.dataset={task.dataset!r} does not match the loaded dataset {data.name!r}")
    return {"method": method, "implementation": IMPLEMENTATION_VERSION, "dataset": task.dataset, "ipc": task.ipc,
            "init": task.init, "im_size": list(data.im_size), "method_config": method_config(config),
            "profile": profile, "seed": context.seed, "precision": context.precision,
            "device_class": context.device.type, "data": data_digest(data),
            **({"snapshots_at": list(snapshots_at)} if snapshots_at else {})}


def build_set(method: str, data: Dataset, task: DistillTask, config, full: dict,
              context: RunContext) -> SyntheticSet:
    """Distil `task` (configuration `full`, from `distill_key`) from scratch or from its checkpoint."""
    record = METHODS[method]
    set_seed(context.seed)
    distiller = record.distiller(data, task, config, context, **record.inputs(data, config, context))
    return run_distillation(distiller, iterations=config.iterations, config=full, data=data,
                            checkpoint_every=config.checkpoint_every, device=context.device,
                            snapshots_at=tuple(full.get("snapshots_at", ())),
                            desc=f"{method} {task.dataset} ipc{task.ipc} {task.init}")


def regenerate_hint(path: str | os.PathLike) -> str:
    """How to regenerate a saved set: delete it and re-run the notebook that writes it."""
    info = parse_synthetic_name(path)
    record = None if info is None else METHODS.get(info["method"])
    notebook = None if info is None else "05" if info["dataset"] == "MHIST" else record and record.number
    only = f" --only {notebook}" if notebook else ""
    named = ", ".join(f"{m.key} {m.number}" for m in METHODS.values())
    return (f"Delete it and regenerate it with `python -m utils.pipeline --profile <profile>{only} --results-dir "
            f"{Path(path).resolve().parent.parent}` (the profile it was made with; the notebook that writes it"
            f"{'' if notebook else f' is named by the method prefix: {named}, MHIST 05'}).")


def load_synthetic(path: str | os.PathLike) -> SyntheticSet:
    """`SyntheticSet.load`, whose error for an unreadable set says how to regenerate it."""
    try:
        return SyntheticSet.load(path)
    except UnreadableSetError as err:
        raise UnreadableSetError(f"{err} {regenerate_hint(path)}") from err.__cause__


def find_synthetic(results_dir: str | os.PathLike, dataset: str | None = None,
                   profile: str | None = None) -> list[Path]:
    """Every saved synthetic set under `<results>/synthetic/`, sorted by name, optionally only those of one
    dataset and of one profile (read from each set's saved configuration). A file that does not follow the
    naming scheme `<method>_<dataset>_ipc<k>_<init>.pt` of a registered method is skipped with a warning."""
    found = []
    for path in sorted(Path(results_dir, "synthetic").glob("*")):
        if path.name.startswith(".") or not path.is_file():
            continue  # temporary files of a write in progress
        info = parse_synthetic_name(path)
        if info is None or info["method"] not in METHODS:
            warnings.warn(f"skipping {path}: not a synthetic set name (<method>_<dataset>_ipc<k>_<init>.pt with "
                          f"method in {', '.join(METHODS)} and init in {', '.join(INITS)})", stacklevel=2)
            continue
        if dataset not in (None, info["dataset"]):
            continue
        if profile is not None and load_synthetic(path).config.get("profile") != profile:
            continue
        found.append(path)
    return found
