"""The comparison of all methods (08): gather every study table, set them beside published numbers, and write
`results/summary.md`, the page a grader reads first."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from utility import hardware_name
from utils.distill import METHODS, find_synthetic
from utils.distill.method import PREPARATION_SECONDS
from utils.profiles import PROTOCOLS, EvaluationSettings
from utils.results import (
    MACHINE_COLUMN,
    atomic_write,
    code_commit,
    display_frame,
    mean_std,
    read_metadata,
    read_table,
    std_column,
)
from utils.study import FLOOR, FULL_DATA, protocol_words
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
# The course report this repository reproduces.
COURSE_REPORT = "ECE1512 2022F Project B report (Shi & Chen)"


@dataclass(frozen=True)
class CourseNumber:
    """One number of the course report, and where this run's counterpart is: `column` of the row of
    `tables/<table>.csv` whose cells equal `match` (no counterpart where `table` is empty)."""

    notebook: str
    what: str
    value: float
    unit: str
    source: str            # where in the course report (its table number where known)
    table: str = ""
    match: tuple[tuple[str, str], ...] = ()
    column: str = ""
    course_column: str = ""   # this run's counterpart under the course report's own protocol, where evaluated


# The course report's accuracies of ConvNets trained with DSA on its ipc-10 distilled sets, as printed there:
# (method key, dataset, init, accuracy %, its table). Where two of its tables give a row, both are here.
COURSE_DISTILLED = (
    ("gm", "MNIST", "real", 94.39, "Tables 2 and 6, the higher"),
    ("gm", "MNIST", "noise", 94.07, "Tables 2 and 6, the higher"),
    ("gm", "CIFAR10", "real", 39.19, "Tables 2 and 6, the higher"),
    ("gm", "CIFAR10", "noise", 35.37, "Table 2"),
    ("gm", "CIFAR10", "noise", 36.39, "Table 6"),
    ("dm", "MNIST", "real", 94.68, "Tables 7 and 8, the higher"),
    ("dm", "MNIST", "noise", 94.27, "Tables 7 and 8, the higher"),
    ("dm", "CIFAR10", "real", 44.01, "Tables 7 and 8, the higher"),
    ("dm", "CIFAR10", "noise", 43.55, "Tables 7 and 8, the higher"),
    ("mtt", "CIFAR10", "real", 45.75, "Table 6"),
    ("mtt", "CIFAR10", "noise", 35.97, "Table 6"),
)

# A study table's accuracy under the course report's own evaluation protocol (`utils.profiles.PROTOCOLS['course']`).
COURSE_PROTOCOL = f"accuracy{PROTOCOLS['course'].label} (%)"
COURSE_PROTOCOL_WORDS = protocol_words("course", EvaluationSettings())
# The course report's architecture search on MNIST (ConvNet width 128, both sides trained 20 epochs with cosine
# annealing): (candidate, accuracy % after training on full data, on its GM + DSA ipc-10 set).
COURSE_NAS_ACCURACY = (("ConvNetD1", 98.11, 83.81), ("ConvNetD2", 98.79, 91.27), ("ConvNetD4", 99.26, 94.67))

# Every number this repository quotes from the course report, in one place (GPU, ConvNet unless named). `source` is
# its table where issue 26 names it (the distilled sets), else the experiment.
_GM = "Gradient matching + DSA"
COURSE_NUMBERS = (
    CourseNumber("01", "MNIST, ConvNet on the full training set", 99.06, "%", "baselines (20 epochs)",
                 "01_baseline", (("dataset", "MNIST"),), "test accuracy (%)"),
    CourseNumber("01", "CIFAR10, ConvNet on the full training set", 72.34, "%", "baselines (20 epochs)",
                 "01_baseline", (("dataset", "CIFAR10"),), "test accuracy (%)"),
    CourseNumber("01", "MNIST, training time of the full-data ConvNet", 259.7, "s", "baselines",
                 "01_baseline", (("dataset", "MNIST"),), "training time (s)"),
    CourseNumber("01", "CIFAR10, training time of the full-data ConvNet", 255.5, "s", "baselines",
                 "01_baseline", (("dataset", "CIFAR10"),), "training time (s)"),
    *(CourseNumber("03", f"{dataset}, gradient-matching set ({init} init) trained on LeNet", value, "%",
                   "ECE1512 report, cross-architecture (LeNet)",
                   "03_cross_architecture",
                   (("training set", f"{_GM}, {dataset}, ipc 10, {init} init"),), "LeNet (%)")
      for dataset, init, value in (("MNIST", "real", 88.27), ("MNIST", "noise", 84.67),
                                   ("CIFAR10", "real", 25.83), ("CIFAR10", "noise", 24.24))),
    *(CourseNumber("04", f"MNIST NAS, {arch} trained on {side}", values[k], "%",
                   "ECE1512 report, NAS on MNIST",
                   "04_nas_MNIST_candidates", (("candidate", arch),), column)
      for k, (side, column) in enumerate((("full data", "full-data accuracy (%)"),
                                          ("the distilled set", "distilled accuracy (%)")))
      for arch, *values in COURSE_NAS_ACCURACY),
    *(CourseNumber(METHODS[method].number, f"{dataset}, {METHODS[method].label}, ipc 10, {init} init", value, "%",
                   source, METHODS[method].notebook, (("dataset", dataset), ("ipc", "10"), ("init", init)),
                   "accuracy with DSA (%)", COURSE_PROTOCOL)
      for method, dataset, init, value, source in COURSE_DISTILLED),
)
# Every study evaluates with DSA, so that accuracy is the common column; the others are empty where not measured.
PLAIN = "accuracy (%)"
SCORES = ["accuracy with DSA (%)", "balanced accuracy with DSA (%)", "accuracy without DSA (%)", COURSE_PROTOCOL]
COLUMNS = ["method", "dataset", "ipc", "init", *(c for score in SCORES for c in (score, std_column(score))),
           "models", "iterations", "distillation time (s)", "peak memory (MiB)"]


def course_target(dataset: str, method: str, init: str) -> tuple[float, str]:
    """The higher of the course report's numbers for one row of `COURSE_DISTILLED`, with its table."""
    return max((value, source) for m, d, i, value, source in COURSE_DISTILLED
               if (d, m, i) == (dataset, method, init))


# The targets (issues 10 and 26; ConvNet, 10 images per class, test accuracy % of networks trained on the set with
# DSA): the higher of the course report's numbers for the row (`COURSE_DISTILLED`), and for MNIST trajectory
# matching, which the course report has no number for, the issues' own: (dataset, method key, init, target, source).
ACCURACY_TARGETS = (
    *((dataset, method, init, *course_target(dataset, method, init))
      for dataset in ("MNIST", "CIFAR10") for method in ("gm", "dm", "mtt") for init in ("real", "noise")
      if (dataset, method) != ("MNIST", "mtt")),
    ("MNIST", "mtt", "real", 95.0, "issue 10"), ("MNIST", "mtt", "noise", 90.0, "issue 26"),
)
# MHIST, per ipc: the best distilled set beats random real images of the same size by at least this many points of
# balanced accuracy (0: any), by more than either std, and its accuracy exceeds the majority class's (%):
# (ipc, minimum gain in points, majority-class accuracy, source). Issue 26 keeps issue 10's 3 points at ipc 10 and
# asks only for a gap beyond the stds at ipc 50; issue 10's bar at ipc 50 stays beside it.
MHIST_TARGETS = (("10", 3.0, 63.2, "issues 10 and 26"), ("50", 0.0, 63.2, "issue 26"), ("50", 3.0, 63.2, "issue 10"))
# Sets that must beat the random-real floor of their size by more than both stds, whatever the number (issue 26:
# the course report has no MNIST trajectory-matching number): (dataset, method key, init, source).
FLOOR_TARGETS = (("MNIST", "mtt", "real", "issue 26"),)
TARGETS_TITLE = "Targets (issues 10 and 26)"
CEILING_COLUMN = "full-data ceiling, same network"
TARGET_COLUMN = "target (ECE1512 report, GPU)"
STAMP_PREFIX = "**Run:**"


def gather(results_dir: str | Path, profile: str | None = None) -> pd.DataFrame:
    """Every set of every study table present, once each, in one frame (profile from each table's metadata);
    with `profile`, a table written by another profile is skipped with a warning. Where a table has a machine
    column (units from several machines), every row gets its machine (else its table's)."""
    frames = []
    for name in STUDY_TABLES:
        path = Path(results_dir) / "tables" / f"{name}.csv"
        if path.exists():
            table_profile = read_metadata(path).get("profile", "?")
            if profile is not None and table_profile != profile:
                warnings.warn(f"skipping {path}: written by the {table_profile!r} profile, not {profile!r}",
                              stacklevel=2)
                continue
            frame = read_table(path).rename(columns={PLAIN: "accuracy without DSA (%)",
                                                     std_column(PLAIN): std_column("accuracy without DSA (%)")})
            frame = frame[[c for c in (*COLUMNS, MACHINE_COLUMN) if c in frame.columns]].copy()
            frame["profile"] = table_profile
            frame["source"] = name
            frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"No study tables under {Path(results_dir) / 'tables'}; run notebooks 02-07 first.")
    machine = []
    if any(MACHINE_COLUMN in f.columns for f in frames):   # units from several machines: each row's machine
        machine = [MACHINE_COLUMN]
        for f in frames:
            if MACHINE_COLUMN not in f.columns:
                f[MACHINE_COLUMN] = read_metadata(Path(results_dir) / "tables" / f"{f['source'].iloc[0]}.csv").get(
                    "hardware", "")
    table = pd.concat(frames, ignore_index=True).reindex(columns=[*COLUMNS, *machine, "profile", "source"])
    table = table.drop_duplicates(subset=["method", "dataset", "ipc", "init"], ignore_index=True)
    for column in ("ipc", "models", "iterations"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def distilled_only(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of distilled sets (not the random-real, majority-class or full-data references)."""
    return table[table["method"].isin([record.label for record in METHODS.values()])]


def score_column(rows: pd.DataFrame) -> str:
    """The column sets are ranked by: balanced accuracy where every row has it (imbalanced MHIST), else accuracy."""
    balanced = "balanced accuracy with DSA (%)"
    return balanced if rows[balanced].notna().all() else "accuracy with DSA (%)"


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
        scores, floor_score = sets[column].astype(float), float(floor[column].iloc[0])
        best = sets.loc[scores.idxmax()]
        rows.append({"dataset": dataset, "ipc": ipc, "metric": column.replace(" with DSA (%)", ""),
                     "best set": f"{best['method']}, {best['init']} init", "best (%)": best[column],
                     "best std (%)": best[std_column(column)], "random real (%)": floor[column].iloc[0],
                     "random real std (%)": floor[std_column(column)].iloc[0],
                     "gain (points)": round(scores.max() - floor_score, 2),
                     "sets above random real": int((scores > floor_score).sum()), "distilled sets": len(sets)})
    return pd.DataFrame(rows)


def side_by_side(results_dir: str | Path, names: list[str]) -> pd.DataFrame:
    """Rows of the named study tables that exist, random-real rows once, sorted for reading side by side."""
    frames = [read_table(p) for p in (Path(results_dir) / "tables" / f"{n}.csv" for n in names) if p.exists()]
    columns = ["dataset", "ipc", "init", "method", "accuracy with DSA (%)", "accuracy with DSA std (%)",
               "distillation time (s)", "peak memory (MiB)"]
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


def _shown(row: pd.Series, column: str) -> str:
    """'mean ± std' of `column` in a row, '-' where not measured."""
    cell = mean_std(row, column)
    return "-" if cell is None else f"{cell[0]:.2f} ± {cell[1]:.2f}"


def gather_curves(results_dir: str | Path) -> pd.DataFrame:
    """Every study's accuracy-vs-iterations table (`<prefix>_curves.csv`) in one frame (empty if none)."""
    frames = [read_table(p) for p in sorted((Path(results_dir) / "tables").glob("*_curves.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def iterations_needed(curve: pd.DataFrame, target: float, column: str = "accuracy (%)") -> str:
    """The budget a set's curve says reaching `target` needs: its last two points extrapolated linearly in
    log(iterations) (iteration 0 left out); 'reached' where it already is, '-' without a curve, and 'not on this
    trend' where the curve is flat or falling."""
    inside = curve[curve["iteration"].astype(float) > 0]   # iteration 0 (the initial set) has no log
    points = inside.sort_values("iteration")[["iteration", column]].to_numpy(dtype=float)
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
    """The targets of issues 10 and 26 (`ACCURACY_TARGETS`, `FLOOR_TARGETS`, `MHIST_TARGETS`) beside this run's
    numbers from the gathered study tables: met is 'yes' or 'no', or 'not run' where the set is not in the tables;
    MHIST rows name the full-data ceiling; with `curves`, the iterations each accuracy row's curve says the target
    needs (`iterations_needed`)."""
    run_column = f"this run ({profile})"
    ipc = table["ipc"].astype(str)
    rows = []
    for dataset, method, init, target, source in ACCURACY_TARGETS:
        label = METHODS[method].label
        found = table[(table["method"] == label) & (table["dataset"] == dataset) & (ipc == "10")
                      & (table["init"] == init)]
        cell = mean_std(found.iloc[0], "accuracy with DSA (%)") if len(found) else None
        run = cell is not None
        rows.append({"dataset": dataset, "method": label, "init": init, TARGET_COLUMN: f"≥ {target:g} ({source})",
                     run_column: _shown(found.iloc[0], "accuracy with DSA (%)") if run else "-",
                     "networks": found.iloc[0].get("models", "-") if run else "-",
                     "met": ("yes" if cell[0] >= target else "no") if run else "not run"})
        if curves is not None and not curves.empty:
            curve = curves[(curves["method"] == label) & (curves["dataset"] == dataset)
                           & (curves["ipc"].astype(str) == "10") & (curves["init"] == init)]
            rows[-1][NEEDED_COLUMN] = iterations_needed(curve, target) if run else "-"
    for dataset, method, init, source in FLOOR_TARGETS:
        label = METHODS[method].label
        group = table[(table["dataset"] == dataset) & (ipc == "10")]
        found, floor = group[(group["method"] == label) & (group["init"] == init)], group[group["method"] == FLOOR]
        row = {"dataset": dataset, "method": label, "init": init,
               TARGET_COLUMN: f"beats random real by more than both stds ({source})", run_column: "-",
               "networks": "-", "met": "not run"}
        ours = mean_std(found.iloc[0], "accuracy with DSA (%)") if len(found) else None
        below = mean_std(floor.iloc[0], "accuracy with DSA (%)") if len(floor) else None
        if ours is not None and below is not None:
            gap = ours[0] - below[0]
            row.update({run_column: f"{ours[0]:.2f} ± {ours[1]:.2f} against random real {below[0]:.2f} ± "
                                    f"{below[1]:.2f}: {gap:+.2f} points",
                        "networks": found.iloc[0].get("models", "-"),
                        "met": "yes" if gap > max(ours[1], below[1]) else "no"})
        rows.append(row)
    balanced = "balanced accuracy with DSA (%)"
    for size, gain_needed, majority, source in MHIST_TARGETS:
        group = table[(table["dataset"] == "MHIST") & (ipc == size)]
        sets, floor = distilled_only(group), group[group["method"] == FLOOR]
        sets = sets[sets[balanced].notna()]
        minimum = f"≥ {gain_needed:.1f} points balanced accuracy over random real, " if gain_needed else ""
        row = {"dataset": "MHIST", "method": f"best distilled set vs random real, ipc {size} ({source})", "init": "-",
               TARGET_COLUMN: f"{minimum}gap > both stds; accuracy > {majority:g} % majority class",
               run_column: "-", "networks": "-", "met": "not run"}
        full = table[(table["dataset"] == "MHIST") & (table["method"] == FULL_DATA)]
        if len(full) and pd.notna(full[balanced].iloc[0]):
            row[CEILING_COLUMN] = f"balanced accuracy {float(full[balanced].iloc[0]):.2f} %"
        if not sets.empty and not floor.empty and pd.notna(floor[balanced].iloc[0]):
            best, floor_cell = sets.loc[sets[balanced].astype(float).idxmax()], mean_std(floor.iloc[0], balanced)
            ours = mean_std(best, balanced)
            gain, stds = ours[0] - floor_cell[0], (ours[1], floor_cell[1])
            accuracy = mean_std(best, "accuracy with DSA (%)")
            accuracy = accuracy[0] if accuracy is not None else None
            met = gain >= gain_needed and gain > max(stds) and accuracy is not None and accuracy > majority
            row.update({run_column: f"{best['method']}, {best['init']} init: {gain:+.2f} points "
                                    f"(std {stds[0]:.2f}, random real {stds[1]:.2f}); accuracy "
                                    + (f"{accuracy:.2f} %" if accuracy is not None else "-"),
                        "networks": best.get("models", "-"), "met": "yes" if met else "no"})
        rows.append(row)
    return pd.DataFrame(rows)


def machine_description(results_dir: str | Path) -> str:
    """What the run ran on: the machine descriptions the study tables record (`utility.hardware_name`, else this
    machine's) and their precisions."""
    metas = [read_metadata(p) for p in (Path(results_dir) / "tables" / f"{n}.csv"
                                        for n in (*STUDY_TABLES, "08_comparison")) if p.exists()]
    machines = list(dict.fromkeys(m["hardware"] for m in metas if m.get("hardware")))
    precisions = sorted({m["precision"] for m in metas if m.get("precision")})
    return "; ".join(machines or [hardware_name(torch.device("cpu"))]) + \
        f", precision {'/'.join(precisions) or 'unknown'}"


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
    """Published accuracies (papers, ConvNet, ipc 10) and the course report's distilled-set accuracies at ipc 10,
    labelled by source."""
    rows = [{"dataset": d, "method": m, "accuracy (%)": a, "source": "published (papers)"} for d, m, a in PUBLISHED]
    rows += [{"dataset": c.what.split(",")[0], "method": ", ".join(c.what.split(", ")[1:]), "accuracy (%)": c.value,
              "source": f"{COURSE_REPORT}, {c.source}"}
             for c in COURSE_NUMBERS if c.notebook in ("02", "06", "07")]
    return pd.DataFrame(rows)


def preparation_seconds(results_dir: str | Path) -> dict[tuple[str, str], float]:
    """Compute seconds a method spends before it distils (MTT's expert buffers), per (method label, dataset), from
    the table its record names (`Method.preparation_table`); methods without one, or whose table is missing, have
    none."""
    found = {}
    for record in METHODS.values():
        path = Path(results_dir) / "tables" / f"{record.preparation_table}.csv"
        if record.preparation_table is None or not path.exists():
            continue
        table = read_table(path)
        if PREPARATION_SECONDS in table.columns:
            found.update({(record.label, row["dataset"]): float(row[PREPARATION_SECONDS])
                          for row in table.to_dict("records")})
    return found


RUN_HEADLINE = "this run, headline protocol"   # the section's protocol card (the studies: 300 epochs with DSA)
RUN_COURSE = "this run, course protocol"       # `utils.profiles.PROTOCOLS['course']`, the course report's own


def _counterpart(table: pd.DataFrame, c: CourseNumber, column: str) -> tuple[float, float | None] | None:
    """(mean, std) of `column` in the row of `table` that `c` matches (std None where the table has no std column:
    one network), None where the table has no such row or column."""
    if not column or column not in table.columns or not all(k in table.columns for k, _ in c.match):
        return None
    found = table[np.logical_and.reduce([table[k].astype(str) == v for k, v in c.match])]
    ours = mean_std(found.iloc[0], column) if len(found) else None
    return ours if ours is None or std_column(column) in found.columns else (ours[0], None)


def course_vs_run(results_dir: str | Path, notebook: str) -> pd.DataFrame:
    """The course report's numbers of one notebook beside this run's counterparts, under this run's headline
    protocol and, where evaluated, the course report's own (empty where this run has none, e.g. a search on
    another dataset); no rows when the course report has no number for the notebook."""
    rows = []
    for c in (c for c in COURSE_NUMBERS if c.notebook == notebook):
        path = Path(results_dir) / "tables" / f"{c.table}.csv"
        table = read_table(path) if c.table and path.exists() else pd.DataFrame()
        row = {"what": c.what, "unit": c.unit, "course report": c.value, "course report: where": c.source}
        for name, column in ((RUN_HEADLINE, c.column), (RUN_COURSE, c.course_column)):
            ours = _counterpart(table, c, column)
            row.update({name: ours[0] if ours else None, std_column(name): ours[1] if ours else None})
        rows.append(row)
    return pd.DataFrame(rows, columns=["what", "unit", "course report", "course report: where", RUN_HEADLINE,
                                       std_column(RUN_HEADLINE), RUN_COURSE, std_column(RUN_COURSE)])


COURSE_CAPTION = (f"The {COURSE_REPORT}'s numbers beside this run's: '{RUN_HEADLINE}' as the protocol card says, "
                  f"'{RUN_COURSE}' trained as the course report trained its own ({COURSE_PROTOCOL_WORDS}) ('-': this "
                  "run has no counterpart, e.g. it searched another dataset, or did not evaluate that way)")


def course_distilled(results_dir: str | Path) -> pd.DataFrame:
    """`course_vs_run` of every method notebook in one table: the course report's distilled-set accuracies beside
    this run's under both protocols (08)."""
    notebooks = sorted({record.number for record in METHODS.values()})
    return pd.concat([course_vs_run(results_dir, number) for number in notebooks], ignore_index=True)


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
        display_frame(best).to_markdown(index=False), "",
        "## Our results (10 images per class)", "", display_frame(headline).to_markdown(index=False), "",
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
