"""Distil-and-evaluate building blocks shared by notebooks 02, 05, 06 and 07: distil or reuse a set, evaluate
it (with and/or without DSA) against the random-real floor of the same size, and tabulate."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from utility import SyntheticEvaluation
from utils import ledger
from utils.augment import DSA, strategy_for
from utils.data import Dataset
from utils.digest import config_hash, tensor_digest, versioned
from utils.distill import METHODS, DistillTask, build_set, distill_key
from utils.distill.base import SYNTHETIC, load_matching, save_set
from utils.executor import LOCAL, Handle, Pool
from utils.notebook import NotebookRun
from utils.paths import cache_dir, read_cache, write_cache
from utils.plots import accuracy_curves, loss_curves, synthetic_before_after
from utils.profiles import PROTOCOLS, EvaluationSettings
from utils.recipe import derive
from utils.results import MACHINE_COLUMN, std_column
from utils.synthetic import SyntheticSet, initial_images, random_real_subset, synthetic_path
from utils.zca import zca_whiten

FLOOR = "random real"
FULL_DATA = "full training set"   # the reference row of a network trained on the whole training set
EVALUATION = "evaluation"   # the unit records' kind
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "auc": "AUC"}


@dataclass
class SetResult:
    """One evaluated training set (distilled or the random-real floor)."""

    method: str
    dataset: str
    ipc: int
    init: str
    evaluations: dict[str, SyntheticEvaluation]
    iterations: int = 0
    distill_seconds: float = 0.0
    peak_memory_mib: float = 0.0
    config: dict = field(default_factory=dict)
    curve: dict[int, SyntheticEvaluation] = field(default_factory=dict)   # iteration -> evaluation of its snapshot
    machine: str = ""   # where its units ran (the distillation's machine first)

    def row(self, metrics: tuple[str, ...] = ("accuracy",)) -> dict:
        """One table row: each metric of each evaluation protocol (`PROTOCOLS`) as mean and std (%, two columns),
        then costs (of the first protocol's networks)."""
        row = {"method": self.method, "dataset": self.dataset, "ipc": self.ipc, "init": self.init,
               "iterations": self.iterations}
        for variant, result in self.evaluations.items():
            for metric in metrics:
                column = f"{METRIC_LABELS[metric]}{PROTOCOLS[variant].label} (%)"
                row[column] = round(100 * result.mean(metric), 2)
                row[std_column(column)] = round(100 * result.std(metric), 2)
        first = next(iter(self.evaluations.values()))
        row.update({"models": len(first.runs), "distillation time (s)": round(self.distill_seconds, 1),
                    "peak memory (MiB)": round(self.peak_memory_mib),
                    "train time per model (s)": round(sum(first.train_seconds) / len(first.train_seconds), 1)})
        if self.machine:
            row[MACHINE_COLUMN] = self.machine
        return row


def _evaluation_key(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                    architecture: str, lr: float | None, epochs: int | None, n_models: int | None,
                    schedule: str = "step") -> dict:
    """What determines one evaluation: the training set's content and every evaluation setting (the schedule only
    where it is not the default step, the network once, and not which extra protocols a study adds). Its cache file
    hashes this with the torch version; its unit record, without precision and device class."""
    settings = {k: v for k, v in asdict(run.profile.evaluation).items() if k not in ("also", "architecture")}
    return {"images": tensor_digest(x, y), "dataset": data.name, "im_size": list(data.im_size),
            "test": tensor_digest(data.x_test[:64], data.y_test), "dsa": dsa, "architecture": architecture,
            "lr": lr, "epochs": epochs, "n_models": n_models, "seed": run.seed, "precision": run.precision,
            "evaluation": settings, "profile": run.profile.name, "device_class": run.device.type,
            **({"schedule": schedule} if schedule != "step" else {})}


def _evaluate(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
              **kwargs) -> SyntheticEvaluation:
    """One evaluation (a unit: its networks share one DSA stream, so they run together)."""
    augment = DSA(strategy_for(data.name), seed=run.seed, device=run.device) if dsa else None
    return run.evaluate(x, y, data, augment=augment, **kwargs)


@dataclass
class PendingEvaluation:
    """An evaluation found in the results' unit records or the cache (`found`) or submitted as a unit (`handle`,
    whose result is written to both the moment it finishes); `machine`: where it was computed."""

    found: SyntheticEvaluation | None = None
    handle: Handle | None = None
    machine: str = ""

    def result(self) -> SyntheticEvaluation:
        """The evaluation, waiting for its unit if it was submitted."""
        return self.found if self.found is not None else self.handle.result()


def submit_evaluation(pool: Pool, run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                      architecture: str | None = None, lr: float | None = None, epochs: int | None = None,
                      n_models: int | None = None, schedule: str = "step") -> PendingEvaluation:
    """`run.evaluate` as a unit of `pool`, unless the results' unit records (at this code digest) or the cache
    (keyed by the training set's content and every evaluation setting) already hold it; `architecture` None: the
    profile's evaluation network."""
    architecture = architecture or run.profile.evaluation.architecture
    settings = {"architecture": architecture, "lr": lr, "epochs": epochs, "n_models": n_models, "schedule": schedule}
    key = _evaluation_key(run, x, y, data, dsa=dsa, **settings)
    unit = ledger.recorded(EVALUATION, key)
    if unit is not None:
        return PendingEvaluation(_evaluation_from_dict(unit["value"]), machine=unit["stamp"]["machine"])
    path = cache_dir() / "evaluations" / f"{config_hash(versioned(key))}.json"
    here = ledger.current().machine if ledger.current() else ""
    saved = read_cache(path, lambda p: _evaluation_from_dict(json.loads(p.read_text())))
    if saved is not None:
        ledger.record(EVALUATION, key, asdict(saved), sum(saved.train_seconds))
        return PendingEvaluation(saved, machine=here)

    def write(evaluation: SyntheticEvaluation) -> None:
        write_cache(path, partial(Path.write_text, data=json.dumps(asdict(evaluation))))
        ledger.record(EVALUATION, key, asdict(evaluation), sum(evaluation.train_seconds))

    return PendingEvaluation(handle=pool.submit(_evaluate, run, x, y, data, dsa=dsa, **settings).when_done(write),
                             machine=here)


def evaluate_cached(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                    architecture: str | None = None, lr: float | None = None, epochs: int | None = None,
                    n_models: int | None = None) -> SyntheticEvaluation:
    """`submit_evaluation` run in this process."""
    with LOCAL.pool("evaluation", unit="unit") as pool:
        return submit_evaluation(pool, run, x, y, data, dsa=dsa, architecture=architecture, lr=lr, epochs=epochs,
                                 n_models=n_models).result()


def _evaluation_from_dict(saved: dict) -> SyntheticEvaluation:
    return SyntheticEvaluation(saved["architecture"], saved["runs"], saved["train_seconds"])


def protocol_settings(protocol: str, lr: float | None = None, **settings) -> dict:
    """The settings of `submit_evaluation` under the named protocol (`PROTOCOLS`): its DSA and schedule, and its
    own epochs and lr where it fixes them, else `lr` (the set's) and the study's `settings`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown evaluation protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    chosen = PROTOCOLS[protocol]
    fixed = {"epochs": chosen.epochs, "lr": chosen.lr}
    return {**settings, "lr": lr, **{k: v for k, v in fixed.items() if v is not None}, "dsa": chosen.dsa,
            "schedule": chosen.schedule}


def submit_variants(pool: Pool, run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset,
                    lr: float | None = None, variants: tuple[str, ...] = ("plain", "dsa"),
                    **settings) -> dict[str, PendingEvaluation]:
    """One training set evaluated under each named protocol (`PROTOCOLS`: 'plain', 'dsa', 'course'), as units of
    `pool`."""
    return {variant: submit_evaluation(pool, run, x, y, data, **protocol_settings(variant, lr, **settings))
            for variant in variants}


def merge_evaluations(parts: list[SyntheticEvaluation]) -> SyntheticEvaluation:
    """One evaluation holding the networks of several (e.g. the floor's random subsets)."""
    return SyntheticEvaluation(parts[0].architecture, [r for p in parts for r in p.runs],
                               [t for p in parts for t in p.train_seconds])


def snapshot_iterations(iterations: int, points: int) -> tuple[int, ...]:
    """`points` evenly spaced iterations strictly inside a run of `iterations` (where a curve is sampled)."""
    return tuple(sorted({round(iterations * k / (points + 1)) for k in range(1, points + 1)} - {0, iterations}))


def evaluation_data(synthetic: SyntheticSet, data: Dataset) -> Dataset:
    """The dataset a set must be evaluated against: ZCA-whitened when the set was distilled in that space."""
    if not synthetic.config.get("method_config", {}).get("zca"):
        return data
    return derive(zca_whiten(data), data, "zca")


@dataclass(frozen=True)
class SetUnit:
    """One set of a study: the random-real floor (`method` None) or a distillation with `config`."""

    data: Dataset
    ipc: int
    method: str | None = None
    init: str = "-"
    config: Any = None


def curve_sets(run: NotebookRun, unit: SetUnit, synthetic: SyntheticSet,
               data: Dataset) -> dict[int, tuple[torch.Tensor, float | None]]:
    """The images and lr of each point of a set's accuracy-vs-iterations curve before its final one: iteration 0
    (the initial images every distiller starts from, at the lr it starts with: MTT's `lr_teacher`, else the
    evaluation lr) and every snapshot; none for a set without snapshots (no curve)."""
    if not synthetic.snapshots:
        return {}
    initial, _ = initial_images(data, unit.ipc, unit.init, torch.Generator().manual_seed(run.seed))
    start_lr = synthetic.config.get("method_config", {}).get("lr_teacher")
    start_lr = None if start_lr == run.profile.evaluation.lr else start_lr   # the same evaluation, one cache entry
    return {0: (initial, start_lr), **{it: (snap["images"], snap["lr"]) for it, snap in synthetic.snapshots.items()}}


SCHEDULE_WORDS = {"step": "lr/10 at half the epochs", "cosine": "cosine annealing"}


def protocol_words(name: str, settings: EvaluationSettings, epochs: int | None = None) -> str:
    """How the named protocol (`PROTOCOLS`) trains its networks, in words: epochs, augmentation, batch, lr,
    schedule and whose protocol it is; `epochs`: a study's own budget where it sets one."""
    chosen = PROTOCOLS[name]
    trained = chosen.epochs or epochs or (settings.dsa_epochs if chosen.dsa else settings.epochs)
    lr = f"lr {chosen.lr:g}" if chosen.lr else f"lr {settings.lr:g} (an MTT set: its learned lr)"
    return (f"{trained} epochs {'with DSA' if chosen.dsa else 'without augmentation'}, batch {settings.batch_size}, "
            f"SGD from {lr}, {SCHEDULE_WORDS[chosen.schedule]} ({chosen.source})")


def protocol_caption(run: NotebookRun, variants: tuple[str, ...], epochs: int | None = None) -> str:
    """What each protocol's accuracy column is (`protocol_words`), for a table caption."""
    return "; ".join(f"'{METRIC_LABELS['accuracy']}{PROTOCOLS[name].label}': "
                     f"{protocol_words(name, run.profile.evaluation, epochs)}" for name in variants)


def curve_variant(variants) -> str:
    """The variant a set's accuracy-vs-iterations curve is evaluated with: DSA wherever the study uses it."""
    return "dsa" if "dsa" in variants else "plain"


def floor_per_subset(n_models: int, subsets: int) -> int:
    """Networks trained on each of the floor's `subsets` random subsets, so that at least `n_models` are trained."""
    return -(-n_models // subsets)


def floor_networks(n_models: int, subsets: int) -> int:
    """Networks the floor trains in all: `floor_per_subset` on each of its `subsets` random subsets."""
    return subsets * floor_per_subset(n_models, subsets)


def submit_floor(pool: Pool, run: NotebookRun, data: Dataset, ipc: int, n_models: int | None = None,
                 **evaluation) -> list[dict[str, PendingEvaluation]]:
    """The random-real floor: `n_models` networks spread over the profile's `floor_subsets` different random
    subsets of `ipc` real images per class, each subset evaluated under every variant (`merged_floor` joins them)."""
    subsets = run.profile.evaluation.floor_subsets
    per_subset = floor_per_subset(n_models or run.profile.evaluation.n_models, subsets)
    return [submit_variants(pool, run, *random_real_subset(data, ipc, torch.Generator().manual_seed(run.seed + j)),
                            data, n_models=per_subset, **evaluation) for j in range(subsets)]


def merged_floor(parts: list[dict[str, PendingEvaluation]]) -> dict[str, SyntheticEvaluation]:
    """Per variant, the networks of every random subset of a floor in one evaluation."""
    return {variant: merge_evaluations([part[variant].result() for part in parts]) for variant in parts[0]}


def _curve_settings(evaluation: dict) -> dict:
    """The settings of `submit_evaluation` among a study's evaluation settings (variants and n_models dropped)."""
    return {k: v for k, v in evaluation.items() if k in ("architecture", "epochs")}


def study_sets(run: NotebookRun, units: list[SetUnit], prefix: str, desc: str,
               **evaluation) -> list[tuple[SetResult, SyntheticSet | None]]:
    """Distil (or reuse) every set and evaluate it like its floor, all as units of `run.executor` under one
    progress bar; each distilled set is saved and its before/after figure drawn on the driver.
    Returns (result, synthetic set or None for a floor) in the order of `units`."""
    settings = run.profile.evaluation
    variants = evaluation.get("variants", ("plain", "dsa"))
    curve = curve_variant(variants)
    evaluation = {**evaluation, "variants": settings.protocols(variants)}
    with run.executor.pool(desc, unit="unit") as pool:
        # 1. every floor's evaluations, and every distillation whose set is not saved with this configuration
        floors = {i: submit_floor(pool, run, unit.data, unit.ipc, **evaluation)
                  for i, unit in enumerate(units) if unit.method is None}
        distilled = {i: unit for i, unit in enumerate(units) if unit.method is not None}
        paths = {i: synthetic_path(run.writer.root, unit.method, unit.data.name, unit.ipc, unit.init)
                 for i, unit in distilled.items()}
        tasks = {i: DistillTask(unit.data.name, unit.ipc, unit.init) for i, unit in distilled.items()}
        keys = {i: distill_key(unit.method, unit.data, tasks[i], unit.config, run.context, profile=run.profile.name,
                               snapshots_at=snapshot_iterations(unit.config.iterations, settings.curve_points))
                for i, unit in distilled.items()}
        saved = {i: load_matching(paths[i], keys[i]) for i in distilled}
        building = {i: pool.submit(build_set, unit.method, unit.data, tasks[i], unit.config, keys[i], run.context)
                    .when_done(partial(save_set, paths[i], keys[i]))
                    for i, unit in distilled.items() if saved[i] is None}

        # 2. each set, in order: saved, drawn, and its evaluations (final and along its curve) submitted
        sets: dict[int, SyntheticSet] = {}
        finals: dict[int, dict[str, PendingEvaluation]] = {}
        curves: dict[int, dict[int, PendingEvaluation]] = {}
        for i, unit in distilled.items():
            reused = saved[i] is not None
            synthetic = saved[i] if reused else building[i].result()
            print(f"{unit.method} {unit.data.name} ipc{unit.ipc} {unit.init}: "
                  f"{'reused the saved set' if reused else 'distilled'}")
            _draw_before_after(run, unit, synthetic, prefix)
            data = evaluation_data(synthetic, unit.data)
            curves[i] = {iteration: submit_evaluation(pool, run, images, synthetic.labels, data,
                                                      **protocol_settings(curve, lr, n_models=settings.curve_models,
                                                                          **_curve_settings(evaluation)))
                         for iteration, (images, lr) in curve_sets(run, unit, synthetic, data).items()}
            finals[i] = submit_variants(pool, run, synthetic.images, synthetic.labels, data, lr=synthetic.lr,
                                        **evaluation)
            sets[i] = synthetic

        # 3. one result per unit, in order
        results: list[tuple[SetResult, SyntheticSet | None]] = []
        for i, unit in enumerate(units):
            if unit.method is None:
                machine = join_machines(p.machine for part in floors[i] for p in part.values())
                results.append((SetResult(FLOOR, unit.data.name, unit.ipc, "-", merged_floor(floors[i]),
                                          machine=machine), None))
                continue
            config = sets[i].config
            evaluations = {variant: pending.result() for variant, pending in finals[i].items()}
            curve_points = {iteration: curves[i][iteration].result() for iteration in sorted(curves[i])}
            results.append((SetResult(METHODS[unit.method].label, unit.data.name, unit.ipc, unit.init, evaluations,
                                      config["iterations_done"], config["wall_seconds"], config["peak_memory_mib"],
                                      config, curve_points, join_machines([ledger.machine_of(SYNTHETIC, keys[i]), *(
                                          p.machine for p in [*finals[i].values(), *curves[i].values()])])),
                            sets[i]))
    return results


def join_machines(machines) -> str:
    """Distinct machines in first-seen order, joined ('' when none is known)."""
    return "; ".join(dict.fromkeys(m for m in machines if m))


def _draw_before_after(run: NotebookRun, unit: SetUnit, synthetic: SyntheticSet, prefix: str) -> None:
    """The set's initial images beside its distilled ones, saved as a figure."""
    before, _ = initial_images(unit.data, unit.ipc, unit.init, torch.Generator().manual_seed(run.seed))
    fig = synthetic_before_after(before, synthetic.images, unit.data, f"{METHODS[unit.method].label}: "
                                 f"{unit.data.name}, ipc {unit.ipc}, {unit.init} init")
    run.writer.figure(fig, f"{prefix}_{unit.data.name}_ipc{unit.ipc}_{unit.init}_images")


def curve_table(results: list[SetResult], metric: str = "accuracy") -> pd.DataFrame:
    """Accuracy of each distilled set after part of its iterations and at the end (the curve the budget buys)."""
    rows = []
    for r in results:
        if not r.curve:
            continue
        final = r.evaluations.get("dsa") or next(iter(r.evaluations.values()))
        for iteration, result in [*r.curve.items(), (r.iterations, final)]:
            rows.append({"method": r.method, "dataset": r.dataset, "ipc": r.ipc, "init": r.init,
                         "iteration": iteration, f"{METRIC_LABELS[metric]} (%)": round(100 * result.mean(metric), 2),
                         "std (%)": round(100 * result.std(metric), 2), "models": len(result.runs)})
    return pd.DataFrame(rows)


def write_curves(run: NotebookRun, results: list[SetResult], prefix: str, metric: str = "accuracy") -> None:
    """Save the accuracy-vs-iterations table and one figure per dataset (lines per ipc and init)."""
    table = curve_table(results, metric)
    if table.empty:
        return
    column = f"{METRIC_LABELS[metric]} (%)"
    run.writer.table(table, f"{prefix}_curves", caption=f"{column} of a ConvNet trained on the set after part of "
                                                        f"the distillation ({run.profile.name} profile)")
    floors = {(r.dataset, r.ipc): r for r in results if r.method == FLOOR}
    for dataset, rows in table.groupby("dataset", sort=False):
        floor = {ipc: floors[dataset, ipc] for ipc in rows["ipc"].unique() if (dataset, ipc) in floors}
        fig = accuracy_curves(rows, column, {f"random real, ipc {ipc}": (
            100 * next(iter(f.evaluations.values())).mean(metric),
            100 * next(iter(f.evaluations.values())).std(metric)) for ipc, f in floor.items()})
        fig.axes[0].set_title(f"{', '.join(rows['method'].unique())} on {dataset}")
        run.writer.figure(fig, f"{prefix}_{dataset}_accuracy_vs_iterations")


def distillation_study(run: NotebookRun, method: str, prefix: str,
                       variants: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Distil and evaluate every (dataset, ipc, init) of the profile's study under each evaluation variant
    (`variants`, else the method's own, else the profile's); save the table and figures."""
    study, record = run.profile.study, METHODS[method]
    variants = variants or record.variants or study.variants
    units = []
    for name in study.datasets:
        data = run.load(name)
        for ipc in study.ipcs:
            units.append(SetUnit(data, ipc))
            units += [SetUnit(data, ipc, method, init, run.profile.method_config(method, name, ipc, init))
                      for init in study.inits]
    studied = study_sets(run, units, prefix, f"{method} study", variants=variants)
    results = [result for result, _ in studied]
    for name in study.datasets:
        fig = loss_curves({f"ipc{unit.ipc} {unit.init}": synthetic.config["losses"]
                           for unit, (_, synthetic) in zip(units, studied)
                           if synthetic is not None and unit.data.name == name})
        fig.axes[0].set_title(f"{record.label} on {name}")
        run.writer.figure(fig, f"{prefix}_{name}_loss")
    write_curves(run, results, prefix)
    table = pd.DataFrame([r.row() for r in results])
    protocols = protocol_caption(run, run.profile.evaluation.protocols(variants))
    run.writer.table(table, prefix, caption=f"{record.label}: {run.profile.evaluation.architecture} trained from "
                                            f"scratch on each set ({run.profile.name} profile); {protocols}")
    return table
