"""Interpretation sentences generated from the notebooks' result tables (issue 10): every claim that depends on a
run's numbers is written from those numbers, so the prose cannot contradict them. Each function takes a table as
its notebook has it and returns markdown; a mean column's std is in its `std_column`, empty cells were not measured."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from utils.results import mean_std, std_column
from utils.study import FLOOR, FULL_DATA

DSA_COLUMN = "accuracy with DSA (%)"
PLAIN_COLUMN = "accuracy (%)"
COURSE_COLUMN = "accuracy, course protocol (%)"   # `utils.profiles.PROTOCOLS['course']`
BALANCED_COLUMN = "balanced accuracy with DSA (%)"
BALANCED_COURSE_COLUMN = "balanced accuracy, course protocol (%)"
MAJORITY = "majority class"
FULL = FULL_DATA
REFERENCES = (FLOOR, MAJORITY, FULL)   # rows that are not distilled sets
CEILING = "ceiling spearman (full data, seed vs seed)"
STABILITY = "stability spearman (full data, budget vs 2x epochs)"


def counted(n: int, noun: str) -> str:
    """'1 epoch', '2 epochs', '10,000 training images'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def shown(cell: tuple[float, float]) -> str:
    """A (mean, std) pair as the tables show it: 'mean ± std'."""
    return f"{cell[0]:.2f} ± {cell[1]:.2f}"


def _label(column: str) -> str:
    """A column name without its unit, for prose."""
    return column.replace(" (%)", "")


def _title(column: str) -> str:
    """`_label` with its first letter capitalised (and the rest, such as 'DSA', kept)."""
    label = _label(column)
    return label[:1].upper() + label[1:]


def _spread(gap: float, stds: tuple[float, ...]) -> str:
    """Whether a difference of means exceeds the larger of the stds involved."""
    if abs(gap) > max(stds):
        return "larger than both stds"
    return "not larger than both stds (within the spread over networks)"


def _set_name(row: pd.Series) -> str:
    """'Method, real init on DATASET (ipc k)'."""
    init = f", {row['init']} init" if not pd.isna(row.get("init")) and str(row["init"]) not in ("-", "") else ""
    return f"{row['method']}{init} on {row['dataset']} (ipc {row['ipc']})"


def _distilled(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of distilled sets (not the random-real, majority-class or full-data references)."""
    return table[~table["method"].isin(REFERENCES)]


def floor_gaps(table: pd.DataFrame, column: str = DSA_COLUMN) -> str:
    """For each distilled set, how far it is above or below the random-real floor of the same dataset and ipc."""
    floors = {(r["dataset"], str(r["ipc"])): mean_std(r, column)
              for _, r in table[table["method"] == FLOOR].iterrows()}
    lines, clear = [], 0
    for _, row in _distilled(table).iterrows():
        ours, floor = mean_std(row, column), floors.get((row["dataset"], str(row["ipc"])))
        if ours is None or floor is None:
            continue
        gap = round(ours[0] - floor[0], 2)
        if gap > 0:
            verb = f"beats the random-real floor by {gap:.2f} points"
        elif gap < 0:
            verb = f"falls {-gap:.2f} points short of the random-real floor"
        else:
            verb = "matches the random-real floor"
        spread = _spread(gap, (ours[1], floor[1]))
        clear += gap > 0 and abs(gap) > max(ours[1], floor[1])
        lines.append(f"- {_set_name(row)} {verb} ({shown(ours)} vs {shown(floor)}); the gap is {spread}.")
    if not lines:
        return f"No distilled set has a measured {_label(column)} beside a random-real floor of the same size."
    return (f"**{_title(column)} against random real images of the same size.** {clear} of "
            f"{len(lines)} distilled sets beat the floor by more than both stds.\n\n" + "\n".join(lines))


def init_comparison(table: pd.DataFrame, column: str = DSA_COLUMN) -> str:
    """Real vs noise initialisation for each method, dataset and ipc where both were distilled."""
    lines = []
    distilled = _distilled(table).assign(_ipc=lambda t: t["ipc"].astype(str))
    for (method, dataset, ipc), group in distilled.groupby(["method", "dataset", "_ipc"], sort=False):
        cells = {init: group[group["init"] == init] for init in ("real", "noise")}
        if any(c.empty for c in cells.values()):
            continue
        real, noise = mean_std(cells["real"].iloc[0], column), mean_std(cells["noise"].iloc[0], column)
        if real is None or noise is None:
            continue
        gap = round(real[0] - noise[0], 2)
        if gap > 0:
            verb = f"real init is ahead of noise init by {gap:.2f} points"
        elif gap < 0:
            verb = f"noise init is ahead of real init by {-gap:.2f} points"
        else:
            verb = "real and noise init are level"
        lines.append(f"- {method} on {dataset} (ipc {ipc}): {verb} ({shown(real)} vs {shown(noise)}), "
                     f"{_spread(gap, (real[1], noise[1]))}.")
    if not lines:
        return f"No method has both a real- and a noise-initialised set with a measured {_label(column)}."
    return f"**Real vs noise initialisation ({_label(column)}).**\n\n" + "\n".join(lines)


def protocol_effect(table: pd.DataFrame, first: str = DSA_COLUMN, second: str = PLAIN_COLUMN,
                    change: str = "training with DSA", other: str = "without") -> str:
    """For each set, how much evaluating it as column `first` says instead of as `second` (e.g. with DSA instead
    of without, or the headline protocol instead of the course report's) changes accuracy; `change` names the
    switch and `other` the second column, in prose."""
    lines, helped = [], 0
    for _, row in table.iterrows():
        if first not in row or second not in row:
            continue
        a, b = mean_std(row, first), mean_std(row, second)
        if a is None or b is None:
            continue
        gap = round(a[0] - b[0], 2)
        helped += gap > max(a[1], b[1])
        name = _set_name(row) if row["method"] != FLOOR else f"random real on {row['dataset']} (ipc {row['ipc']})"
        lines.append(f"- {name}: {change} changes accuracy by {gap:+.2f} points ({shown(a)} vs "
                     f"{shown(b)} {other}), {_spread(gap, (a[1], b[1]))}.")
    if not lines:
        return f"No set was evaluated both ways ('{_label(first)}' and '{_label(second)}')."
    return (f"**{_title(first)} vs {_label(second)}.** {change[:1].upper()}{change[1:]} raises accuracy by more "
            f"than both stds on {helped} of {len(lines)} sets.\n\n" + "\n".join(lines))


def course_protocol(table: pd.DataFrame, headline: str = DSA_COLUMN, course: str = COURSE_COLUMN) -> str:
    """The sets under the course report's own evaluation protocol (column `course`): each against the random-real
    floor trained the same way, and what this run's headline protocol (column `headline`) changes."""
    return (floor_gaps(table, column=course) + "\n\n" +
            protocol_effect(table, headline, course, change="the headline protocol instead of the course report's",
                            other="trained the course report's way"))


def method_comparison(table: pd.DataFrame, column: str = DSA_COLUMN) -> str:
    """For each dataset, ipc and init with several methods: their order and the leader's margin."""
    lines = []
    distilled = _distilled(table).assign(_ipc=lambda t: t["ipc"].astype(str))
    for (dataset, ipc, init), group in distilled.groupby(["dataset", "_ipc", "init"], sort=False):
        scored = [(mean_std(r, column), r["method"], None) for _, r in group.iterrows()]
        scored = sorted([s for s in scored if s[0] is not None], key=lambda s: -s[0][0])
        if len(scored) < 2:
            continue
        (first, leader, _), (second, runner_up, _) = scored[0], scored[1]
        gap = round(first[0] - second[0], 2)
        order = " > ".join(f"{method} ({shown(c)})" for c, method, _ in scored)
        verdict = (f"{leader} leads {runner_up} by {gap:.2f} points, {_spread(gap, (first[1], second[1]))}"
                   if gap > 0 else f"{leader} and {runner_up} are level")
        lines.append(f"- {dataset}, ipc {ipc}, {init} init: {order}; {verdict}.")
    if not lines:
        return f"No dataset, size and initialisation has two methods with a measured {_label(column)}."
    return f"**Methods side by side ({_label(column)}).**\n\n" + "\n".join(lines)


def _set_key(label: str) -> tuple[str, str] | None:
    """(dataset, 'ipc k') of a cross-architecture row label such as 'Method, CIFAR10, ipc 10, real init'."""
    parts = [p.strip() for p in str(label).split(",")]
    for k, part in enumerate(parts):
        if part.startswith("ipc ") and k > 0:
            return parts[k - 1], part
    return None


def transfer_summary(table: pd.DataFrame, chance: float = 10.0, label_column: str = "training set",
                     reference: str = FLOOR) -> str:
    """Cross-architecture table (03): each architecture's random-real accuracy against chance, and which
    architecture each distilled set gains most and least on over the random-real row of its dataset and size."""
    stds = {std_column(c) for c in table.columns}
    architectures = [c for c in table.columns if c.endswith(" (%)") and c not in stds]
    is_reference = table[label_column].astype(str).str.startswith(reference)
    references = {_set_key(r[label_column]): r for _, r in table[is_reference].iterrows()}
    lines = [f"**Random real images per architecture** (chance {chance:g} %; 'above chance' means by more than "
             "the std over networks)."]
    for _, row in table[is_reference].iterrows():
        above, at, below = [], [], []
        for arch in architectures:
            cell = mean_std(row, arch)
            if cell is None:
                continue
            gap, name = cell[0] - chance, _label(arch)
            if gap > cell[1]:
                above.append(f"{name} (+{gap:.2f} points)")
            elif gap < -cell[1]:
                below.append(f"{name} ({shown(cell)})")
            else:
                at.append(f"{name} ({shown(cell)})")
        parts = [f"above chance: {', '.join(above)}" if above else "",
                 f"at chance: {', '.join(at)}" if at else "", f"below chance: {', '.join(below)}" if below else ""]
        lines.append(f"- {row[label_column]}: " + "; ".join(p for p in parts if p) + ".")
    gains: dict[str, list[float]] = {arch: [] for arch in architectures}
    set_lines = []
    for _, row in table[~is_reference].iterrows():
        ref = references.get(_set_key(row[label_column]))
        if ref is None:
            continue
        measured = []
        for arch in architectures:
            ours, base = mean_std(row, arch), mean_std(ref, arch)
            if ours is None or base is None:
                continue
            gap = round(ours[0] - base[0], 2)
            measured.append((gap, _label(arch), gap > max(ours[1], base[1])))
            gains[arch].append(gap)
        if not measured:
            continue
        best, worst = max(measured), min(measured)
        clear = [arch for gap, arch, is_clear in measured if is_clear]
        set_lines.append(f"- {row[label_column]}: gains most on {best[1]} ({best[0]:+.2f} points) and least on "
                         f"{worst[1]} ({worst[0]:+.2f} points); beats random real by more than both stds on "
                         f"{len(clear)} of {len(measured)} architectures" + (f" ({', '.join(clear)})" if clear else "")
                         + ".")
    if set_lines:
        lines += ["", "**Gain over random real images of the same dataset and size** (points of accuracy)."]
        lines += set_lines
        means = {_label(arch): sum(g) / len(g) for arch, g in gains.items() if g}
        top, bottom = max(means, key=means.get), min(means, key=means.get)
        lines.append(f"- Averaged over the {len(set_lines)} distilled sets, {top} gains most ({means[top]:+.2f}) "
                     f"and {bottom} least ({means[bottom]:+.2f}).")
    return "\n".join(lines)


def nas_agreement(summary: Mapping | pd.DataFrame) -> str:
    """NAS (04), one search: the distilled proxy's rank agreement with full data against the seed-vs-seed ceiling,
    the full-data ranking's stability at twice its epochs, the winners (and the course report's, for its search),
    the budgets where they were cut from the course's, and whether the distilled search cost less."""
    if isinstance(summary, pd.DataFrame):
        summary = summary.iloc[0].to_dict()
    rho, tau = float(summary["spearman"]), float(summary["kendall"])
    ceiling = float(summary.get(CEILING, float("nan")))
    where = f"{summary['dataset']}: " if summary.get("dataset") else ""
    sentences = [f"{where}The ranking on the distilled set has Spearman ρ = {rho:.2f} (Kendall τ = {tau:.2f}) with "
                 "the ranking on full data."]
    if math.isnan(ceiling):
        sentences.append("No seed-vs-seed ceiling was measured (one full-data seed), so ρ cannot be set against "
                         "the noise of the full-data ranking itself.")
    elif ceiling <= 0:
        sentences.append(f"The full-data ranking does not agree with itself across two seeds (ρ = {ceiling:.2f}), "
                         "so at this budget there is no stable ranking for the proxy to recover.")
    elif rho >= ceiling:
        sentences.append(f"That reaches the seed-vs-seed ceiling (ρ = {ceiling:.2f}): the proxy agrees with full "
                         "data as well as a second full-data run does.")
    else:
        sentences.append(f"That is {ceiling - rho:.2f} below the seed-vs-seed ceiling (ρ = {ceiling:.2f}): two "
                         "full-data runs agree with each other better than the proxy agrees with full data.")
    sentences += _nas_stability(summary) + _nas_winners(summary) + _nas_budget(summary) + _nas_cost(summary)
    return " ".join(sentences)


STABLE = 0.8   # a full-data ranking that agrees this well with itself at twice the epochs is called stable


def _nas_stability(summary: Mapping) -> list[str]:
    """The full-data ranking at the budget used against the one at twice its epochs."""
    if STABILITY not in summary or pd.isna(summary[STABILITY]):
        return []
    stability = float(summary[STABILITY])
    epochs = int(summary["full-data epochs"])
    tau = float(summary.get("stability kendall (full data, budget vs 2x epochs)", float("nan")))
    verdict = (f"stable at this budget (ρ ≥ {STABLE:g})" if stability >= STABLE else
               f"not stable at this budget (ρ < {STABLE:g}): longer training reorders the candidates, so the seed-vs-"
               "seed ceiling measures seed noise rather than which network ends best")
    text = (f"Trained for {2 * epochs} epochs instead of {epochs}, the full-data ranking has Spearman ρ = "
            f"{stability:.2f} (Kendall τ = {tau:.2f}) with the one at {counted(epochs, 'epoch')}: it is {verdict}.")
    longer = summary.get("spearman (distilled vs full data at 2x epochs)")
    if longer is not None and not pd.isna(longer):
        text += f" The distilled ranking has ρ = {float(longer):.2f} with the ranking at {2 * epochs} epochs."
    return [text]


def _nas_winners(summary: Mapping) -> list[str]:
    """Which candidate each side picks, and the course report's picks where this is its search."""
    full, distilled = summary.get("best on full data"), summary.get("best on distilled data")
    if full is None or distilled is None:
        return []
    sentences = [f"Both pick {full}." if full == distilled
                 else f"Full data picks {full}, the distilled set {distilled}."]
    course_full, course_distilled = (summary.get("course report: best on full data"),
                                     summary.get("course report: best on distilled data"))
    if course_full is not None and not pd.isna(course_full):
        picked = (f"{course_full} on both" if course_full == course_distilled
                  else f"{course_full} on full data and {course_distilled} on the distilled set")
        agrees = "agrees" if (full, distilled) == (course_full, course_distilled) else "does not agree"
        sentences.append(f"The course report picked {picked} (its ρ = "
                         f"{float(summary['course report: spearman']):.2f}); this run {agrees} with it.")
    return sentences


def _nas_budget(summary: Mapping) -> list[str]:
    """For the course report's search: each side's budget where it differs from the course's."""
    course_epochs = summary.get("course report: full-data epochs")
    if course_epochs is None or pd.isna(course_epochs):
        return []
    epochs, images = int(summary["full-data epochs"]), int(summary["full-data train images"])
    cuts = []
    if epochs != int(course_epochs) or images < int(summary.get("training set images", images)):
        cuts.append(f"the full-data side trained {counted(epochs, 'epoch')} on {counted(images, 'training image')} "
                    f"per network (the course: {int(course_epochs)} epochs on the whole training set)")
    distilled, course_distilled = int(summary["distilled epochs"]), int(summary["course report: distilled epochs"])
    if distilled != course_distilled:
        cuts.append(f"the distilled side trained {counted(distilled, 'epoch')} (the course: {course_distilled})")
    if not cuts:
        return [f"Both sides trained as the course's did: {epochs} and {distilled} epochs, on {images:,} training "
                "images per full-data network."]
    return ["Budget cut against the course report: " + "; ".join(cuts) + "."]


def _nas_cost(summary: Mapping) -> list[str]:
    """Seconds of the search on the distilled set against full data, and a plain sentence when it saved none."""
    t_full, t_distilled = summary.get("search time full data (s)"), summary.get("search time distilled (s)")
    if t_full is None or t_distilled is None or float(t_full) <= 0 or float(t_distilled) <= 0:
        return []
    t_full, t_distilled = float(t_full), float(t_distilled)
    if t_distilled >= t_full:
        sentences = [f"The search on the distilled set did not cost less than the search on full data: "
                     f"{t_distilled:.1f} s against {t_full:.1f} s ({t_distilled / t_full:.1f} times more time)."]
    else:
        sentences = [f"The distilled search took {t_distilled:.1f} s against {t_full:.1f} s on full data: "
                     f"{t_full / t_distilled:.1f} times less time."]
    distill = float(summary.get("distillation time of the set (s)") or 0)
    if distill > 0:
        total = distill + t_distilled
        sentences.append(f"With the {distill:.1f} s the set took to distil, {total:.1f} s: "
                         + ("still less than on full data." if total < t_full
                            else "more than the search on full data, so this one search does not repay it."))
    return sentences


def baseline_summary(table: pd.DataFrame, published: Mapping[str, float] | None = None,
                     distilled_images: int = 100) -> str:
    """Full-data baselines (01): accuracy against the published whole-data number, and per-epoch cost against a
    distilled set of `distilled_images` images."""
    published = published or {}
    lines = []
    for _, row in table.iterrows():
        accuracy, epochs = float(row["test accuracy (%)"]), int(row["epochs"])
        text = f"- {row['dataset']}: {accuracy:.2f} % test accuracy after {epochs} epoch{'s' * (epochs != 1)}"
        if row["dataset"] in published:
            gap = round(published[row["dataset"]] - accuracy, 2)
            where = (f"{gap:.2f} points below" if gap > 0 else f"{-gap:.2f} points above" if gap < 0 else "equal to")
            text += f", {where} the published whole-data ConvNet accuracy ({published[row['dataset']]:g} %)"
        images, macs = int(row["train images"]), float(row["MACs per image (M)"])
        text += (f". One forward pass costs {macs:.1f} M MACs, an epoch over {images:,} images "
                 f"{images * macs / 1e6:.2f} T MACs; a set of {distilled_images} images needs "
                 f"{images / distilled_images:,.0f} times fewer per epoch.")
        lines.append(text)
    return "\n".join(lines)


def mhist_summary(table: pd.DataFrame, column: str = BALANCED_COLUMN, accuracy_column: str = DSA_COLUMN,
                  chance: float = 50.0) -> str:
    """MHIST (05): distilled sets against a constant prediction's balanced accuracy, the majority-class accuracy
    and the full training set."""
    distilled = _distilled(table)
    scored = [(mean_std(r, column), _set_name(r), None) for _, r in distilled.iterrows()]
    scored = [s for s in scored if s[0] is not None]
    if not scored:
        return f"No distilled set has a measured {_label(column)}."
    above = [name for cell, name, _ in scored if cell[0] - chance > cell[1]]
    lines = [f"- {len(above)} of {len(scored)} distilled sets are above {chance:g} % {_label(column)} (any constant "
             "prediction's) by more than their std" + (f"; not: {', '.join(n for _, n, _ in scored if n not in above)}"
                                                         if len(above) < len(scored) else "") + "."]
    majority = table[table["method"] == MAJORITY]
    if not majority.empty and accuracy_column in table.columns and mean_std(majority.iloc[0], accuracy_column):
        level = mean_std(majority.iloc[0], accuracy_column)[0]
        accuracies = [mean_std(r, accuracy_column) for _, r in distilled.iterrows()]
        accuracies = [a for a in accuracies if a is not None]
        beat = sum(a[0] > level for a in accuracies)
        lines.append(f"- {beat} of {len(accuracies)} distilled sets have a plain accuracy above the majority-class "
                     f"floor ({level:.2f} %).")
    full = table[table["method"] == FULL]
    if not full.empty and mean_std(full.iloc[0], column):
        (best, name, _), level = max(scored, key=lambda s: s[0][0]), mean_std(full.iloc[0], column)[0]
        gap = round(level - best[0], 2)
        where = f"{gap:.2f} points ahead of" if gap > 0 else f"{-gap:.2f} points behind" if gap < 0 else "level with"
        lines.append(f"- The full training set ({level:.2f} %) is {where} the best distilled set, {name} "
                     f"({shown(best)}).")
    return f"**MHIST, {_label(column)}.**\n\n" + "\n".join(lines)


def best_summary(best: pd.DataFrame) -> str:
    """Comparison (08): per dataset and ipc, the best distilled set's margin over random real images."""
    lines = []
    for _, row in best.iterrows():
        ours, floor = mean_std(row, "best (%)"), mean_std(row, "random real (%)")
        if ours is None or floor is None:
            continue
        gap = round(ours[0] - floor[0], 2)
        where = (f"{gap:.2f} points above" if gap > 0 else f"{-gap:.2f} points below" if gap < 0 else "level with")
        count = row["sets above random real"] if "distilled sets" not in row else \
            f"{row['sets above random real']} of {row['distilled sets']}"   # older tables: '3 of 4'
        lines.append(f"- {row['dataset']}, ipc {row['ipc']} ({row['metric']}): the best distilled set, "
                     f"{row['best set']} ({shown(ours)}), is {where} random real ({shown(floor)}), "
                     f"{_spread(gap, (ours[1], floor[1]))}; {count} sets are above random real.")
    if not lines:
        return "No dataset has both a distilled set and a random-real floor."
    return "\n".join(lines)


def cost_per_iteration(table: pd.DataFrame) -> str:
    """Comparison (08): mean wall-clock seconds per distillation iteration of each method on each dataset,
    cheapest first."""
    distilled = _distilled(table).copy()
    distilled["_iterations"] = pd.to_numeric(distilled["iterations"], errors="coerce")
    distilled["_seconds"] = pd.to_numeric(distilled["distillation time (s)"], errors="coerce")
    distilled = distilled[(distilled["_iterations"] > 0) & (distilled["_seconds"] > 0)]
    lines = []
    for dataset, group in distilled.groupby("dataset", sort=False):
        per = (group["_seconds"] / group["_iterations"]).groupby(group["method"]).mean().sort_values()
        lines.append(f"- {dataset}: " + ", ".join(f"{m} {s:.2f} s" for m, s in per.items())
                     + (f" — {per.index[0]} is the cheapest per iteration here." if len(per) > 1 else "."))
    if not lines:
        return "No distilled set records both its iterations and its distillation time."
    return "**Distillation seconds per iteration** (mean over sets, cheapest first).\n\n" + "\n".join(lines)
