"""MHIST study (05): full-data baseline, every registered method at each ipc and init, the random-real and
majority-class floors, all with accuracy, balanced accuracy and AUC."""

from __future__ import annotations

import pandas as pd
import torch

from networks import get_network
from utility import predict, set_seed, train
from utils.augment import DSA, strategy_for
from utils.data import Dataset
from utils.distill import METHODS
from utils.full_training import FullTrainingConfig, train_full
from utils.metrics import classification_metrics
from utils.notebook import NotebookRun
from utils.study import FULL_DATA, SetResult, SetUnit, protocol_caption, study_sets, write_curves

METRICS = ("accuracy", "balanced_accuracy", "auc")
VARIANTS = ("dsa",)   # the headline evaluation: trained with DSA (flip and rotate suit histology)


def majority_floor(data: Dataset) -> dict[str, float]:
    """Metrics of always predicting the most frequent training class (a constant score: AUC 0.5)."""
    majority = int(data.y_train.bincount().argmax())
    logits = torch.zeros(len(data.y_test), data.num_classes)
    logits[:, majority] = 1.0
    return classification_metrics(logits, data.y_test)


def baseline(run: NotebookRun, data: Dataset) -> dict:
    """ConvNet of the profile's depth trained on the whole MHIST training set (cached)."""
    s = run.profile.mhist
    return train_full(data, FullTrainingConfig(dataset="MHIST", architecture=s.architecture,
                                               epochs=s.baseline_epochs, seed=run.seed, precision=run.precision),
                      run.device)


def distilled_sets(run: NotebookRun, data: Dataset, prefix: str) -> tuple[list[SetResult], dict]:
    """Floors and every registered method's sets for each ipc and init, evaluated with DSA training."""
    s = run.profile.mhist
    evaluation = {"variants": VARIANTS, "architecture": s.architecture, "epochs": s.eval_epochs,
                  "n_models": s.n_models}
    units = []
    for ipc in s.ipcs:
        units.append(SetUnit(data, ipc))
        units += [SetUnit(data, ipc, method, init, s.method_config(method, ipc, init))
                  for method in METHODS for init in s.inits]
    studied = study_sets(run, units, prefix, "MHIST study", **evaluation)
    write_curves(run, [result for result, _ in studied], prefix, "balanced_accuracy")
    synthetic = {(unit.method, unit.ipc, unit.init): synthetic
                 for unit, (_, synthetic) in zip(units, studied) if unit.method}
    return [result for result, _ in studied], synthetic


def table_caption(run: NotebookRun) -> str:
    """The caption of 05's table: what its rows are and what each protocol's columns are."""
    s = run.profile.mhist
    return (f"MHIST: every set vs the random-real subset, the full training set and the majority-class floor "
            f"({run.profile.name} profile, {s.architecture}); "
            f"{protocol_caption(run, run.profile.evaluation.protocols(VARIANTS), epochs=s.eval_epochs)}")


def results_table(results: list[SetResult], full: dict, floor: dict[str, float]) -> pd.DataFrame:
    """Every set beside the full-data baseline and the majority-class floor, three metrics each (the references
    distil nothing; the majority class trains no network)."""
    rows = [r.row(METRICS) for r in results]
    columns = [c for c in rows[0] if c.endswith("(%)") and not c.endswith(" std (%)")]
    none = {"iterations": 0, "distillation time (s)": 0.0, "peak memory (MiB)": 0}
    rows.append({"method": "majority class", "dataset": "MHIST", "ipc": None, "init": None, **none, "models": 0,
                 **{c: round(100 * floor[m], 2) for c, m in zip(columns, METRICS)}})
    rows.append({"method": FULL_DATA, "dataset": "MHIST", "ipc": None, "init": None, **none, "models": 1,
                 **{c: round(100 * full["metrics"][m], 2) for c, m in zip(columns, METRICS)},
                 "train time per model (s)": round(full["train_seconds"], 1)})
    return pd.DataFrame(rows)


def confusion_matrix(run: NotebookRun, x: torch.Tensor, y: torch.Tensor, data: Dataset,
                     lr: float | None) -> torch.Tensor:
    """Confusion matrix (rows: true class, columns: predicted) of one network trained on (x, y) with DSA."""
    s = run.profile.mhist
    set_seed(run.seed)
    model = get_network(s.architecture, data.channels, data.num_classes, data.im_size).to(run.device)
    train(model, x, y, epochs=s.eval_epochs, lr=lr or run.profile.evaluation.lr,
          augment=DSA(strategy_for("MHIST"), seed=run.seed, device=run.device), precision=run.precision)
    predicted = predict(model, data.x_test, precision=run.precision).argmax(1)
    matrix = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    matrix.index_put_((data.y_test, predicted), torch.ones_like(predicted), accumulate=True)
    return matrix
