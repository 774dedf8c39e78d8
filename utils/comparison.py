"""The comparison of all methods (08): gather every study table, set them beside published numbers, and write
`results/summary.md`, the page a grader reads first."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from utils.distill import METHODS, find_synthetic
from utils.interpretation import parse
from utils.results import atomic_write, code_commit, read_metadata, read_table
from utils.study import FLOOR
from utils.synthetic import parse_synthetic_name

# every method notebook's table (in notebook order), then MHIST's
STUDY_TABLES = (*sorted(record.notebook for record in METHODS.values()), "05_mhist")
# ConvNet, 10 images per class, as published (DC: ICLR 2021; DSA: ICML 2021; DM: WACV 2023; MTT: CVPR 2022).
PUBLISHED = [
    ("MNIST", "DC (gradient matching)", 97.4), ("MNIST", "DSA (gradient matching + DSA)", 97.8),
    ("MNIST", "DM", 97.5), ("MNIST", "whole training set", 99.6),
    ("CIFAR10", "DC (gradient matching)", 44.9), ("CIFAR10", "DSA (gradient matching + DSA)", 52.1),
    ("CIFAR10", "DM", 48.9), ("CIFAR10", "MTT", 65.3), ("CIFAR10", "whole training set", 84.8),
]
# The course report this repository reproduces (ConvNet, 10 images per class).
COURSE_REPORT = "ECE1512 2022F Project B report (Shi & Chen)"
COURSE_REPORT_NUMBERS = [("MNIST", "GM", 94.39), ("CIFAR10", "GM", 38.50), ("CIFAR10", "DM", 44.01),
                         ("CIFAR10", "MTT", 45.75)]
# Every study evaluates with DSA, so that accuracy is the common column; the others are '-' where not measured.
PLAIN = "accuracy (%)"
COLUMNS = ["method", "dataset", "ipc", "init", "accuracy with DSA (%)", "balanced accuracy with DSA (%)",
           "accuracy without DSA (%)", "models", "iterations", "distillation time (s)", "peak memory (MiB)"]

# The targets of issue 10: the ECE1512 2022F Project B report's GPU numbers, rounded up (ConvNet, 10 images per
# class, test accuracy % of networks trained on the set with DSA): (dataset, method key, init, target).
ACCURACY_TARGETS = (
    ("MNIST", "gm", "real", 94.4), ("MNIST", "gm", "noise", 94.0),
    ("MNIST", "dm", "real", 94.7), ("MNIST", "dm", "noise", 94.3),
    ("MNIST", "mtt", "real", 95.0), ("MNIST", "mtt", "noise", 90.0),
    ("CIFAR10", "gm", "real", 39.2), ("CIFAR10", "gm", "noise", 38.5),
    ("CIFAR10", "dm", "real", 44.0), ("CIFAR10", "dm", "noise", 43.6),
    ("CIFAR10", "mtt", "real", 45.8), ("CIFAR10", "mtt", "noise", 36.0),
)
# MHIST (issue 10), per ipc: the best distilled set beats random real images of the same size by at least this many
# points of balanced accuracy, by more than either std, and its accuracy exceeds the majority class's (%):
# (ipc, minimum gain in points, majority-class accuracy).
MHIST_TARGETS = (("10", 3.0, 63.2), ("50", 3.0, 63.2))
TARGETS_TITLE = "Targets (issue 10)"
TARGET_COLUMN = "target (ECE1512 report, GPU)"
STAMP_PREFIX = "**Run:**"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def gather(results_dir: str | Path, profile: str | None = None) -> pd.DataFrame:
    """Every set of every study table present, once each, in one frame (profile from each table's metadata);
    with `profile`, a table written by another profile is skipped with a warning."""
    frames = []
    for name in STUDY_TABLES:
        path = Path(results_dir) / "tables" / f"{name}.csv"
        if path.exists():
            table_profile = read_metadata(path).get("profile", "?")
            if profile is not None and table_profile != profile:
                warnings.warn(f"skipping {path}: written by the {table_profile!r} profile, not {profile!r}",
                              stacklevel=2)
                continue
            frame = read_table(path).rename(columns={PLAIN: "accuracy without DSA (%)"})
            frame = frame[[c for c in COLUMNS if c in frame.columns]].copy()
            frame["profile"] = table_profile
            frame["source"] = name
            frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"No study tables under {Path(results_dir) / 'tables'}; run notebooks 02-07 first.")
    table = pd.concat(frames, ignore_index=True).reindex(columns=[*COLUMNS, "profile", "source"])
    table["ipc"] = table["ipc"].astype(str)
    table = table.drop_duplicates(subset=["method", "dataset", "ipc", "init"], ignore_index=True)
    return table.astype(object).map(_cell)


def _cell(value):
    """'-' for a value not measured; whole floats as integers (pandas turns integer columns with gaps to float)."""
    if isinstance(value, float):
        return "-" if value != value else int(value) if value.is_integer() else value
    return value


def distilled_only(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of distilled sets (not the random-real, majority-class or full-data references)."""
    return table[table["method"].isin([record.label for record in METHODS.values()])]


def score_column(rows: pd.DataFrame) -> str:
    """The column sets are ranked by: balanced accuracy where every row has it (imbalanced MHIST), else accuracy."""
    balanced = "balanced accuracy with DSA (%)"
    return balanced if (rows[balanced] != "-").all() else "accuracy with DSA (%)"


def score_columns(table: pd.DataFrame) -> dict[str, str]:
    """`score_column` of each dataset's distilled sets."""
    return {dataset: score_column(rows) for dataset, rows in distilled_only(table).groupby("dataset")}


def best_per_dataset(table: pd.DataFrame) -> pd.DataFrame:
    """For each dataset and ipc: the best distilled set and its gain over the random-real floor, ranked by
    balanced accuracy where the study measured it (imbalanced MHIST), else accuracy; all trained with DSA."""
    rows = []
    for (dataset, ipc), group in table.groupby(["dataset", "ipc"], sort=False):
        sets, floor = distilled_only(group), group[group["method"] == FLOOR]
        if sets.empty or floor.empty:
            continue
        column = score_column(sets)
        scores, floor_score = sets[column].map(mean_of), mean_of(floor[column].iloc[0])
        best = sets.loc[scores.idxmax()]
        rows.append({"dataset": dataset, "ipc": ipc, "metric": column.replace(" with DSA (%)", ""),
                     "best set": f"{best['method']}, {best['init']} init", "best (%)": best[column],
                     "random real (%)": floor[column].iloc[0],
                     "gain (points)": round(scores.max() - floor_score, 2),
                     "sets above random real": f"{int((scores > floor_score).sum())} of {len(sets)}"})
    return pd.DataFrame(rows)


def side_by_side(results_dir: str | Path, names: list[str]) -> pd.DataFrame:
    """Rows of the named study tables that exist, random-real rows once, sorted for reading side by side."""
    frames = [read_table(p) for p in (Path(results_dir) / "tables" / f"{n}.csv" for n in names) if p.exists()]
    columns = ["dataset", "ipc", "init", "method", "accuracy with DSA (%)", "distillation time (s)",
               "peak memory (MiB)"]
    table = pd.concat([f[[c for c in columns if c in f.columns]] for f in frames], ignore_index=True)
    return table.drop_duplicates(subset=["dataset", "ipc", "init", "method"]).sort_values(
        ["dataset", "ipc", "init", "method"], ignore_index=True)


def unevaluated_sets(results_dir: str | Path, table: pd.DataFrame) -> list[str]:
    """Saved synthetic sets that no study table reports (e.g. from a run with another profile)."""
    reported = {(r.method, r.dataset, str(r.ipc), r.init) for r in table.itertuples()}
    unreported = []
    for path in find_synthetic(results_dir):
        info = parse_synthetic_name(path)
        if (METHODS[info["method"]].label, info["dataset"], str(info["ipc"]), info["init"]) not in reported:
            unreported.append(path.name)
    return unreported


def mean_of(summary: str) -> float:
    """The mean of a 'mean ± std' cell."""
    return float(str(summary).split(" ± ")[0])


def _measured(cell) -> bool:
    return cell not in ("-", "", None) and cell == cell


def gather_curves(results_dir: str | Path) -> pd.DataFrame:
    """Every study's accuracy-vs-iterations table (`<prefix>_curves.csv`) in one frame (empty if none)."""
    frames = [read_table(p) for p in sorted((Path(results_dir) / "tables").glob("*_curves.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def iterations_needed(curve: pd.DataFrame, target: float, column: str = "accuracy (%)") -> str:
    """The budget a set's curve says reaching `target` needs: its last two points extrapolated linearly in
    log(iterations); 'reached' where it already is, '-' without a curve, and 'not on this trend' where the
    curve is flat or falling."""
    points = curve.sort_values("iteration")[["iteration", column]].to_numpy(dtype=float)
    if len(points) < 2:
        return "-"
    (it1, a1), (it2, a2) = points[-2], points[-1]
    if a2 >= target:
        return "reached"
    slope = (a2 - a1) / (np.log(it2) - np.log(it1))
    if slope <= 0:
        return "not on this trend"
    needed = it2 * np.exp((target - a2) / slope)
    return f"≈ {float(f'{needed:.2g}'):,.0f}" if needed < 1e9 else "not on this trend"


NEEDED_COLUMN = "iterations the curve says the target needs"


def targets_table(table: pd.DataFrame, profile: str, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Issue 10's targets (`ACCURACY_TARGETS`, `MHIST_TARGETS`) beside this run's numbers from the gathered study
    tables: met is 'yes' or 'no', or 'not run' where the set is not in the tables; with `curves`, the iterations
    each accuracy row's curve says the target needs (`iterations_needed`)."""
    run_column = f"this run ({profile})"
    ipc = table["ipc"].astype(str)
    rows = []
    for dataset, method, init, target in ACCURACY_TARGETS:
        label = METHODS[method].label
        found = table[(table["method"] == label) & (table["dataset"] == dataset) & (ipc == "10")
                      & (table["init"] == init)]
        cell = found["accuracy with DSA (%)"].iloc[0] if len(found) else "-"
        run = _measured(cell)
        rows.append({"dataset": dataset, "method": label, "init": init, TARGET_COLUMN: f"≥ {target:.1f}",
                     run_column: cell if run else "-",
                     "networks": found.iloc[0].get("models", "-") if run else "-",
                     "met": ("yes" if mean_of(cell) >= target else "no") if run else "not run"})
        if curves is not None and not curves.empty:
            curve = curves[(curves["method"] == label) & (curves["dataset"] == dataset)
                           & (curves["ipc"].astype(str) == "10") & (curves["init"] == init)]
            rows[-1][NEEDED_COLUMN] = iterations_needed(curve, target) if run else "-"
    balanced = "balanced accuracy with DSA (%)"
    for size, gain_needed, majority in MHIST_TARGETS:
        group = table[(table["dataset"] == "MHIST") & (ipc == size)]
        sets, floor = distilled_only(group), group[group["method"] == FLOOR]
        sets = sets[sets[balanced].map(_measured)]
        row = {"dataset": "MHIST", "method": f"best distilled set vs random real, ipc {size}", "init": "-",
               TARGET_COLUMN: f"≥ {gain_needed:.1f} points balanced accuracy over random real, gap > both stds; "
                              f"accuracy > {majority:g} % majority class",
               run_column: "-", "networks": "-", "met": "not run"}
        if not sets.empty and not floor.empty and _measured(floor[balanced].iloc[0]):
            best, floor_cell = sets.loc[sets[balanced].map(mean_of).idxmax()], floor[balanced].iloc[0]
            gain = mean_of(best[balanced]) - mean_of(floor_cell)
            stds = parse(best[balanced])[1], parse(floor_cell)[1]
            accuracy = mean_of(best["accuracy with DSA (%)"]) if _measured(best["accuracy with DSA (%)"]) else None
            met = gain >= gain_needed and gain > max(stds) and accuracy is not None and accuracy > majority
            row.update({run_column: f"{best['method']}, {best['init']} init: {gain:+.2f} points "
                                    f"(std {stds[0]:.2f}, random real {stds[1]:.2f}); accuracy "
                                    + (f"{accuracy:.2f} %" if accuracy is not None else "-"),
                        "networks": best.get("models", "-"), "met": "yes" if met else "no"})
        rows.append(row)
    return pd.DataFrame(rows)


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU model (as `utility.hardware_name` reads it) and which of `CPU_FLAGS` it has, from /proc/cpuinfo."""
    model, flags = "unknown CPU", []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        present = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        flags = [flag for flag in CPU_FLAGS if flag in present]
    return model, flags


def machine_description(results_dir: str | Path) -> str:
    """What the run ran on: the GPU (from the tables' metadata, if any), the CPU model, its flags among
    avx2/avx512f/avx512_bf16/amx_bf16, the cores this process may use, and the precision the tables record."""
    metas = [read_metadata(p) for p in (Path(results_dir) / "tables" / f"{n}.csv"
                                        for n in (*STUDY_TABLES, "08_comparison")) if p.exists()]
    gpus = sorted({m.get("hardware", "GPU") for m in metas if m.get("device", "cpu") != "cpu"})
    precisions = sorted({m["precision"] for m in metas if m.get("precision")})
    model, flags = cpu_model_and_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = f"{model} ({', '.join(flags) or 'none of ' + '/'.join(CPU_FLAGS)}), {cores} cores"
    return ", ".join([*gpus, cpu, f"precision {'/'.join(precisions) or 'unknown'}"])


def stamp_line(profile: str, wall_seconds: float, machine: str, commit: str, executor: str,
               fresh: bool | None = None, command: str = "make results") -> str:
    """The '**Run:**' line: command, profile, wall time, cache state, machine, commit, executor."""
    hours, minutes = divmod(round(wall_seconds / 60), 60)
    start = {True: " from an empty results/ and .cache/", False: " with an existing cache", None: ""}[fresh]
    return (f"{STAMP_PREFIX} {command}, profile {profile}, {hours} h {minutes} min wall time{start} on {machine}, "
            f"commit {commit}, executor {executor}.")


def stamp_summary(results_dir: str | Path, *, profile: str, wall_seconds: float, executor: str,
                  fresh: bool | None = None, machine: str | None = None, commit: str | None = None,
                  command: str = "make results") -> Path:
    """Insert (or replace) the `stamp_line` directly under the title of `<results>/summary.md`, atomically.
    `machine` defaults to `machine_description(results_dir)`, `commit` to `utils.results.code_commit()`."""
    path = Path(results_dir) / "summary.md"
    line = stamp_line(profile, wall_seconds, machine or machine_description(results_dir), commit or code_commit(),
                      executor, fresh, command)
    lines = path.read_text().split("\n")
    kept = []
    for k, text in enumerate(lines):   # drop an earlier stamp and the blank line after it
        if text.startswith(STAMP_PREFIX) or (text == "" and k > 0 and lines[k - 1].startswith(STAMP_PREFIX)):
            continue
        kept.append(text)
    rest = kept[1:]
    while rest and rest[0] == "":
        rest.pop(0)
    text = "\n".join([kept[0], "", line, "", *rest])
    return atomic_write(path, lambda p: p.write_text(text))


def published_table() -> pd.DataFrame:
    """Published and course-report (ECE1512 2022F Project B, Shi & Chen) accuracies, labelled by source."""
    rows = [{"dataset": d, "method": m, "accuracy (%)": a, "source": "published (papers)"} for d, m, a in PUBLISHED]
    rows += [{"dataset": d, "method": m, "accuracy (%)": a, "source": COURSE_REPORT}
             for d, m, a in COURSE_REPORT_NUMBERS]
    return pd.DataFrame(rows)


def write_summary(results_dir: str | Path, ours: pd.DataFrame, best: pd.DataFrame, figure: str,
                  metadata: dict[str, str]) -> Path:
    """`results/summary.md`: headline numbers, published ones beside them, and where everything else is."""
    root = Path(results_dir)
    tables = sorted(p.name for p in (root / "tables").glob("*.md"))
    figures = sorted(p.name for p in (root / "figures").glob("*.png"))
    headline = ours[ours["ipc"].astype(str) == "10"]
    lines = [
        "# Dataset distillation: results summary", "",
        f"Profile `{metadata['profile']}`, seed {metadata['seed']}, device `{metadata['device']}`, "
        f"torch {metadata['torch']}, generated {metadata['created_utc']}. Accuracies are test accuracy of a ConvNet "
        "trained from scratch on the set (mean ± std over several networks). The `cpu` profile uses far smaller "
        "budgets than the papers, so its numbers are lower bounds; the `paper` profile reproduces the published "
        "settings on a GPU.", "",
        f"## {TARGETS_TITLE}", "",
        f"Accuracy (%) with DSA at 10 images per class against the GPU numbers of the {COURSE_REPORT}, rounded up; "
        "MHIST: the best distilled set against random real images of the same size.", "",
        "The last column extrapolates each set's accuracy-vs-iterations curve (accuracy part-way through and at the "
        "end of its iterations, `tables/*_curves.csv`, figures `*_accuracy_vs_iterations.png`) linearly in "
        "log(iterations) from its last two points: a rough estimate of the distillation budget the target needs at "
        "this evaluation protocol, not a measurement.", "",
        targets_table(ours, metadata["profile"], gather_curves(root)).fillna("-").to_markdown(index=False), "",
        "## The best distilled set per dataset, against random real images of the same size", "",
        best.to_markdown(index=False), "",
        "## Our results (10 images per class)", "", headline.to_markdown(index=False), "",
        f"## Published numbers (ConvNet, 10 images per class) and the {COURSE_REPORT}", "",
        published_table().to_markdown(index=False), "",
        f"![accuracy vs distillation time](figures/{figure}.png)", "",
        "## Every table and figure", "",
        *[f"- [tables/{t}](tables/{t})" for t in tables], "",
        *[f"- [figures/{f}](figures/{f})" for f in figures], "",
        "Executed notebooks: [notebooks/](notebooks/). Synthetic sets: [synthetic/](synthetic/) "
        "(load with `utils.synthetic.SyntheticSet.load`).", "",
    ]
    return atomic_write(root / "summary.md", lambda p: p.write_text("\n".join(lines)))
