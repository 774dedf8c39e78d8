"""Dry run of a profile: every unit of work its notebooks will run, checked before anything runs.

`python -m utils.dry_run --profile paper` lists every distillation, expert buffer and training run of the profile
(notebooks 01-07; 08 only reads) and checks each configuration the way the real run would use it: the network
builds at the dataset's shapes (on the meta device, so nothing is allocated), then each method's own pre-flight
check (`Method.check`: GM has loops for the ipc, ZCA fits, DM's network has an embedding). With `--measure` it also
runs one step of every distinct unit at full shapes on the chosen device (random images of the real shapes; a
method's extra inputs replaced by its `Method.stand_ins`, e.g. MTT's experts by random trajectories, since expert
training is measured as its own training unit) and projects time and peak memory:

- a training unit (evaluation, baseline, expert, cross-architecture, NAS) is measured as a run of 1 and of
  1 + EXTRA_STEPS SGD steps at its batch size, with DSA where the real run uses it; the difference is the cost of
  a step and the rest the run's fixed cost (optimizer, scheduler, one sync per epoch), so a unit costs
  runs × (first step + (steps - 1) × step): on a GPU a step takes milliseconds and the fixed cost is not small;
- a distillation iteration is timed as its method's record says (`Method.timing`): GM with one outer loop (its
  memory does not grow with the loops), scaled by `outer_loop`; DM as it is; MTT, whose graph keeps all
  `syn_steps` student steps, with 1 and 2 student steps, extrapolated linearly to `syn_steps` (time and memory).

A unit whose projected peak memory exceeds the device's memory (GPU: total memory; CPU: available RAM) is
reported and the command exits non-zero, as the real run would fail there.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd
import psutil
import torch

from networks import get_network
from utility import RunContext, get_device, resolve_precision, train
from utils.augment import DSA, strategy_for
from utils.data import CLASS_NAMES, Dataset
from utils.distill import METHODS, DistillTask
from utils.distill.base import PeakMemory
from utils.profiles import PROFILES, PROTOCOLS, Profile
from utils.study import curve_variant, floor_networks

# channels, image side (None: the profile's MHIST resolution), training images of each dataset
SHAPES = {"MNIST": (1, 28, 60000), "CIFAR10": (3, 32, 50000), "MHIST": (3, None, 2175)}


@dataclass(frozen=True)
class Unit:
    """One unit of work: a distillation (`config` set) or `runs` training runs of `steps` SGD steps each."""

    notebook: str
    what: str
    dataset: str
    im_size: int
    architecture: str
    images: int               # training images (training units) or images per class (distillations)
    runs: int = 1
    steps: int = 0            # SGD steps per run (training units) or iterations (distillations)
    batch_size: int = 256
    dsa: bool = False         # training units: trained with DSA augmentation
    method: str | None = None
    config: object = None
    shared: bool = False      # trained once for every set that needs it (MTT's expert buffer)

    @property
    def shape(self) -> str:
        channels = SHAPES[self.dataset][0]
        return f"{self.images} x {channels}x{self.im_size}x{self.im_size}"


def _side(dataset: str, profile: Profile) -> int:
    return SHAPES[dataset][1] or profile.mhist.im_size


def _train_units(notebook: str, what: str, dataset: str, side: int, architecture: str, images: int, runs: int,
                 epochs: int, batch_size: int = 256, dsa: bool = False) -> Unit:
    steps = epochs * math.ceil(images / batch_size)
    return Unit(notebook, what, dataset, side, architecture, images, runs, steps, min(batch_size, images), dsa)


def _distillation(notebook: str, method: str, dataset: str, side: int, ipc: int, init: str, config) -> list[Unit]:
    """A distillation and what its method trains before it (`Method.training`)."""
    units = [Unit(notebook, f"{method} {dataset} ipc{ipc} {init}", dataset, side, config.architecture, ipc,
                  steps=config.iterations, method=method, config=config)]
    for runs in METHODS[method].training(config):
        unit = _train_units(notebook, f"{method} {runs.name} {dataset} ({runs.detail})", dataset, side,
                            config.architecture, runs.images or SHAPES[dataset][2], runs.runs, runs.epochs,
                            runs.batch_size, runs.dsa)
        units.append(replace(unit, shared=True))
    return units


def _evaluations(notebook: str, label: str, dataset: str, side: int, architecture: str, images: int, runs: int,
                 budgets: tuple[tuple[int, str], ...]) -> list[Unit]:
    """One training unit per (epochs, evaluation protocol of `utils.profiles.PROTOCOLS`) budget of an evaluation."""
    return [_train_units(notebook, f"evaluate {label}{PROTOCOLS[v].label} ({e} epochs)", dataset, side, architecture,
                         images, runs, e, dsa=PROTOCOLS[v].dsa) for e, v in budgets]


def profile_units(profile: Profile) -> list[Unit]:
    """Every unit of work notebooks 01-07 run in `profile`, in notebook order (expert buffers once per config)."""
    units: list[Unit] = []
    for name in profile.baseline.datasets:
        units.append(_train_units("01", f"baseline {name}", name, _side(name, profile), "ConvNet",
                                  profile.baseline.train_images or SHAPES[name][2], 1, profile.baseline.epochs))
    evaluation, study = profile.evaluation, profile.study
    epochs = {name: p.epochs or (evaluation.dsa_epochs if p.dsa else evaluation.epochs)
              for name, p in PROTOCOLS.items()}
    floor_runs = floor_networks(evaluation.n_models, evaluation.floor_subsets)
    curve_runs = (evaluation.curve_points + 1) * evaluation.curve_models   # iteration 0 and the snapshots
    floors_listed: set[tuple[str, int, str]] = set()   # the floor is evaluated once per variant, then cached
    for record in sorted(METHODS.values(), key=lambda record: record.notebook):
        notebook, method = record.number, record.key
        variants = record.variants or study.variants
        curve = curve_variant(variants)
        variants = evaluation.protocols(variants)
        curve_budget = ((epochs[curve], curve),)
        for name in study.datasets:
            side = _side(name, profile)
            for ipc in study.ipcs:
                n = ipc * len(CLASS_NAMES[name])
                floor_variants = [v for v in variants if (name, ipc, v) not in floors_listed]
                floors_listed |= {(name, ipc, v) for v in floor_variants}
                units += _evaluations(notebook, f"random real {name} ipc{ipc}", name, side, "ConvNet", n,
                                      floor_runs, tuple((epochs[v], v) for v in floor_variants))
                for init in study.inits:
                    config = profile.method_config(method, name, ipc, init)
                    units += _distillation(notebook, method, name, side, ipc, init, config)
                    units += _evaluations(notebook, f"{method} {name} ipc{ipc} {init}", name, side, "ConvNet", n,
                                          evaluation.n_models, tuple((epochs[v], v) for v in variants))
                    if evaluation.curve_points:
                        units += _evaluations(notebook, f"curve {method} {name} ipc{ipc} {init}", name, side,
                                              "ConvNet", n, curve_runs, curve_budget)
    units += _transfer_units(profile) + _nas_units(profile)
    mhist = profile.mhist
    units.append(_train_units("05", "baseline MHIST", "MHIST", mhist.im_size, mhist.architecture, SHAPES["MHIST"][2],
                              1, mhist.baseline_epochs))
    also = tuple((epochs[p], p) for p in evaluation.also if p != "dsa")
    for ipc in mhist.ipcs:
        units += _evaluations("05", f"random real MHIST ipc{ipc}", "MHIST", mhist.im_size, mhist.architecture,
                              2 * ipc, floor_networks(mhist.n_models, evaluation.floor_subsets),
                              ((mhist.eval_epochs, "dsa"), *also))
        for method in METHODS:
            for init in mhist.inits:
                units += _distillation("05", method, "MHIST", mhist.im_size, ipc, init,
                                       mhist.method_config(method, ipc, init))
                units += _evaluations("05", f"{method} MHIST ipc{ipc} {init}", "MHIST", mhist.im_size,
                                      mhist.architecture, 2 * ipc, mhist.n_models + curve_runs,
                                      ((mhist.eval_epochs, "dsa"),))
                units += _evaluations("05", f"{method} MHIST ipc{ipc} {init}", "MHIST", mhist.im_size,
                                      mhist.architecture, 2 * ipc, mhist.n_models, also)
    return _unique(units)


def _transfer_units(profile: Profile) -> list[Unit]:
    """03: per (dataset, ipc, architecture), the sets its grids train on it (the random-real floor and each
    method's set of each init the study distils) as one training unit."""
    arch, units = profile.cross_arch, []
    candidates = [(None, "-"), *((method, init) for method in METHODS for init in profile.study.inits)]
    for name in arch.union("datasets"):
        for ipc in arch.union("ipcs"):
            for architecture in arch.architectures:
                sets = sum(architecture in arch.architectures_for(m, name, ipc, init) for m, init in candidates)
                if sets:
                    units += _evaluations("03", f"{sets} sets on {architecture} {name} ipc{ipc}", name,
                                          _side(name, profile), architecture, ipc * len(CLASS_NAMES[name]),
                                          sets * arch.n_models, ((arch.budget(architecture)[0], "plain"),))
    return units


def _nas_units(profile: Profile) -> list[Unit]:
    """04: per search and candidate, the full-data runs at the search's budget and at twice its epochs, and the
    networks trained on the distilled set."""
    units = []
    for search in profile.nas.searches:
        side, images = _side(search.dataset, profile), search.full_train_images or SHAPES[search.dataset][2]
        for candidate in search.candidates:
            what = f"NAS {search.name} {candidate}"
            units += [_train_units("04", f"{what} full data ({epochs} epochs)", search.dataset, side, candidate,
                                   images, seeds, epochs)
                      for epochs, seeds in ((search.full_epochs, search.full_seeds),
                                            (2 * search.full_epochs, search.longer_seeds))]
            units += _evaluations("04", f"{what} distilled", search.dataset, side, candidate,
                                  search.ipc * len(CLASS_NAMES[search.dataset]), search.n_models,
                                  ((search.distilled_epochs, "plain"),))
    return units


def _unique(units: list[Unit]) -> list[Unit]:
    """Drop repeated shared units (expert buffers): one per dataset and configuration, shared by every set."""
    seen, kept = set(), []
    for unit in units:
        key = (unit.what, unit.architecture, unit.images, unit.runs, unit.steps)
        if unit.shared and key in seen:
            continue
        seen.add(key)
        kept.append(unit)
    return kept


def check(unit: Unit) -> None:
    """Raise the error the real run would raise on this unit's configuration, without computing anything."""
    channels, classes = SHAPES[unit.dataset][0], len(CLASS_NAMES[unit.dataset])
    with torch.device("meta"):
        net = get_network(unit.architecture, channels, classes, unit.im_size)
    if unit.method is None:
        return
    try:
        METHODS[unit.method].check(unit.config, unit.images, net, channels * unit.im_size ** 2)
    except ValueError as err:
        raise ValueError(f"{unit.what}: {err}") from err


def _fake_data(unit: Unit, per_class: int) -> Dataset:
    channels, classes = SHAPES[unit.dataset][0], len(CLASS_NAMES[unit.dataset])
    g = torch.Generator().manual_seed(0)
    y = torch.arange(classes).repeat_interleave(per_class)
    x = torch.randn(len(y), channels, unit.im_size, unit.im_size, generator=g)
    return Dataset(unit.dataset, x, y, x[:classes].clone(), y[:classes].clone(), CLASS_NAMES[unit.dataset],
                   [0.0] * channels, [1.0] * channels)


# torch.compile recompiles for dynamic shapes when a step meets a new shape, which can happen on the second or third
# call (a DM MNIST step timed after one warm-up took 4.97 s against 1.35 s steady; DM MHIST ipc 10 still took 5.5 s
# on its third call, and two compiling calls in a row can take the same time), so a step is timed at least
# MIN_TIMED_CALLS times, and again while its last call was clearly the fastest; the fastest call counts.
MIN_TIMED_CALLS = 3
MAX_TIMED_CALLS = 5
AGREEMENT = 0.8   # a call is "clearly the fastest" when it takes less than this fraction of every earlier one


def _timed(call: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call, with the device's queued work finished before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _measured(step: Callable[[], object], device: torch.device, warm_up: bool = True) -> tuple[float, float]:
    """Steady seconds (the fastest timed call) and peak MiB of `step`, after one warm-up call unless `warm_up` is
    False (a step whose shapes an earlier measurement has already compiled)."""
    if warm_up:
        step()
    timings: list[float] = []
    with PeakMemory(device) as memory:
        while len(timings) < MAX_TIMED_CALLS:
            timings.append(_timed(step, device))
            if len(timings) >= MIN_TIMED_CALLS and timings[-1] >= AGREEMENT * min(timings[:-1]):
                break
    return min(timings), memory.peak_mib


# A training unit is timed as a run of 1 step and of 1 + EXTRA_STEPS steps: their difference is the cost of a step.
EXTRA_STEPS = 3


def _train_step(unit: Unit, device: torch.device, precision: str) -> tuple[float, float, float]:
    """Seconds of a run's first step (with the run's fixed cost), of each further step, and peak MiB."""
    data = _fake_data(unit, math.ceil(unit.batch_size / len(CLASS_NAMES[unit.dataset])))
    net = get_network(unit.architecture, data.channels, data.num_classes, data.im_size).to(device)
    x, y = data.x_train[:unit.batch_size].to(device), data.y_train[:unit.batch_size].to(device)
    augment = DSA(strategy_for(unit.dataset), seed=0, device=device) if unit.dsa else None

    def run(steps: int) -> Callable[[], object]:
        return lambda: train(net, x, y, epochs=steps, batch_size=unit.batch_size, augment=augment,
                             precision=precision)

    first, peak = _measured(run(1), device)
    longer, _ = _measured(run(1 + EXTRA_STEPS), device, warm_up=False)
    step = (longer - first) / EXTRA_STEPS
    return first, step if step > 0 else longer / (1 + EXTRA_STEPS), peak


def _distill_step(unit: Unit, device: torch.device, precision: str) -> tuple[float, float, float]:
    """Seconds of the first and of each further iteration (the same: a distillation has no fixed cost), peak MiB:
    each configuration of the method's `timing` is timed and weighted, never projected below the first."""
    per_class = max(unit.images, getattr(unit.config, "real_batch", 0)) + 1
    data = _fake_data(unit, per_class)
    task = DistillTask(unit.dataset, unit.images, "noise")
    record = METHODS[unit.method]
    context = RunContext(0, device, precision)
    measured = []
    for timed in record.timing(unit.config, unit.images):
        distiller = record.distiller(data, task, timed.config, context, **record.stand_ins(data, timed.config))
        measured.append((timed, *_measured(distiller.step, device)))
    first_seconds, first_peak = measured[0][1:]
    seconds = max(first_seconds, sum(timed.time_weight * s for timed, s, _ in measured))
    peak = max(first_peak, sum(timed.memory_weight * m for timed, _, m in measured))
    return seconds, seconds, peak


def device_memory_mib(device: torch.device) -> float:
    """Memory a run on `device` can use: the GPU's total memory, or the RAM available now."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    return psutil.virtual_memory().available / 2**20


def dry_run(profile: Profile, device: torch.device, measure: bool = False,
            notebooks: tuple[str, ...] | None = None, match: str | None = None) -> pd.DataFrame:
    """One row per unit (of `notebooks`, named to match the regular expression `match`, where given):
    configuration check, and with `measure` the step time, peak memory and projection."""
    precision = resolve_precision(profile.precision, device)
    limit = device_memory_mib(device)
    rows, measured = [], {}
    for unit in profile_units(profile):
        if (notebooks and unit.notebook not in notebooks) or (match and not re.search(match, unit.what)):
            continue
        row = {"notebook": unit.notebook, "unit": unit.what, "network": unit.architecture, "shape": unit.shape,
               "runs": unit.runs, "steps per run": unit.steps, "check": "ok"}
        try:
            check(unit)
        except (ValueError, RuntimeError) as err:
            row["check"] = f"FAILS: {err}"
        if measure and row["check"] == "ok":
            key = (unit.method, unit.dataset, unit.im_size, unit.architecture, unit.images, unit.batch_size,
                   unit.dsa, str(unit.config))
            if key not in measured:
                step = _distill_step if unit.method else _train_step
                measured[key] = step(unit, device, precision)
            first, seconds, peak = measured[key]
            hours = unit.runs * (first + (unit.steps - 1) * seconds) / 3600
            row.update({"first step (s)": round(first, 4), "seconds per step": round(seconds, 4),
                        "peak memory (MiB)": round(peak), "projected hours": round(hours, 3)})
            if peak > limit:
                row["check"] = f"FAILS: needs {peak:.0f} MiB, the device has {limit:.0f} MiB"
        rows.append(row)
    return pd.DataFrame(rows)


def hours_per_notebook(table: pd.DataFrame) -> pd.Series:
    """The projected hours of a measured `dry_run` table, summed per notebook."""
    return table.groupby("notebook")["projected hours"].sum()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the table and the projected total; non-zero exit if a unit would fail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=sorted(PROFILES))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--measure", action="store_true", help="also time one step of every distinct unit")
    parser.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,06")
    parser.add_argument("--match", default=None, help="only units whose name matches this regular expression")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    table = dry_run(PROFILES[args.profile], device, args.measure, tuple(args.only.split(",")) if args.only else None,
                    args.match)
    print(table.to_markdown(index=False))
    if args.measure:
        per_notebook = hours_per_notebook(table).round(2)
        print("\nprojected hours per notebook:", per_notebook.to_dict(), f"total {per_notebook.sum():.1f} h on",
              device, f"(peak {table['peak memory (MiB)'].max():.0f} MiB)")
    failures = table[table["check"] != "ok"]
    for _, row in failures.iterrows():
        print(f"{row['notebook']} {row['unit']}: {row['check']}", file=sys.stderr)
    return 1 if len(failures) else 0


if __name__ == "__main__":
    sys.exit(main())
