"""Architecture search on distilled data (04): rank candidate ConvNets by their accuracy after training on a
distilled set and compare with the ranking after training on real data."""

from __future__ import annotations

from functools import partial

import pandas as pd

from utils.distill import load_synthetic
from utils.executor import Handle
from utils.full_training import (
    FullTrainingConfig,
    full_training_path,
    read_full_training,
    train_full_uncached,
    write_full_training,
)
from utils.metrics import rank_correlations
from utils.notebook import NotebookRun
from utils.study import submit_evaluation
from utils.synthetic import synthetic_path


def search(run: NotebookRun) -> tuple[pd.DataFrame, dict[str, float | bool | str]]:
    """Train each candidate on full data and on the distilled set; return the table and the rank agreement."""
    settings = run.profile.nas
    data = run.load(settings.dataset)
    path = synthetic_path(run.writer.root, settings.method, settings.dataset, settings.ipc, settings.init)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run 02_gradient_matching with the same profile and "
                                "results_dir first (04 searches on its distilled set).")
    synthetic = load_synthetic(path)
    if synthetic.config.get("profile") != run.profile.name:
        raise FileNotFoundError(f"{path} was distilled with the {synthetic.config.get('profile')!r} profile, not "
                                f"{run.profile.name!r}: run 02_gradient_matching with this profile and results_dir "
                                "first (04 searches on its distilled set).")
    candidates = [f"ConvNetD{depth}W{width}" for depth in settings.depths for width in settings.widths]
    seeds = [run.seed + k for k in range(settings.full_seeds)]
    with run.executor.pool("NAS candidates", unit="unit") as pool:
        full: dict[tuple[str, int], dict] = {}
        training: dict[tuple[str, int], Handle] = {}
        evaluations = {}
        for arch in candidates:
            for seed in seeds:
                config = FullTrainingConfig(dataset=settings.dataset, architecture=arch, epochs=settings.full_epochs,
                                            train_images=settings.full_train_images, seed=seed,
                                            precision=run.precision)
                cache_path, key = full_training_path(data, config, run.device)
                found = read_full_training(cache_path, key)
                if found is not None:
                    full[arch, seed] = found
                else:
                    training[arch, seed] = pool.submit(
                        train_full_uncached, data, config, run.device, key).when_done(
                        partial(write_full_training, cache_path, key))
            evaluations[arch] = submit_evaluation(pool, run, synthetic.images, synthetic.labels, data, dsa=False,
                                                  architecture=arch, lr=synthetic.lr, epochs=settings.distilled_epochs,
                                                  n_models=settings.n_models)
        for candidate, handle in training.items():
            full[candidate] = handle.result()
        distilled = {arch: evaluation.result() for arch, evaluation in evaluations.items()}
    rows = []
    for arch in candidates:
        depth, width = (int(v) for v in arch.removeprefix("ConvNetD").split("W"))
        per_seed = [100 * full[arch, seed]["metrics"]["accuracy"] for seed in seeds]
        rows.append({"candidate": arch, "depth": depth, "width": width,
                     "full-data accuracy (%)": round(sum(per_seed) / len(per_seed), 2),
                     **{f"full-data accuracy, seed {seed} (%)": round(a, 2) for seed, a in zip(seeds, per_seed)},
                     "distilled accuracy (%)": round(100 * distilled[arch].mean(), 2),
                     "distilled accuracy std (%)": round(100 * distilled[arch].std(), 2),
                     "full-data time (s)": round(sum(full[arch, seed]["train_seconds"] for seed in seeds), 1),
                     "distilled time (s)": round(sum(distilled[arch].train_seconds), 1)})
        print(f"{arch}: full data {rows[-1]['full-data accuracy (%)']}%, "
              f"distilled {rows[-1]['distilled accuracy (%)']}%")
    table = pd.DataFrame(rows)
    best_full = table.loc[table["full-data accuracy (%)"].idxmax(), "candidate"]
    best_distilled = table.loc[table["distilled accuracy (%)"].idxmax(), "candidate"]
    summary = {**rank_correlations(table["full-data accuracy (%)"].tolist(), table["distilled accuracy (%)"].tolist()),
               "best on full data": best_full, "best on distilled data": best_distilled,
               "same winner": bool(best_full == best_distilled),
               **ceiling(table, seeds),
               "search time full data (s)": round(table["full-data time (s)"].sum(), 1),
               "search time distilled (s)": round(table["distilled time (s)"].sum(), 1)}
    return table, summary


def ceiling(table: pd.DataFrame, seeds: list[int]) -> dict[str, float]:
    """Spearman's rho between the full-data rankings of the first two seeds: how well any proxy ranking can agree
    with a full-data ranking that is itself this noisy (NaN with one seed)."""
    if len(seeds) < 2:
        return {"ceiling spearman (full data, seed vs seed)": float("nan")}
    first, second = (table[f"full-data accuracy, seed {s} (%)"].tolist() for s in seeds[:2])
    return {"ceiling spearman (full data, seed vs seed)": rank_correlations(first, second)["spearman"]}
