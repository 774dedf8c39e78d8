"""Cross-architecture transfer (03): train every architecture on every saved synthetic set."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from utility import SyntheticEvaluation
from utils.data import Dataset, stratified_subset
from utils.distill import METHODS, find_synthetic, load_synthetic
from utils.notebook import NotebookRun
from utils.recipe import derive
from utils.study import evaluation_data, submit_evaluation
from utils.synthetic import parse_synthetic_name, random_real_subset


@dataclass
class TrainingSet:
    """A labelled training set to transfer, with the dataset (test set) it is evaluated on."""

    label: str
    data: Dataset
    x: torch.Tensor
    y: torch.Tensor
    lr: float | None = None


def transfer_sets(run: NotebookRun) -> list[TrainingSet]:
    """Saved sets selected by the profile, preceded by the random-real floor of each (dataset, ipc)."""
    settings = run.profile.cross_arch
    chosen = [(p, parse_synthetic_name(p)) for p in find_synthetic(run.writer.root, profile=run.profile.name)]
    chosen = [(p, i) for p, i in chosen
              if i["ipc"] in settings.ipcs and i["init"] in settings.inits and i["dataset"] in settings.datasets]
    if not chosen:
        raise FileNotFoundError(f"No {run.profile.name}-profile synthetic sets matching {settings} under "
                                f"{run.writer.synthetic}; run 02_gradient_matching (and 06/07) first with the same "
                                "profile and results_dir.")
    datasets: dict[str, Dataset] = {}
    for name in sorted({i["dataset"] for _, i in chosen}):
        data = run.load(name)
        if settings.test_images is not None and settings.test_images < len(data.x_test):
            data.x_test, data.y_test = stratified_subset(data.x_test, data.y_test, settings.test_images, run.seed)
            derive(data, data, "test", settings.test_images, run.seed)
        datasets[name] = data
    sets = [TrainingSet(f"random real, {name}, ipc {ipc}", datasets[name],
                        *random_real_subset(datasets[name], ipc, torch.Generator().manual_seed(run.seed)))
            for name, ipc in sorted({(i["dataset"], i["ipc"]) for _, i in chosen})]
    for path, info in chosen:
        synthetic = load_synthetic(path)
        sets.append(TrainingSet(f"{METHODS[info['method']].label}, {info['dataset']}, ipc {info['ipc']}, "
                                f"{info['init']} init", evaluation_data(synthetic, datasets[info["dataset"]]),
                                synthetic.images, synthetic.labels, synthetic.lr))
    return sets


def transfer_table(run: NotebookRun) -> pd.DataFrame:
    """Accuracy (%) of each architecture trained on each selected set: per architecture a mean column
    '<arch> (%)' and its std column '<arch> std (%)'."""
    settings = run.profile.cross_arch
    sets = transfer_sets(run)
    with run.executor.pool("cross-architecture grid", unit="evaluation") as pool:
        pending = {}
        for k, training_set in enumerate(sets):
            for arch in settings.architectures:
                epochs, lr = settings.budget(arch)
                pending[k, arch] = submit_evaluation(pool, run, training_set.x, training_set.y, training_set.data,
                                                     dsa=False, architecture=arch, lr=lr or training_set.lr,
                                                     epochs=epochs, n_models=settings.n_models)
        found: dict[tuple[int, str], SyntheticEvaluation] = {}
        for (k, arch), evaluation in pending.items():
            found[k, arch] = evaluation.result()
            print(f"{sets[k].label} -> {arch}: {found[k, arch].summary()}")
    return pd.DataFrame([{"training set": s.label,
                          **{column: value for arch in settings.architectures
                             for column, value in ((f"{arch} (%)", round(100 * found[k, arch].mean(), 2)),
                                                   (f"{arch} std (%)", round(100 * found[k, arch].std(), 2)))}}
                         for k, s in enumerate(sets)])


def budget_table(run: NotebookRun) -> pd.DataFrame:
    """Epochs and learning rate each architecture of the grid trains with (the profile's, per architecture)."""
    settings = run.profile.cross_arch
    rows = []
    for arch in settings.architectures:
        epochs, lr = settings.budget(arch)
        rows.append({"architecture": arch, "epochs": epochs, "networks per set": settings.n_models,
                     "test images": settings.test_images,
                     "lr": lr if lr is not None else f"the set's own (MTT) or {run.profile.evaluation.lr}"})
    return pd.DataFrame(rows)
