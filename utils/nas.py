"""Architecture search on distilled data (04): rank candidate networks by their accuracy after training on a
distilled set and compare with the ranking after training on real data, with what makes that comparison mean
something: the full-data ranking's agreement with itself (another seed, twice the epochs) and the search's cost."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pandas as pd

from networks import convnet_shape
from utils.comparison import COURSE_NAS_ACCURACY
from utils.data import Dataset
from utils.distill import load_synthetic
from utils.executor import Handle, Pool
from utils.full_training import (
    FullTrainingConfig,
    full_training_path,
    read_full_training,
    train_full_uncached,
    training_machine,
    write_full_training,
)
from utils.interpretation import CEILING, STABILITY, counted
from utils.metrics import rank_correlations
from utils.notebook import NotebookRun
from utils.profiles import COURSE_NAS, NasSearch
from utils.results import MACHINE_COLUMN
from utils.study import join_machines, submit_evaluation
from utils.synthetic import SyntheticSet, synthetic_path

FULL = "full-data accuracy (%)"
LONGER = "full-data accuracy, 2x epochs (%)"
DISTILLED = "distilled accuracy (%)"


@dataclass
class _PendingTraining:
    """A full-data run found in the unit records or cache (`found`), or submitted (`handle`, which records it)."""

    found: dict | None = None
    handle: Handle | None = None

    def result(self) -> dict:
        """The run's result, waiting for its unit if it was submitted."""
        return self.found if self.found is not None else self.handle.result()


def _submit_full(pool: Pool, run: NotebookRun, data: Dataset, config: FullTrainingConfig) -> _PendingTraining:
    """One full-data run as a unit of `pool`, unless the ledger (`utils.full_training`) already holds it."""
    path, key = full_training_path(data, config, run.device)
    found = read_full_training(path, key)
    if found is not None:
        return _PendingTraining(found=found)
    return _PendingTraining(handle=pool.submit(train_full_uncached, data, config, run.device, key)
                            .when_done(partial(write_full_training, path, key)))


def searched_set(run: NotebookRun, search: NasSearch) -> SyntheticSet:
    """The distilled set a search trains on, which an earlier notebook of the same profile saved."""
    path = synthetic_path(run.writer.root, search.method, search.dataset, search.ipc, search.init)
    hint = (f"run 02_gradient_matching with the {run.profile.name!r} profile and this results_dir first (04 searches "
            f"{search.dataset} on its {search.method} ipc-{search.ipc} {search.init}-init set).")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {hint}")
    synthetic = load_synthetic(path)
    if synthetic.config.get("profile") != run.profile.name:
        raise FileNotFoundError(f"{path} was distilled with the {synthetic.config.get('profile')!r} profile: {hint}")
    return synthetic


def search(run: NotebookRun, search: NasSearch) -> tuple[pd.DataFrame, dict[str, float | bool | str]]:
    """Train each candidate on full data (at the search's budget and at twice its epochs) and on the distilled set;
    return the candidates table and the search's summary (rank agreement, its ceilings, costs)."""
    data = run.load(search.dataset)
    synthetic = searched_set(run, search)
    seeds = [run.seed + k for k in range(search.full_seeds)]
    longer_seeds = [run.seed + k for k in range(search.longer_seeds)]
    budgets = {search.full_epochs: seeds, 2 * search.full_epochs: longer_seeds}
    with run.executor.pool(f"NAS {search.name}", unit="unit") as pool:
        pending = {(arch, epochs, seed): _submit_full(pool, run, data, FullTrainingConfig(
            dataset=search.dataset, architecture=arch, epochs=epochs, train_images=search.full_train_images,
            seed=seed, precision=run.precision)) for arch in search.candidates for epochs, runs in budgets.items()
            for seed in runs}
        evaluations = {arch: submit_evaluation(pool, run, synthetic.images, synthetic.labels, data, dsa=False,
                                               architecture=arch, lr=synthetic.lr, epochs=search.distilled_epochs,
                                               n_models=search.n_models, schedule=search.distilled_schedule)
                       for arch in search.candidates}
        full = {unit: training.result() for unit, training in pending.items()}
        distilled = {arch: evaluation.result() for arch, evaluation in evaluations.items()}

    def accuracy(arch: str, epochs: int, runs: list[int]) -> list[float]:
        return [100 * full[arch, epochs, seed]["metrics"]["accuracy"] for seed in runs]

    def seconds(arch: str, epochs: int, runs: list[int]) -> float:
        return sum(full[arch, epochs, seed]["train_seconds"] for seed in runs)

    rows = []
    for arch in search.candidates:
        depth, width = convnet_shape(arch) or (None, None)
        per_seed = accuracy(arch, search.full_epochs, seeds)
        longer = accuracy(arch, 2 * search.full_epochs, longer_seeds)
        rows.append({"candidate": arch, "depth": depth, "width": width,
                     FULL: round(sum(per_seed) / len(per_seed), 2),
                     **{f"full-data accuracy, seed {seed} (%)": round(a, 2) for seed, a in zip(seeds, per_seed)},
                     LONGER: round(sum(longer) / len(longer), 2),
                     DISTILLED: round(100 * distilled[arch].mean(), 2),
                     "distilled accuracy std (%)": round(100 * distilled[arch].std(), 2),
                     "full-data time (s)": round(seconds(arch, search.full_epochs, seeds), 1),
                     "full-data time, 2x epochs (s)": round(seconds(arch, 2 * search.full_epochs, longer_seeds), 1),
                     "distilled time (s)": round(sum(distilled[arch].train_seconds), 1),
                     MACHINE_COLUMN: join_machines([*(training_machine(full[arch, epochs, seed])
                                                      for epochs, runs in budgets.items() for seed in runs),
                                                    evaluations[arch].machine])})
        print(f"{search.name} {arch}: full data {rows[-1][FULL]}% ({rows[-1][LONGER]}% at 2x epochs), "
              f"distilled {rows[-1][DISTILLED]}%")
    table = pd.DataFrame(rows)
    train_images = full[search.candidates[0], search.full_epochs, seeds[0]]["train_images"]
    return table, summarise(table, search, seeds, (train_images, len(data.x_train)),
                            synthetic.config.get("wall_seconds", 0.0))


def summarise(table: pd.DataFrame, search: NasSearch, seeds: list[int], images: tuple[int, int],
              distill_seconds: float) -> dict[str, float | bool | str]:
    """One search's summary row: rank agreement of the distilled ranking with full data, the two ceilings it is set
    against (seed vs seed; the budget used vs twice its epochs), the winners, the budgets and the costs."""
    best_full = table.loc[table[FULL].idxmax(), "candidate"]
    best_distilled = table.loc[table[DISTILLED].idxmax(), "candidate"]
    stability = rank_correlations(table[FULL].tolist(), table[LONGER].tolist())
    summary = {"dataset": search.dataset,
               **rank_correlations(table[FULL].tolist(), table[DISTILLED].tolist()),
               "best on full data": best_full, "best on distilled data": best_distilled,
               "same winner": bool(best_full == best_distilled),
               **ceiling(table, seeds),
               STABILITY: stability["spearman"],
               "stability kendall (full data, budget vs 2x epochs)": stability["kendall"],
               "best on full data at 2x epochs": table.loc[table[LONGER].idxmax(), "candidate"],
               "spearman (distilled vs full data at 2x epochs)":
                   rank_correlations(table[LONGER].tolist(), table[DISTILLED].tolist())["spearman"],
               "full-data epochs": search.full_epochs, "full-data train images": images[0],
               "training set images": images[1],
               "full-data seeds": len(seeds), "2x-epoch seeds": search.longer_seeds,
               "distilled epochs": search.distilled_epochs, "distilled schedule": search.distilled_schedule,
               "networks per candidate (distilled)": search.n_models,
               "search time full data (s)": round(table["full-data time (s)"].sum(), 1),
               "search time distilled (s)": round(table["distilled time (s)"].sum(), 1),
               "distillation time of the set (s)": round(float(distill_seconds), 1)}
    if search.course:
        summary.update(course_summary(table))
    return summary


def course_summary(table: pd.DataFrame) -> dict[str, float | str]:
    """The course report's search beside this one's: its winners and its rank agreement (`COURSE_NAS_ACCURACY`),
    and its budget (`utils.profiles.COURSE_NAS`: epochs of each side, all training images)."""
    course = {arch: values for arch, *values in COURSE_NAS_ACCURACY if arch in set(table["candidate"])}
    full, distilled = ([values[k] for values in course.values()] for k in (0, 1))
    return {"course report: best on full data": max(course, key=lambda a: course[a][0]),
            "course report: best on distilled data": max(course, key=lambda a: course[a][1]),
            "course report: spearman": rank_correlations(full, distilled)["spearman"],
            "course report: full-data epochs": COURSE_NAS.full_epochs,
            "course report: distilled epochs": COURSE_NAS.distilled_epochs}


def ceiling(table: pd.DataFrame, seeds: list[int]) -> dict[str, float]:
    """Spearman's rho between the full-data rankings of the first two seeds: how well any proxy ranking can agree
    with a full-data ranking that is itself this noisy (NaN with one seed)."""
    if len(seeds) < 2:
        return {CEILING: float("nan")}
    first, second = (table[f"full-data accuracy, seed {s} (%)"].tolist() for s in seeds[:2])
    return {CEILING: rank_correlations(first, second)["spearman"]}


def caption(search: NasSearch, summary: dict) -> str:
    """The candidates table's caption: the dataset, and both sides' budgets as run."""
    return (f"{search.dataset}: candidates trained on full data ({counted(search.full_epochs, 'epoch')} on "
            f"{counted(summary['full-data train images'], 'training image')}, {counted(search.full_seeds, 'seed')}; "
            f"and {counted(2 * search.full_epochs, 'epoch')}, {counted(search.longer_seeds, 'seed')}) vs on the "
            f"{search.method} ipc-{search.ipc} {search.init}-init set ({counted(search.distilled_epochs, 'epoch')}, "
            f"{search.distilled_schedule} schedule, {counted(search.n_models, 'network')})")


def run_searches(run: NotebookRun) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Every search of the profile, in order: each one's candidates table written as
    `04_nas_<dataset>_candidates`, and the summary of all, one row per search, as `04_nas_rank_agreement`."""
    tables, summaries = {}, []
    for each in run.profile.nas.searches:
        table, summary = search(run, each)
        run.writer.table(table, f"04_nas_{each.name}_candidates", caption=caption(each, summary))
        tables[each.name] = table
        summaries.append(summary)
    summary_table = pd.DataFrame(summaries)
    run.writer.table(summary_table, "04_nas_rank_agreement",
                     caption=f"{' and '.join(tables)}: agreement of the distilled-set ranking with the full-data "
                             f"ranking, its ceilings and the search costs ({run.profile.name} profile)")
    return tables, summary_table
