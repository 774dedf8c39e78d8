"""Generated interpretation sentences follow the numbers of the table they are given (issue 10)."""

from __future__ import annotations

import math

import pandas as pd

from tests.fakes import numeric_table
from utils import interpretation
from utils.study import FLOOR

DSA = "accuracy with DSA (%)"
BALANCED = "balanced accuracy with DSA (%)"


def study_row(method: str, init: str, dsa: str, dataset: str = "CIFAR10", ipc: int = 10, **extra) -> dict:
    return {"method": method, "dataset": dataset, "ipc": ipc, "init": init, "iterations": 10, DSA: dsa, **extra}


def test_shown_writes_a_mean_and_its_std_as_the_tables_show_them():
    assert interpretation.shown((37.849, 0.2)) == "37.85 ± 0.20"


def test_floor_gaps_says_beats_or_short_of_with_the_gap_and_the_spread():
    table = numeric_table([study_row(FLOOR, "-", "26.50 ± 0.20"),
                          study_row("Distribution matching", "real", "37.80 ± 0.20"),
                          study_row("Distribution matching", "noise", "25.60 ± 1.50"),
                          study_row("Gradient matching + DSA", "real", "-")])
    text = interpretation.floor_gaps(table)
    assert ("Distribution matching, real init on CIFAR10 (ipc 10) beats the random-real floor by 11.30 points "
            "(37.80 ± 0.20 vs 26.50 ± 0.20); the gap is larger than both stds.") in text
    assert ("Distribution matching, noise init on CIFAR10 (ipc 10) falls 0.90 points short of the random-real "
            "floor") in text
    assert "within the spread over networks" in text.split("noise init")[1]
    assert "Gradient matching" not in text                     # '-' means not measured: skipped
    assert "1 of 2 distilled sets beat the floor by more than both stds" in text


def test_floor_gaps_matches_floors_by_dataset_and_ipc_and_reads_the_given_column():
    table = numeric_table([
        study_row(FLOOR, "-", "-", dataset="MHIST", ipc=10, **{BALANCED: "58.00 ± 0.50"}),
        study_row(FLOOR, "-", "-", dataset="MHIST", ipc=50, **{BALANCED: "62.00 ± 0.50"}),
        study_row("Trajectory matching", "real", "-", dataset="MHIST", ipc=50, **{BALANCED: "60.00 ± 0.50"}),
        study_row("Trajectory matching", "real", "-", dataset="MHIST", ipc=10, **{BALANCED: "60.00 ± 0.50"}),
        {"method": "majority class", "dataset": "MHIST", "ipc": "-", "init": "-", DSA: "63.15", BALANCED: "50.00"},
    ])
    text = interpretation.floor_gaps(table, column=BALANCED)
    assert "(ipc 50) falls 2.00 points short of the random-real floor (60.00 ± 0.50 vs 62.00 ± 0.50)" in text
    assert "(ipc 10) beats the random-real floor by 2.00 points (60.00 ± 0.50 vs 58.00 ± 0.50)" in text
    assert "majority class" not in text
    assert text.startswith("**Balanced accuracy with DSA")


def test_init_comparison_names_the_initialisation_that_is_ahead():
    ahead = numeric_table([study_row("Gradient matching + DSA", "real", "33.50 ± 0.30"),
                          study_row("Gradient matching + DSA", "noise", "25.60 ± 0.20")])
    assert "real init is ahead of noise init by 7.90 points" in interpretation.init_comparison(ahead)
    caught_up = numeric_table([study_row("Distribution matching", "real", "30.00 ± 1.00"),
                              study_row("Distribution matching", "noise", "30.50 ± 1.00")])
    text = interpretation.init_comparison(caught_up)
    assert "noise init is ahead of real init by 0.50 points" in text
    assert "within the spread over networks" in text


def test_dsa_effect_signs_the_change():
    table = numeric_table([study_row("Gradient matching + DSA", "real", "33.50 ± 0.10",
                                    **{"accuracy (%)": "32.50 ± 0.10"}),
                          study_row("Gradient matching + DSA", "noise", "25.00 ± 0.10",
                                    **{"accuracy (%)": "26.00 ± 0.10"})])
    text = interpretation.protocol_effect(table)
    assert "real init on CIFAR10 (ipc 10): training with DSA changes accuracy by +1.00 points" in text
    assert "noise init on CIFAR10 (ipc 10): training with DSA changes accuracy by -1.00 points" in text
    assert "Training with DSA raises accuracy by more than both stds on 1 of 2 sets" in text


def test_protocol_effect_compares_the_headline_with_the_course_protocol_floor_included():
    course = interpretation.COURSE_COLUMN
    table = numeric_table([study_row(FLOOR, "-", "30.00 ± 1.00", **{course: "25.00 ± 1.00"}),
                           study_row("Gradient matching + DSA", "real", "40.00 ± 0.50", **{course: "31.00 ± 0.50"}),
                           study_row("Gradient matching + DSA", "noise", "38.00 ± 0.50")])
    text = interpretation.protocol_effect(table, second=course, change="the headline protocol",
                                          other="the course report's way")
    assert "random real on CIFAR10 (ipc 10): the headline protocol changes accuracy by +5.00 points" in text
    assert "(40.00 ± 0.50 vs 31.00 ± 0.50 the course report's way)" in text
    assert "on 2 of 2 sets" in text   # the noise set has no course-protocol number: left out, not invented
    gaps = interpretation.floor_gaps(table, column=course)
    assert "beats the random-real floor by 6.00 points (31.00 ± 0.50 vs 25.00 ± 1.00)" in gaps


def test_method_comparison_orders_methods_and_gives_the_leaders_margin():
    versus = numeric_table([{"dataset": "MNIST", "ipc": 10, "init": "-", "method": FLOOR, DSA: "83.80 ± 0.50"},
                           {"dataset": "MNIST", "ipc": 10, "init": "real", "method": "Gradient matching + DSA",
                            DSA: "87.95 ± 0.38"},
                           {"dataset": "MNIST", "ipc": 10, "init": "real", "method": "Trajectory matching",
                            DSA: "88.44 ± 0.32"}])
    text = interpretation.method_comparison(versus)
    assert "Trajectory matching (88.44 ± 0.32) > Gradient matching + DSA (87.95 ± 0.38)" in text
    assert "Trajectory matching leads Gradient matching + DSA by 0.49 points, larger than both stds" in text
    assert FLOOR not in text


def transfer(lenet_floor: str) -> pd.DataFrame:
    return numeric_table([
        {"training set": "random real, CIFAR10, ipc 10", "ConvNet (%)": "26.50 ± 0.00", "LeNet (%)": lenet_floor,
         "MLP (%)": "-"},
        {"training set": "Distribution matching, CIFAR10, ipc 10, real init", "ConvNet (%)": "37.65 ± 0.05",
         "LeNet (%)": "10.90 ± 1.90", "MLP (%)": "24.75 ± 0.85"},
        {"training set": "Gradient matching + DSA, CIFAR10, ipc 10, real init", "ConvNet (%)": "34.85 ± 0.85",
         "LeNet (%)": "9.00 ± 0.50", "MLP (%)": "24.30 ± 1.40"},
    ])


def test_transfer_summary_reports_chance_level_architectures_and_gains():
    text = interpretation.transfer_summary(transfer("10.70 ± 1.70"), chance=10.0)
    assert "above chance: ConvNet (+16.50 points)" in text
    assert "at chance: LeNet (10.70 ± 1.70)" in text
    assert ("Distribution matching, CIFAR10, ipc 10, real init: gains most on ConvNet (+11.15 points) and least "
            "on LeNet (+0.20 points); beats random real by more than both stds on 1 of 2 architectures "
            "(ConvNet)") in text
    assert "gains most on ConvNet (+8.35 points) and least on LeNet (-1.70 points)" in text
    assert "Averaged over the 2 distilled sets, ConvNet gains most (+9.75) and LeNet least (-0.75)" in text
    with_machines = transfer("10.70 ± 1.70").assign(machine=["machine A", "machine B", "machine A"])
    assert interpretation.transfer_summary(with_machines, chance=10.0) == text, "a machine column is not a network"


def test_transfer_summary_follows_the_random_real_accuracy():
    text = interpretation.transfer_summary(transfer("18.00 ± 1.00"), chance=10.0)
    assert "LeNet (+8.00 points)" in text and "at chance" not in text
    below = interpretation.transfer_summary(transfer("5.00 ± 1.00"), chance=10.0)
    assert "below chance: LeNet (5.00 ± 1.00)" in below


def nas(spearman: float, ceiling: float, full: str = "ConvNetD3W128", distilled: str = "ConvNetD3W128") -> dict:
    return {"spearman": spearman, "kendall": 0.1, "best on full data": full, "best on distilled data": distilled,
            "same winner": full == distilled, interpretation.CEILING: ceiling,
            "search time full data (s)": 150.0, "search time distilled (s)": 50.0}


def test_nas_agreement_sets_the_proxy_against_the_seed_ceiling():
    below = interpretation.nas_agreement(nas(0.2, 0.8, distilled="ConvNetD4W128"))
    assert "Spearman ρ = 0.20" in below and "0.60 below the seed-vs-seed ceiling (ρ = 0.80)" in below
    assert "Full data picks ConvNetD3W128, the distilled set ConvNetD4W128." in below
    assert "3.0 times less time" in below
    reached = interpretation.nas_agreement(nas(0.9, 0.8))
    assert "reaches the seed-vs-seed ceiling (ρ = 0.80)" in reached and "Both pick ConvNetD3W128." in reached
    assert "does not agree with itself" in interpretation.nas_agreement(nas(0.5, -0.1))
    assert "No seed-vs-seed ceiling was measured" in interpretation.nas_agreement(nas(0.5, math.nan))


def test_nas_agreement_reads_the_one_row_summary_table_without_a_ceiling_column():
    summary = nas(0.4, 0.0)
    del summary[interpretation.CEILING]
    text = interpretation.nas_agreement(numeric_table([summary]))
    assert "Spearman ρ = 0.40" in text and "No seed-vs-seed ceiling" in text


def test_baseline_summary_compares_with_published_and_counts_cost():
    table = numeric_table([{"dataset": "CIFAR10", "train images": 50000, "epochs": 2, "test accuracy (%)": 67.25,
                           "MACs per image (M)": 51.61}])
    text = interpretation.baseline_summary(table, published={"CIFAR10": 84.8})
    assert "67.25 % test accuracy after 2 epochs, 17.55 points below the published" in text
    assert "2.58 T MACs" in text and "500 times fewer per epoch" in text
    assert "published" not in interpretation.baseline_summary(table)


def test_mhist_summary_counts_sets_above_the_floors_and_the_gap_to_full_data():
    table = numeric_table([
        study_row("Distribution matching", "real", "59.00 ± 0.10", dataset="MHIST", **{BALANCED: "61.00 ± 0.40"}),
        study_row("Distribution matching", "noise", "65.00 ± 0.10", dataset="MHIST", **{BALANCED: "50.50 ± 1.00"}),
        {"method": "majority class", "dataset": "MHIST", "ipc": "-", "init": "-", DSA: "63.15", BALANCED: "50.00"},
        {"method": "full training set", "dataset": "MHIST", "ipc": "all", "init": "-", DSA: "76.77",
         BALANCED: "71.48"},
    ])
    text = interpretation.mhist_summary(table)
    assert "1 of 2 distilled sets are above 50 % balanced accuracy" in text
    assert "not: Distribution matching, noise init" in text
    assert "1 of 2 distilled sets have a plain accuracy above the majority-class floor (63.15 %)" in text
    assert "(71.48 %) is 10.48 points ahead of the best distilled set, Distribution matching, real init" in text


def test_best_summary_follows_the_sign_of_the_gain():
    best = numeric_table([{"dataset": "MHIST", "ipc": "10", "metric": "balanced accuracy",
                          "best set": "Gradient matching + DSA, real init", "best (%)": "58.58 ± 0.23",
                          "random real (%)": "58.32 ± 0.72", "gain (points)": 0.26,
                          "sets above random real": 1, "distilled sets": 6},
                         {"dataset": "MNIST", "ipc": "10", "metric": "accuracy", "best set": "DM, real init",
                          "best (%)": "80.00 ± 0.20", "random real (%)": "83.82 ± 0.55", "gain (points)": -3.82,
                          "sets above random real": 0, "distilled sets": 6}])
    text = interpretation.best_summary(best)
    assert "is 0.26 points above random real (58.32 ± 0.72), not larger than both stds" in text
    assert "is 3.82 points below random real (83.82 ± 0.55), larger than both stds; 0 of 6" in text


def test_cost_per_iteration_ranks_methods_cheapest_first():
    table = numeric_table([study_row(FLOOR, "-", "26.50 ± 0.20", **{"distillation time (s)": 0.0}),
                          study_row("Gradient matching + DSA", "real", "33.0 ± 0.1", **{"distillation time (s)": 90.0}),
                          study_row("Distribution matching", "real", "37.0 ± 0.1",
                                    **{"distillation time (s)": "5.0"})])
    text = interpretation.cost_per_iteration(table)
    assert "CIFAR10: Distribution matching 0.50 s, Gradient matching + DSA 9.00 s" in text
    assert "Distribution matching is the cheapest per iteration here" in text
