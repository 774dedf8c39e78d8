"""Distil-and-evaluate building blocks shared by notebooks 02, 05, 06 and 07: distil or reuse a set, evaluate
it (with and/or without DSA) against the random-real floor of the same size, and tabulate."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from utility import SyntheticEvaluation
from utils.augment import DSA, strategy_for
from utils.data import Dataset
from utils.distill import METHOD_LABELS, DistillTask, build_set, distill_key
from utils.distill.base import config_hash, load_matching, tensor_digest, versioned
from utils.distill.experts import zca_whiten
from utils.executor import LOCAL, Pool, derive
from utils.notebook import NotebookRun
from utils.paths import cache_dir, read_cache, write_cache
from utils.plots import accuracy_curves, loss_curves, synthetic_before_after
from utils.results import std_column
from utils.synthetic import SyntheticSet, initial_images, random_real_subset, synthetic_path

FLOOR = "random real"
VARIANTS = {"plain": False, "dsa": True}   # evaluation variant -> train with DSA augmentation
VARIANT_LABELS = {"plain": "", "dsa": " with DSA"}
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

    def row(self, metrics: tuple[str, ...] = ("accuracy",)) -> dict:
        """One table row: each metric of each evaluation variant as mean and std (%, two columns), then costs."""
        row = {"method": self.method, "dataset": self.dataset, "ipc": self.ipc, "init": self.init,
               "iterations": self.iterations}
        for variant, result in self.evaluations.items():
            for metric in metrics:
                column = f"{METRIC_LABELS[metric]}{VARIANT_LABELS[variant]} (%)"
                row[column] = round(100 * result.mean(metric), 2)
                row[std_column(column)] = round(100 * result.std(metric), 2)
        first = next(iter(self.evaluations.values()))
        row.update({"models": len(first.runs), "distillation time (s)": round(self.distill_seconds, 1),
                    "peak memory (MiB)": round(self.peak_memory_mib),
                    "train time per model (s)": round(sum(first.train_seconds) / len(first.train_seconds), 1)})
        return row


def _evaluation_path(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                     architecture: str, lr: float | None, epochs: int | None, n_models: int | None) -> Path:
    """The cache file of one evaluation, keyed by the training set's content and every evaluation setting."""
    key = {"images": tensor_digest(x, y), "dataset": data.name, "im_size": list(data.im_size),
           "test": tensor_digest(data.x_test[:64], data.y_test), "dsa": dsa, "architecture": architecture, "lr": lr,
           "epochs": epochs, "n_models": n_models, "seed": run.seed, "precision": run.precision,
           "evaluation": asdict(run.profile.evaluation), "profile": run.profile.name,
           "device_class": run.device.type}
    return cache_dir() / "evaluations" / f"{config_hash(versioned(key))}.json"


def _evaluate(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
              **kwargs) -> SyntheticEvaluation:
    """One evaluation (a unit: its networks share one DSA stream, so they run together)."""
    augment = DSA(strategy_for(data.name), seed=run.seed, device=run.device) if dsa else None
    return run.evaluate(x, y, data, augment=augment, **kwargs)


def submit_evaluation(pool: Pool, run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                      done: Callable[[SyntheticEvaluation], None], architecture: str = "ConvNet",
                      lr: float | None = None, epochs: int | None = None, n_models: int | None = None) -> None:
    """`evaluate_cached` as a unit of `pool`: `done(result)` at once when cached, else when the unit finishes
    (after the driver has written it to the cache)."""
    settings = {"architecture": architecture, "lr": lr, "epochs": epochs, "n_models": n_models}
    path = _evaluation_path(run, x, y, data, dsa=dsa, **settings)
    saved = read_cache(path, lambda p: _evaluation_from_json(p.read_text()))
    if saved is not None:
        done(saved)
        return

    def finish(result: SyntheticEvaluation) -> None:
        write_cache(path, lambda p: p.write_text(json.dumps(asdict(result))))
        done(result)

    pool.submit(_evaluate, run, x, y, data, dsa=dsa, done=finish, **settings)


def evaluate_cached(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                    architecture: str = "ConvNet", lr: float | None = None, epochs: int | None = None,
                    n_models: int | None = None) -> SyntheticEvaluation:
    """`run.evaluate`, cached by the training set's content and every evaluation setting (`submit_evaluation`
    run in this process)."""
    found: list[SyntheticEvaluation] = []
    with LOCAL.pool("evaluation", unit="unit") as pool:
        submit_evaluation(pool, run, x, y, data, dsa=dsa, done=found.append, architecture=architecture, lr=lr,
                          epochs=epochs, n_models=n_models)
    return found[0]


def _evaluation_from_json(text: str) -> SyntheticEvaluation:
    saved = json.loads(text)
    return SyntheticEvaluation(saved["architecture"], saved["runs"], saved["train_seconds"])


def submit_variants(pool: Pool, run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset,
                    done: Callable[[dict[str, SyntheticEvaluation]], None], lr: float | None = None,
                    variants: tuple[str, ...] = ("plain", "dsa"), **kwargs) -> None:
    """Evaluate one training set under each variant ('plain', 'dsa') as units of `pool`; `done` gets them all."""
    found: dict[str, SyntheticEvaluation] = {}

    def collect(variant: str, result: SyntheticEvaluation) -> None:
        found[variant] = result
        if len(found) == len(variants):
            done({v: found[v] for v in variants})

    for v in variants:
        submit_evaluation(pool, run, x, y, data, dsa=VARIANTS[v], lr=lr, done=lambda r, v=v: collect(v, r), **kwargs)


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


def curve_variant(variants) -> str:
    """The variant a set's accuracy-vs-iterations curve is evaluated with: DSA wherever the study uses it."""
    return "dsa" if "dsa" in variants else "plain"


def floor_per_subset(n_models: int, subsets: int) -> int:
    """Networks trained on each of the floor's `subsets` random subsets, so that at least `n_models` are trained."""
    return -(-n_models // subsets)


def floor_networks(n_models: int, subsets: int) -> int:
    """Networks the floor trains in all: `floor_per_subset` on each of its `subsets` random subsets."""
    return subsets * floor_per_subset(n_models, subsets)


def study_sets(run: NotebookRun, units: list[SetUnit], prefix: str, desc: str,
               **evaluation) -> list[tuple[SetResult, SyntheticSet | None]]:
    """Distil (or reuse) every set and evaluate it like its floor, all as units of `run.executor` under one
    progress bar; a set is saved and its before/after figure drawn on the driver as soon as it is distilled.
    Returns (result, synthetic set or None for a floor) in the order of `units`."""
    out: list = [None] * len(units)
    curves: dict[int, dict[int, SyntheticEvaluation]] = {}
    ev = run.profile.evaluation
    curve = curve_variant(evaluation.get("variants", VARIANTS))
    with run.executor.pool(desc, unit="unit") as pool:
        for i, u in enumerate(units):
            if u.method is None:
                submit_floor(pool, run, u.data, u.ipc, done=lambda evs, i=i, u=u: out.__setitem__(
                    i, (SetResult(FLOOR, u.data.name, u.ipc, "-", evs), None)), **evaluation)
                continue
            task = DistillTask(u.data.name, u.ipc, u.init)
            key = distill_key(u.method, u.data, task, u.config, profile=run.profile.name, seed=run.seed,
                              device=run.device, precision=run.precision,
                              snapshots_at=snapshot_iterations(u.config.iterations, ev.curve_points))
            path = synthetic_path(run.writer.root, u.method, u.data.name, u.ipc, u.init)

            def distilled(synthetic: SyntheticSet, reused: bool, i: int = i, u: SetUnit = u, path: Path = path):
                if not reused:
                    synthetic.save(path)
                print(f"{u.method} {u.data.name} ipc{u.ipc} {u.init}: "
                      f"{'reused the saved set' if reused else 'distilled'}")
                before, _ = initial_images(u.data, u.ipc, u.init, torch.Generator().manual_seed(run.seed))
                fig = synthetic_before_after(before, synthetic.images, u.data,
                                             f"{METHOD_LABELS[u.method]}: {u.data.name}, ipc {u.ipc}, {u.init} init")
                run.writer.figure(fig, f"{prefix}_{u.data.name}_ipc{u.ipc}_{u.init}_images")
                cfg = synthetic.config
                curves[i] = {}
                for iteration, snap in synthetic.snapshots.items():
                    submit_evaluation(pool, run, snap["images"], synthetic.labels, evaluation_data(synthetic, u.data),
                                      dsa=VARIANTS[curve], lr=snap["lr"], n_models=ev.curve_models,
                                      **_single(evaluation),
                                      done=lambda r, i=i, it=iteration: curves[i].__setitem__(it, r))
                submit_variants(pool, run, synthetic.images, synthetic.labels, evaluation_data(synthetic, u.data),
                                lr=synthetic.lr, done=lambda evs: out.__setitem__(i, (SetResult(
                                    METHOD_LABELS[u.method], u.data.name, u.ipc, u.init, evs, cfg["iterations_done"],
                                    cfg["wall_seconds"], cfg["peak_memory_mib"], cfg), synthetic)), **evaluation)

            saved = load_matching(path, key)
            if saved is not None:
                distilled(saved, True)
            else:
                pool.submit(build_set, u.method, u.data, task, u.config, key, seed=run.seed, device=run.device,
                            precision=run.precision, done=lambda s, f=distilled: f(s, False))
    for i, curve in curves.items():
        out[i][0].curve = dict(sorted(curve.items()))
    return out


def _single(evaluation: dict) -> dict:
    """The settings of `submit_evaluation` among a study's evaluation settings (variants and n_models dropped)."""
    return {k: v for k, v in evaluation.items() if k in ("architecture", "epochs")}


def submit_floor(pool: Pool, run: NotebookRun, data: Dataset, ipc: int,
                 done: Callable[[dict[str, SyntheticEvaluation]], None], n_models: int | None = None,
                 **evaluation) -> None:
    """The random-real floor: `n_models` networks spread over the profile's `floor_subsets` different random
    subsets of `ipc` real images per class, merged per evaluation variant."""
    subsets = run.profile.evaluation.floor_subsets
    per_subset = floor_per_subset(n_models or run.profile.evaluation.n_models, subsets)
    parts: dict[int, dict[str, SyntheticEvaluation]] = {}

    def collect(j: int, evs: dict[str, SyntheticEvaluation]) -> None:
        parts[j] = evs
        if len(parts) == subsets:
            done({v: merge_evaluations([parts[k][v] for k in range(subsets)]) for v in evs})

    for j in range(subsets):
        x, y = random_real_subset(data, ipc, torch.Generator().manual_seed(run.seed + j))
        submit_variants(pool, run, x, y, data, done=lambda evs, j=j: collect(j, evs), n_models=per_subset,
                        **evaluation)


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
        fig.axes[0].set_title(f"{rows['method'].iloc[0]} on {dataset}")
        run.writer.figure(fig, f"{prefix}_{dataset}_accuracy_vs_iterations")


def distillation_study(run: NotebookRun, method: str, prefix: str,
                       variants: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Distil and evaluate every (dataset, ipc, init) of the profile's study under each evaluation variant;
    save the table and figures."""
    study = run.profile.study
    variants = variants or study.variants
    units = []
    for name in study.datasets:
        data = run.load(name)
        for ipc in study.ipcs:
            units.append(SetUnit(data, ipc))
            units += [SetUnit(data, ipc, method, init, run.profile.method_config(method, name, ipc))
                      for init in study.inits]
    done = study_sets(run, units, prefix, f"{method} study", variants=variants)
    results = [result for result, _ in done]
    for name in study.datasets:
        fig = loss_curves({f"ipc{u.ipc} {u.init}": synthetic.config["losses"]
                           for u, (_, synthetic) in zip(units, done) if synthetic is not None and u.data.name == name})
        fig.axes[0].set_title(f"{METHOD_LABELS[method]} on {name}")
        run.writer.figure(fig, f"{prefix}_{name}_loss")
    write_curves(run, results, prefix)
    table = pd.DataFrame([r.row() for r in results])
    run.writer.table(table, prefix, caption=f"{METHOD_LABELS[method]}: ConvNet trained from scratch on each set "
                                            f"({run.profile.name} profile)")
    return table

