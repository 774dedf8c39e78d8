"""The comparison (08) merges study tables: one row per set, '-' where a study did not measure, MHIST ranked by
balanced accuracy."""

from __future__ import annotations

import pandas as pd

from utils import comparison
from utils.results import ResultWriter


def write(root, notebook: str, rows: list[dict]) -> None:
    ResultWriter(root, notebook=notebook, profile="smoke", seed=0, device="cpu").table(pd.DataFrame(rows), notebook)


def row(method: str, dataset: str, init: str, dsa: str, **extra) -> dict:
    return {"method": method, "dataset": dataset, "ipc": 10, "init": init, "iterations": 5,
            "accuracy with DSA (%)": dsa, "distillation time (s)": 1.5, "peak memory (MiB)": 10, **extra}


def test_gather_merges_tables_once_per_set_and_ranks_mhist_by_balanced_accuracy(tmp_path):
    floor = row("random real", "CIFAR10", "-", "25.00 ± 0.10", **{"accuracy (%)": "24.00 ± 0.20"})
    write(tmp_path, "02_gradient_matching",
          [floor, row("Gradient matching + DSA", "CIFAR10", "real", "30.00 ± 0.50", **{"accuracy (%)": "29.0 ± 0.1"})])
    write(tmp_path, "07_distribution_matching",
          [floor, row("Distribution matching", "CIFAR10", "real", "35.00 ± 0.50")])
    mhist = [row("random real", "MHIST", "-", "62.00 ± 1.00", **{"balanced accuracy with DSA (%)": "55.00 ± 1.00"}),
             row("Distribution matching", "MHIST", "real", "64.00 ± 1.00",
                 **{"balanced accuracy with DSA (%)": "52.00 ± 1.00"}),
             row("Trajectory matching", "MHIST", "real", "60.00 ± 1.00",
                 **{"balanced accuracy with DSA (%)": "58.00 ± 1.00"})]
    write(tmp_path, "05_mhist", mhist)

    table = comparison.gather(tmp_path)
    assert len(table) == 6
    assert (table["method"] == "random real").sum() == 2
    dm = table[(table["method"] == "Distribution matching") & (table["dataset"] == "CIFAR10")].iloc[0]
    assert dm["accuracy without DSA (%)"] == "-" and dm["balanced accuracy with DSA (%)"] == "-"
    assert dm["iterations"] == 5 and dm["profile"] == "smoke"

    best = comparison.best_per_dataset(table).set_index("dataset")
    assert best.loc["CIFAR10", "best set"] == "Distribution matching, real init"
    assert best.loc["CIFAR10", "gain (points)"] == 10.0 and best.loc["CIFAR10", "sets above random real"] == "2 of 2"
    assert best.loc["MHIST", "metric"] == "balanced accuracy"
    assert best.loc["MHIST", "best set"] == "Trajectory matching, real init"
    assert best.loc["MHIST", "sets above random real"] == "1 of 2"
