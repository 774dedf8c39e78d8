"""Cross-architecture transfer (03): train every architecture on every saved synthetic set."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from utility import SyntheticEvaluation
from utils.data import Dataset, stratified_subset
from utils.distill import METHODS, find_synthetic, load_synthetic
from utils.notebook import NotebookRun
from utils.profiles import TransferGrid
from utils.recipe import derive
from utils.results import MACHINE_COLUMN
from utils.study import evaluation_data, join_machines, submit_evaluation
from utils.synthetic import parse_synthetic_name, random_real_subset


@dataclass
class TrainingSet:
    """A labelled training set to transfer, with the dataset (test set) it is evaluated on."""

    label: str
    data: Dataset
    x: torch.Tensor
    y: torch.Tensor
    lr: float | None = None
    architectures: tuple[str, ...] = ()   # those it trains (the profile's grids that select it)


def transfer_sets(run: NotebookRun) -> list[TrainingSet]:
    """Saved sets selected by any of the profile's grids, preceded by the random-real floor of each (dataset, ipc);
    each set carries the architectures of every grid that selects it."""
    settings = run.profile.cross_arch
    chosen = [(p, parse_synthetic_name(p)) for p in find_synthetic(run.writer.root, profile=run.profile.name)]
    chosen = [(p, i) for p, i in chosen
              if settings.architectures_for(i["method"], i["dataset"], i["ipc"], i["init"])]
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
                        *random_real_subset(datasets[name], ipc, torch.Generator().manual_seed(run.seed)),
                        architectures=settings.architectures_for(None, name, ipc))
            for name, ipc in sorted({(i["dataset"], i["ipc"]) for _, i in chosen})]
    for path, info in chosen:
        synthetic = load_synthetic(path)
        sets.append(TrainingSet(f"{METHODS[info['method']].label}, {info['dataset']}, ipc {info['ipc']}, "
                                f"{info['init']} init", evaluation_data(synthetic, datasets[info["dataset"]]),
                                synthetic.images, synthetic.labels, synthetic.lr,
                                settings.architectures_for(info["method"], info["dataset"], info["ipc"],
                                                           info["init"])))
    return sets


def transfer_table(run: NotebookRun) -> pd.DataFrame:
    """Accuracy (%) of each architecture trained on each selected set: per architecture a mean column
    '<arch> (%)' and its std column '<arch> std (%)', empty where no grid trains the set on it."""
    settings = run.profile.cross_arch
    sets = transfer_sets(run)
    with run.executor.pool("cross-architecture grid", unit="evaluation") as pool:
        pending = {}
        for k, training_set in enumerate(sets):
            for arch in training_set.architectures:
                epochs, lr = settings.budget(arch)
                pending[k, arch] = submit_evaluation(pool, run, training_set.x, training_set.y, training_set.data,
                                                     dsa=False, architecture=arch, lr=lr or training_set.lr,
                                                     epochs=epochs, n_models=settings.n_models)
        found: dict[tuple[int, str], SyntheticEvaluation] = {}
        for (k, arch), evaluation in pending.items():
            found[k, arch] = evaluation.result()
            print(f"{sets[k].label} -> {arch}: {found[k, arch].summary()}")
    columns = ["training set", *(c for arch in settings.architectures for c in (f"{arch} (%)", f"{arch} std (%)")),
               MACHINE_COLUMN]
    return pd.DataFrame([{"training set": s.label,
                          **{column: value for arch in s.architectures
                             for column, value in ((f"{arch} (%)", round(100 * found[k, arch].mean(), 2)),
                                                   (f"{arch} std (%)", round(100 * found[k, arch].std(), 2)))},
                          MACHINE_COLUMN: join_machines(pending[k, arch].machine for arch in s.architectures)}
                         for k, s in enumerate(sets)], columns=columns)


def budget_table(run: NotebookRun) -> pd.DataFrame:
    """Epochs and learning rate each architecture of the grids trains with (the profile's, per architecture), and
    the sets it trains."""
    settings = run.profile.cross_arch
    rows = []
    for arch in settings.architectures:
        epochs, lr = settings.budget(arch)
        rows.append({"architecture": arch, "epochs": epochs, "networks per set": settings.n_models,
                     "test images": settings.test_images,
                     "lr": lr if lr is not None else f"the set's own (MTT) or {run.profile.evaluation.lr}",
                     "sets": "; ".join(grid_sets(grid) for grid in settings.grids if arch in grid.architectures)})
    return pd.DataFrame(rows)


def grid_sets(grid: TransferGrid) -> str:
    """The sets a grid selects, in words ('Gradient matching + DSA sets of MNIST, CIFAR10 at ipc 10 from real, noise
    init, with their random-real floor')."""
    methods = ", ".join(METHODS[m].label for m in grid.methods) if grid.methods is not None else "every method's"
    return (f"{methods} sets of {', '.join(grid.datasets)} at ipc {', '.join(map(str, grid.ipcs))} from "
            f"{', '.join(grid.inits)} init, with their random-real floor")


def _protocol(networks: int, epochs: int, dsa: bool, test_images: int | None) -> str:
    """An evaluation protocol in words, for comparing two of them."""
    tested = f"{test_images:,} test images" if test_images else "the whole test set"
    return f"{networks} networks per set train {epochs} epochs {'with' if dsa else 'without'} DSA, tested on {tested}"


def convnet_note(run: NotebookRun) -> str:
    """Why this grid's ConvNet column is not the accuracy notebooks 02, 06 and 07 report for the same sets (or that
    it is, where the protocols match), from the profile's settings."""
    settings, evaluation = run.profile.cross_arch, run.profile.evaluation
    test_images = min((n for n in (evaluation.test_images, settings.test_images) if n), default=None)
    here = _protocol(settings.n_models, settings.budget("ConvNet")[0], False, test_images)
    plain = _protocol(evaluation.n_models, evaluation.epochs, False, evaluation.test_images)
    if "plain" in run.profile.study.variants and here == plain:
        return (f"The ConvNet column uses the protocol of notebook 02's accuracy without DSA ({here}); 02, 06 and 07 "
                "also report accuracy with DSA, which is higher.")
    there = _protocol(evaluation.n_models, evaluation.dsa_epochs, True, evaluation.test_images)
    return (f"The ConvNet column is not the accuracy notebooks 02, 06 and 07 report for the same sets, and is not "
            f"meant to be: here {here}; there {there}. Compare sets within this grid, not across notebooks.")
