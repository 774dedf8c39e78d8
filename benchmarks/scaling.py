"""Wall time of independent units through the executors: in-process, and a local Ray instance of 1 and 2 workers.

Run: `python benchmarks/scaling.py [--units 4] [--workers 1 2] [--in-process]` on a quiet machine (`uptime`
load below the core count). Each unit is one evaluation network in `cpu`-profile settings (ConvNet trained 40
epochs with DSA on a random-real CIFAR-10 set of 10 images per class, then tested on the whole test set), seeded
by its number, with one torch thread per worker. Workers are started and have loaded the dataset (from the data
root, by its recipe) before the clock starts. Measured numbers: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from utility import RunContext, SyntheticEvaluation, resolve_precision
from utils.data import Dataset
from utils.executor import LOCAL, Executor, RayExecutor
from utils.notebook import NotebookRun
from utils.profiles import get_profile
from utils.study import _evaluate
from utils.synthetic import random_real_subset


def unit(run: NotebookRun, data: Dataset, k: int) -> SyntheticEvaluation:
    """Evaluation network k: one ConvNet on a random-real set, seeded by k."""
    x, y = random_real_subset(data, 10, torch.Generator().manual_seed(k))
    return _evaluate(run.for_worker(), x, y, data, dsa=True, n_models=1)


def loaded(data: Dataset) -> int:
    """A warm-up unit: the worker is up and holds the dataset (it stays busy long enough for every worker to get
    one)."""
    time.sleep(2)
    return len(data.x_train)


def timed(executor: Executor, run: NotebookRun, data: Dataset, units: int, workers: int) -> float:
    """Seconds for `units` units through `executor`, after a warm-up of one unit-less task per worker."""
    with executor.pool("warm-up", unit="task") as pool:
        for _ in range(workers):
            pool.submit(loaded, data)
    start = time.perf_counter()
    with executor.pool(f"{units} units", unit="unit") as pool:
        for k in range(units):
            pool.submit(unit, run, data, k)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--in-process", action="store_true", help="also time the units in this process")
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    os.environ.setdefault("DD_COMPILE", "0")   # compiling costs more than these short units
    device = torch.device("cpu")
    profile = get_profile("cpu")
    run = NotebookRun(profile, RunContext(0, device, resolve_precision(profile.precision, device)), None, None, LOCAL)
    data = run.load("CIFAR10")
    load = os.getloadavg()[0]
    rows = [("in-process (LocalExecutor)", 1, timed(LOCAL, run, data, args.units, 0))] if args.in_process else []
    for workers in args.workers:
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning", log_to_driver=False)
        rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}", workers,
                     timed(RayExecutor(device), run, data, args.units, workers)))
        ray.shutdown()
    base = next(seconds for label, w, seconds in rows if label.startswith("Ray") and w == 1)
    print(f"\n{args.units} units, precision {run.precision}, load average before: {load:.2f}")
    print("| executor | workers | wall time (s) | speed-up vs 1 Ray worker |\n| --- | --- | --- | --- |")
    for label, workers, seconds in rows:
        print(f"| {label} | {workers} | {seconds:.1f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
