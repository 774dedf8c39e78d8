"""The comparison (08) merges study tables: one row per set, '-' where a study did not measure, MHIST ranked by
balanced accuracy."""

from __future__ import annotations

import pandas as pd

from tests.fakes import numeric_table
from utils import comparison, readme_results
from utils.distill import METHODS
from utils.paths import PROJECT_ROOT, RESULTS_DIR
from utils.results import ResultWriter


def write(root, notebook: str, rows: list[dict]) -> None:
    ResultWriter(root, notebook=notebook, profile="smoke", seed=0, device="cpu").table(numeric_table(rows), notebook)


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
    assert pd.isna(dm["accuracy without DSA (%)"]) and pd.isna(dm["balanced accuracy with DSA (%)"])
    assert table["accuracy with DSA (%)"].dtype == "float64" and table["ipc"].dtype == "Int64"
    gm = table[table["method"] == "Gradient matching + DSA"].iloc[0]
    assert (gm["accuracy without DSA (%)"], gm["accuracy without DSA std (%)"]) == (29.0, 0.1)
    assert dm["iterations"] == 5 and dm["profile"] == "smoke"

    best = comparison.best_per_dataset(table).set_index("dataset")
    assert best.loc["CIFAR10", "best set"] == "Distribution matching, real init"
    assert best.loc["CIFAR10", "gain (points)"] == 10.0 and best.loc["CIFAR10", "sets above random real"] == 2
    assert best.loc["CIFAR10", "distilled sets"] == 2 and best.loc["CIFAR10", "best std (%)"] == 0.5
    assert best.loc["MHIST", "metric"] == "balanced accuracy"
    assert best.loc["MHIST", "best set"] == "Trajectory matching, real init"
    assert best.loc["MHIST", "sets above random real"] == 1


def fake_results(root) -> None:
    """Study tables holding some of the target sets: MNIST GM real (met), MNIST GM noise (not met), MHIST ipc 10
    (a big enough gain; accuracy above the majority class), nothing at MHIST ipc 50 or for the other sets."""
    write(root, "02_gradient_matching",
          [row("random real", "MNIST", "-", "80.00 ± 0.50", models=3),
           row("Gradient matching + DSA", "MNIST", "real", "94.40 ± 0.20", models=3),
           row("Gradient matching + DSA", "MNIST", "noise", "93.99 ± 0.20", models=3)])
    write(root, "06_trajectory_matching",
          [row("Trajectory matching", "MNIST", "real", "80.40 ± 0.60", models=5)])
    write(root, "05_mhist",
          [row("random real", "MHIST", "-", "60.00 ± 1.00", models=5,
               **{"balanced accuracy with DSA (%)": "55.00 ± 1.00"}),
           row("Distribution matching", "MHIST", "real", "64.00 ± 1.00", models=5,
               **{"balanced accuracy with DSA (%)": "59.00 ± 0.50"}),
           row("Trajectory matching", "MHIST", "noise", "70.00 ± 1.00", models=5,
               **{"balanced accuracy with DSA (%)": "57.00 ± 0.50"}),
           {**row("full training set", "MHIST", "-", "80.00 ± 0.00", models=1,
                  **{"balanced accuracy with DSA (%)": "78.50 ± 0.00"}), "ipc": None}])


def summary_of(root):
    ours = comparison.gather(root)
    metadata = {"profile": "cpu", "seed": "0", "device": "cpu", "torch": "x", "created_utc": "now"}
    return comparison.write_summary(root, ours.drop(columns=["source"]), comparison.best_per_dataset(ours), "fig",
                                    metadata)


def test_targets_table_says_met_not_met_and_not_run(tmp_path):
    fake_results(tmp_path)
    targets = comparison.targets_table(comparison.gather(tmp_path), "cpu")
    assert list(targets.columns) == ["dataset", "method", "init", "target (ECE1512 report, GPU)", "this run (cpu)",
                                     "networks", "met", comparison.CEILING_COLUMN]
    kinds = (comparison.ACCURACY_TARGETS, comparison.FLOOR_TARGETS, comparison.MHIST_TARGETS)
    assert len(targets) == sum(map(len, kinds)) == 16
    by_set = targets.set_index(["dataset", "method", "init"])
    gm_real = by_set.loc[("MNIST", "Gradient matching + DSA", "real")]
    assert (gm_real["target (ECE1512 report, GPU)"], gm_real["this run (cpu)"], gm_real["networks"], gm_real["met"]) \
        == ("≥ 94.39 (Tables 2 and 6, the higher)", "94.40 ± 0.20", 3, "yes")
    assert by_set.loc[("MNIST", "Gradient matching + DSA", "noise"), "met"] == "no"
    dm = by_set.loc[("CIFAR10", "Distribution matching", "real")]
    assert (dm["this run (cpu)"], dm["networks"], dm["met"]) == ("-", "-", "not run")
    mhist = targets[targets["dataset"] == "MHIST"].set_index("method")
    best10 = mhist.loc["best distilled set vs random real, ipc 10 (issues 10 and 26)"]
    assert best10["met"] == "yes" and best10["networks"] == 5
    assert best10["this run (cpu)"].startswith("Distribution matching, real init: +4.00 points")
    assert "accuracy 64.00 %" in best10["this run (cpu)"]
    assert set(mhist.loc[["best distilled set vs random real, ipc 50 (issue 26)",
                          "best distilled set vs random real, ipc 50 (issue 10)"], "met"]) == {"not run"}
    assert set(mhist[comparison.CEILING_COLUMN]) == {"balanced accuracy 78.50 %"}
    mtt = targets[(targets["method"] == "Trajectory matching") & (targets["dataset"] == "MNIST")
                  & (targets["init"] == "real")].set_index("target (ECE1512 report, GPU)")
    floor_row = mtt.loc["beats random real by more than both stds (issue 26)"]
    assert floor_row["met"] == "no", "a gap of 0.40 points is inside the stds (0.60, 0.50)"
    assert floor_row["this run (cpu)"].endswith("+0.40 points")


def test_mhist_target_needs_gap_beyond_the_stds_and_accuracy_above_the_majority_class(tmp_path):
    write(tmp_path, "05_mhist",
          [row("random real", "MHIST", "-", "60.00 ± 1.00", **{"balanced accuracy with DSA (%)": "55.00 ± 4.00"}),
           row("Distribution matching", "MHIST", "real", "64.00 ± 1.00",
               **{"balanced accuracy with DSA (%)": "58.50 ± 0.50"}),   # gain 3.5 < std 4.0
           row("random real", "MHIST", "-", "60.00 ± 1.00", ipc=50,
               **{"balanced accuracy with DSA (%)": "55.00 ± 1.00"}),
           row("Distribution matching", "MHIST", "real", "63.00 ± 1.00", ipc=50,
               **{"balanced accuracy with DSA (%)": "60.00 ± 0.50"})])   # accuracy 63.0 < 63.2
    mhist = comparison.targets_table(comparison.gather(tmp_path), "paper").set_index("method")
    assert mhist.loc["best distilled set vs random real, ipc 10 (issues 10 and 26)", "met"] == "no"
    assert set(mhist.loc[["best distilled set vs random real, ipc 50 (issue 26)",
                          "best distilled set vs random real, ipc 50 (issue 10)"], "met"]) == {"no"}
    assert "this run (paper)" in mhist.columns


def test_summary_puts_the_targets_after_the_header_and_the_stamp_under_the_title_once(tmp_path):
    fake_results(tmp_path)
    path = summary_of(tmp_path)
    lines = path.read_text().splitlines()
    assert lines[0] == "# Dataset distillation: results summary" and lines[2].startswith("Profile `cpu`")
    assert lines[4] == f"## {comparison.TARGETS_TITLE}"
    for seconds, machine in ((3 * 3600 + 25 * 60 + 10, "CPU A"), (59 * 60 + 50, "CPU B")):
        comparison.stamp_summary(tmp_path, profile="cpu", wall_seconds=seconds, executor="local", fresh=True,
                                 machine=machine, commit="abc1234")
    lines = path.read_text().splitlines()
    assert [line for line in lines if line.startswith("**Run:**")] == [
        "**Run:** make results, profile cpu, 1 h 0 min wall time from an empty results/ and .cache/ on CPU B, "
        "commit abc1234, executor local."]
    assert lines[:4] == ["# Dataset distillation: results summary", "", lines[2], ""]
    assert lines[4].startswith("Profile `cpu`") and lines[6] == f"## {comparison.TARGETS_TITLE}"
    comparison.stamp_summary(tmp_path, profile="cpu", wall_seconds=60, executor="ray", fresh=False, machine="m",
                             commit="c")
    assert "1 min wall time with an existing cache on m, commit c, executor ray." in path.read_text()
    assert path.read_text().count("**Run:**") == 1


def test_readme_block_renders_the_stamp_and_targets_or_says_the_summary_predates_them(tmp_path):
    fake_results(tmp_path)
    path = summary_of(tmp_path)
    comparison.stamp_summary(tmp_path, profile="cpu", wall_seconds=7200, executor="local", machine="m", commit="c")
    rendered = readme_results.render(path.read_text())
    assert "**Run:** make results, profile cpu, 2 h 0 min wall time on m, commit c, executor local." in rendered
    assert "| MNIST     | Gradient matching + DSA" in rendered and "not run" in rendered
    assert "predates" in readme_results.render("# old summary\n\nno targets here\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nstale\n<!-- results:end -->\noutro\n")
    readme_results.update_readme(readme, path)
    assert readme_results.block(readme.read_text()) == rendered
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("outro\n")


def test_readme_results_block_matches_the_committed_summary():
    """README's results block is generated: edit results/summary.md (by `make results`), then run
    `python -m utils.readme_results`, never the block by hand."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    summary = (RESULTS_DIR / "summary.md").read_text()
    assert readme_results.block(readme) == readme_results.render(summary), \
        "README results block is stale: run `python -m utils.readme_results`"


def test_iterations_needed_extrapolates_the_curve_in_log_iterations():
    from utils.comparison import iterations_needed

    curve = pd.DataFrame({"iteration": [100, 200, 300], "accuracy (%)": [30.0, 32.0, 33.0]})
    assert iterations_needed(curve, 33.0) == "reached"
    # slope per log-iteration from the last two points: 1 / ln(1.5); one more point needs another factor 1.5
    assert iterations_needed(curve, 34.0) == "≈ 450"
    assert iterations_needed(curve.assign(**{"accuracy (%)": [30.0, 33.0, 32.0]}), 40.0) == "not on this trend"
    assert iterations_needed(curve.head(1), 40.0) == "-"


def test_preparation_seconds_come_from_the_table_a_method_record_names(tmp_path):
    assert comparison.preparation_seconds(tmp_path) == {}, "no table: no preparation time"
    writer = ResultWriter(tmp_path, notebook="06_trajectory_matching", profile="smoke", seed=0, device="cpu")
    writer.table(pd.DataFrame({"dataset": ["MNIST", "CIFAR10"], "experts": [2, 2], "training time (s)": [130.5, 118.0],
                               "time this run (s)": [0.2, 0.1]}), METHODS["mtt"].preparation_table)
    assert comparison.preparation_seconds(tmp_path) == {("Trajectory matching", "MNIST"): 130.5,
                                                        ("Trajectory matching", "CIFAR10"): 118.0}


def test_course_numbers_stand_beside_this_runs_headline_and_course_protocol_accuracy(tmp_path):
    from types import SimpleNamespace

    from utils import report

    writer = ResultWriter(tmp_path, notebook="07_distribution_matching", profile="cpu", seed=0, device="cpu")
    writer.table(pd.DataFrame({"method": ["Distribution matching"] * 2, "dataset": ["MNIST"] * 2, "ipc": [10, 10],
                               "init": ["real", "noise"], "accuracy with DSA (%)": [96.5, 95.3],
                               "accuracy with DSA std (%)": [0.2, 0.3], "accuracy, course protocol (%)": [93.0, None],
                               "accuracy, course protocol std (%)": [0.4, None]}), "07_distribution_matching")
    rows = comparison.course_vs_run(tmp_path, "07").set_index("what")
    real = rows.loc["MNIST, Distribution matching, ipc 10, real init"]
    assert (real["course report"], real[comparison.RUN_HEADLINE], real[comparison.RUN_COURSE],
            real["this run, course protocol std"]) == (94.68, 96.5, 93.0, 0.4)
    assert pd.isna(rows.loc["MNIST, Distribution matching, ipc 10, noise init", comparison.RUN_COURSE])
    lines = report._course_lines([SimpleNamespace(course=SimpleNamespace(frame=rows.reset_index()))])
    assert "- MNIST, Distribution matching, ipc 10, real init: 96.50 ± 0.20 % in this run against 94.68 % in the " \
           "course report (+1.82); trained the course report's way, 93.00 ± 0.40 % (-1.68)." in lines
    assert any(line.endswith("95.30 ± 0.30 % in this run against 94.27 % in the course report (+1.03).")
               for line in lines), "no course-protocol number: none quoted"
    assert comparison.COURSE_PROTOCOL in comparison.COLUMNS, "08's comparison table carries the column"
    every = comparison.course_distilled(tmp_path).set_index("what")
    assert len(every) == len(comparison.COURSE_DISTILLED), "08: every distilled-set number of the course report"
    assert every.loc["MNIST, Distribution matching, ipc 10, real init", comparison.RUN_COURSE] == 93.0


def test_iterations_needed_skips_iteration_0():
    from utils.comparison import iterations_needed

    curve = pd.DataFrame({"iteration": [0, 100], "accuracy (%)": [20.0, 30.0]})
    assert iterations_needed(curve, 40.0) == "-", "log(0): the initial set is no point of the log-linear trend"
