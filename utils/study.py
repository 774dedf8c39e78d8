"""Distil-and-evaluate building blocks shared by notebooks 02, 05, 06 and 07: distil or reuse a set, evaluate
it (with and/or without DSA) against the random-real floor of the same size, and tabulate."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from utility import SyntheticEvaluation
from utils.augment import DSA, strategy_for
from utils.data import Dataset
from utils.distill import METHOD_LABELS, DistillTask, distill
from utils.distill.base import config_hash, tensor_digest
from utils.distill.experts import zca_whiten
from utils.notebook import NotebookRun
from utils.paths import cache_dir, read_cache, write_cache
from utils.plots import loss_curves, synthetic_before_after
from utils.synthetic import SyntheticSet, initial_images, random_real_subset

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

    def row(self, metrics: tuple[str, ...] = ("accuracy",)) -> dict:
        """One table row: each metric of each evaluation variant as 'mean ± std' (%), then costs."""
        row = {"method": self.method, "dataset": self.dataset, "ipc": self.ipc, "init": self.init,
               "iterations": self.iterations}
        for variant, result in self.evaluations.items():
            for metric in metrics:
                row[f"{METRIC_LABELS[metric]}{VARIANT_LABELS[variant]} (%)"] = result.summary(metric)
        first = next(iter(self.evaluations.values()))
        row.update({"models": len(first.runs), "distillation time (s)": round(self.distill_seconds, 1),
                    "peak memory (MiB)": round(self.peak_memory_mib),
                    "train time per model (s)": round(sum(first.train_seconds) / len(first.train_seconds), 1)})
        return row


def evaluate_cached(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, dsa: bool,
                    architecture: str = "ConvNet", lr: float | None = None, epochs: int | None = None,
                    n_models: int | None = None) -> SyntheticEvaluation:
    """`run.evaluate`, cached by the training set's content and every evaluation setting."""
    key = {"images": tensor_digest(x, y), "dataset": data.name, "im_size": list(data.im_size),
           "test": tensor_digest(data.x_test[:64], data.y_test), "dsa": dsa, "architecture": architecture, "lr": lr,
           "epochs": epochs, "n_models": n_models, "seed": run.seed, "precision": run.precision,
           "evaluation": asdict(run.profile.evaluation), "profile": run.profile.name,
           "device_class": run.device.type}
    path = cache_dir() / "evaluations" / f"{config_hash(key)}.json"
    saved = read_cache(path, lambda p: _evaluation_from_json(p.read_text()))
    if saved is not None:
        return saved
    augment = DSA(strategy_for(data.name), seed=run.seed) if dsa else None
    result = run.evaluate(x, y, data, architecture=architecture, augment=augment, lr=lr, epochs=epochs,
                          n_models=n_models)
    write_cache(path, lambda p: p.write_text(json.dumps(asdict(result))))
    return result


def _evaluation_from_json(text: str) -> SyntheticEvaluation:
    saved = json.loads(text)
    return SyntheticEvaluation(saved["architecture"], saved["runs"], saved["train_seconds"])


def evaluate_variants(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset, lr: float | None = None,
                      variants: tuple[str, ...] = ("plain", "dsa"), **kwargs) -> dict[str, SyntheticEvaluation]:
    """Evaluate one training set under each variant ('plain', 'dsa')."""
    return {v: evaluate_cached(run, x, y, data, dsa=VARIANTS[v], lr=lr, **kwargs) for v in variants}


def evaluation_data(synthetic: SyntheticSet, data: Dataset) -> Dataset:
    """The dataset a set must be evaluated against: ZCA-whitened when the set was distilled in that space."""
    return zca_whiten(data) if synthetic.config.get("method_config", {}).get("zca") else data


def floor_result(run: NotebookRun, data: Dataset, ipc: int, **kwargs) -> SetResult:
    """The random-real subset of `ipc` images per class, evaluated like a distilled set."""
    x, y = random_real_subset(data, ipc, torch.Generator().manual_seed(run.seed))
    return SetResult(FLOOR, data.name, ipc, "-", evaluate_variants(run, x, y, data, **kwargs))


def distill_and_evaluate(run: NotebookRun, method: str, config, data: Dataset, ipc: int, init: str, prefix: str,
                         **kwargs) -> tuple[SetResult, SyntheticSet]:
    """Distil (or reuse) one set, save its before/after figure, and evaluate it like the floor."""
    synthetic, reused = distill(method, data, DistillTask(data.name, ipc, init), config, results_dir=run.writer.root,
                                profile=run.profile.name, seed=run.seed, device=run.device, precision=run.precision)
    print(f"{method} {data.name} ipc{ipc} {init}: {'reused the saved set' if reused else 'distilled'}")
    before, _ = initial_images(data, ipc, init, torch.Generator().manual_seed(run.seed))
    fig = synthetic_before_after(before, synthetic.images, data,
                                 f"{METHOD_LABELS[method]}: {data.name}, ipc {ipc}, {init} init")
    run.writer.figure(fig, f"{prefix}_{data.name}_ipc{ipc}_{init}_images")
    cfg = synthetic.config
    evaluations = evaluate_variants(run, synthetic.images, synthetic.labels, evaluation_data(synthetic, data),
                                    lr=synthetic.lr, **kwargs)
    return SetResult(METHOD_LABELS[method], data.name, ipc, init, evaluations, cfg["iterations_done"],
                     cfg["wall_seconds"], cfg["peak_memory_mib"], cfg), synthetic


def distillation_study(run: NotebookRun, method: str, prefix: str,
                       variants: tuple[str, ...] = ("plain", "dsa")) -> pd.DataFrame:
    """Distil and evaluate every (dataset, ipc, init) of the profile's study under each evaluation variant;
    save the table and figures."""
    study = run.profile.study
    results: list[SetResult] = []
    for name in study.datasets:
        data = run.load(name)
        losses = {}
        for ipc in study.ipcs:
            results.append(floor_result(run, data, ipc, variants=variants))
            for init in study.inits:
                result, synthetic = distill_and_evaluate(run, method, run.profile.method_config(method, ipc), data,
                                                         ipc, init, prefix, variants=variants)
                results.append(result)
                losses[f"ipc{ipc} {init}"] = synthetic.config["losses"]
        fig = loss_curves(losses)
        fig.axes[0].set_title(f"{METHOD_LABELS[method]} on {name}")
        run.writer.figure(fig, f"{prefix}_{name}_loss")
    table = pd.DataFrame([r.row() for r in results])
    run.writer.table(table, prefix, caption=f"{METHOD_LABELS[method]}: ConvNet trained from scratch on each set "
                                            f"({run.profile.name} profile)")
    return table

