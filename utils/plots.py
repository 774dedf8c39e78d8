"""Figures shared by the notebooks: learning curves, synthetic images per class, loss curves, scatter plots."""

from __future__ import annotations

import re
import textwrap

import matplotlib.pyplot as plt
import torch
from matplotlib import ticker

from utility import TrainHistory
from utils.data import Dataset
from utils.results import mean_std, std_column


def learning_curves(histories: dict[str, TrainHistory]) -> plt.Figure:
    """Training loss and test accuracy per epoch, one line per run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, h in histories.items():
        epochs = range(1, len(h.train_loss) + 1)
        ax_loss.plot(epochs, h.train_loss, marker="o", label=name)
        ax_acc.plot(epochs, [100 * a for a in h.test_accuracy], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _grid(images: torch.Tensor, rows: int, gap: int = 2) -> torch.Tensor:
    """Tile N x C x H x W images (values in [0, 1]) row-major into one canvas, `gap` white pixels between tiles."""
    n, c, h, w = images.shape
    cols = n // rows
    canvas = torch.ones(c, rows * (h + gap) - gap, cols * (w + gap) - gap)
    for k, image in enumerate(images[: rows * cols]):
        top, left = (k // cols) * (h + gap), (k % cols) * (w + gap)
        canvas[:, top:top + h, left:left + w] = image
    return canvas


def synthetic_before_after(before: torch.Tensor, after: torch.Tensor, data: Dataset, title: str,
                           max_per_class: int = 10) -> plt.Figure:
    """Synthetic images before and after distillation side by side, one row per class; the title says how many
    of each class's images are shown when there are more than `max_per_class`."""
    ipc = len(before) // data.num_classes
    show = min(ipc, max_per_class)
    gap = max(1, data.im_size[0] // 16)
    pick = torch.cat([torch.arange(c * ipc, c * ipc + show) for c in range(data.num_classes)])
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.6 * show * 2, 0.6 * data.num_classes + 1))
    for ax, images, label in zip(axes, (before, after), ("initial", "distilled")):
        canvas = _grid(data.denormalise(images[pick]).clamp(0, 1), data.num_classes, gap)
        ax.imshow(canvas.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if data.channels == 1 else None, vmin=0,
                  vmax=1, interpolation="nearest")
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([i * (data.im_size[0] + gap) + data.im_size[0] / 2 for i in range(data.num_classes)],
                      data.classes)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    shown = f" (first {show} of {ipc} images per class shown)" if show < ipc else ""
    fig.suptitle(title + shown)
    fig.tight_layout()
    return fig


def loss_curves(losses: dict[str, list[float]], ylabel: str = "matching loss") -> plt.Figure:
    """Distillation loss per iteration, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in losses.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set(xlabel="iteration", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# Reference lines (random-real floors) of one axes: each its own colour and dash, so two sizes can be told apart.
REFERENCE_STYLES = (("dimgrey", "--"), ("black", ":"), ("tab:brown", "-."))


def accuracy_curves(rows, column: str, floors: dict[str, tuple[float, float]]) -> plt.Figure:
    """Accuracy (± std bars) against distillation iterations, a line per (method, ipc, init), the method named
    where the rows hold several, and beside each point the networks it averages (column `models`); floors as
    bands."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    several = rows["method"].nunique() > 1 if "method" in rows.columns else False
    keys = ["method", "ipc", "init"] if "method" in rows.columns else ["ipc", "init"]
    for key, line in rows.groupby(keys, sort=False):
        *method, ipc, init = key
        ax.errorbar(line["iteration"], line[column], yerr=line["std (%)"], marker="o", capsize=3,
                    label=(f"{method[0]}, " if several else "") + f"ipc {ipc}, {init} init")
        for iteration, accuracy, networks in zip(line["iteration"], line[column], line.get("models", [])):
            ax.annotate(str(networks), (iteration, accuracy), textcoords="offset points", xytext=(4, -11), fontsize=7)
    for k, (label, (mean, std)) in enumerate(floors.items()):
        colour, style = REFERENCE_STYLES[k % len(REFERENCE_STYLES)]
        ax.axhline(mean, color=colour, linestyle=style, linewidth=1.2, label=label)
        ax.axhspan(mean - std, mean + std, color=colour, alpha=0.12)
    counted = "models" in rows.columns
    ax.set(xlabel="distillation iteration" + (" (beside each point: networks trained)" if counted else ""),
           ylabel=column)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def scatter(x: list[float], y: list[float], labels: list[str], xlabel: str, ylabel: str, title: str = "",
            logx: bool = False) -> plt.Figure:
    """Labelled scatter plot (e.g. full-data vs distilled-data accuracy per candidate)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(x, y)
    for xi, yi, label in zip(x, y, labels):
        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def accuracy_vs_time(table, score_columns: dict[str, str], title: str, floor=None,
                     preparation: dict[tuple[str, str], float] | None = None) -> plt.Figure:
    """One panel per dataset: each distilled set's score (column per dataset in `score_columns`, its std beside it,
    drawn with ± std error bars) against its compute time; colour = method, filled = real init, hollow = noise
    init, size = ipc. Rows of `floor` (random real subsets) are dashed reference lines with a ± std band. A method
    with `preparation` seconds for the dataset ((method, dataset): MTT's expert buffers) is placed at its
    distillation plus preparation time, the preparation drawn as a bar from its distillation time to there. Where
    the rows' `machine` differ (units from several machines), each point is labelled with its distillation's
    machine (the first of its row's)."""
    datasets = list(dict.fromkeys(table["dataset"]))
    methods = list(dict.fromkeys(table["method"]))
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    mixed = "machine" in table.columns and table["machine"].nunique() > 1
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        column = score_columns[dataset]
        for r in table[table["dataset"] == dataset].to_dict("records"):
            score, std = mean_std(r, column)
            colour = colours[r["method"]]
            distilling = max(float(r["distillation time (s)"]), 1.0)
            x = distilling + (preparation or {}).get((r["method"], dataset), 0.0)
            if x > distilling:
                ax.plot([distilling, x], [score, score], color=colour, linewidth=4, alpha=0.35, zorder=1,
                        solid_capstyle="butt")
            ax.errorbar(x, score, yerr=std, color=colour, capsize=3, linewidth=1, zorder=2)
            ax.scatter(x, score, s=20 + 2 * int(r["ipc"]), color=colour if r["init"] == "real" else "white",
                       edgecolors=colour, linewidths=1.5, zorder=3)
            if mixed:
                ax.annotate(str(r["machine"]).split("; ")[0], (x, score), textcoords="offset points", xytext=(4, 4),
                            fontsize=6)
        references = [] if floor is None else floor[floor["dataset"] == dataset].to_dict("records")
        for k, r in enumerate(references):
            mean, std = mean_std(r, column)
            colour, style = REFERENCE_STYLES[k % len(REFERENCE_STYLES)]
            ax.axhline(mean, color=colour, linestyle=style, linewidth=1.2)
            if std > 0:
                ax.axhspan(mean - std, mean + std, color=colour, alpha=0.1, linewidth=0)
            ax.annotate(f"random real, ipc {r['ipc']}", (0.02, mean), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 3), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))   # labelled at 1, 2, 5 x 10^k s
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set(title=dataset, xlabel="compute time (s, log scale)", ylabel=f"{column.replace(' (%)', '')} (%)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=m) for m, c in colours.items()]
    handles += [plt.Line2D([], [], marker="o", linestyle="", color="grey", label="real init"),
                plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="white", color="grey",
                           label="noise init")]
    if floor is not None and len(floor):
        handles.append(plt.Line2D([], [], color="black", linestyle="--", label="random real (± std)"))
    if preparation:
        handles.append(plt.Line2D([], [], color="grey", linewidth=4, alpha=0.35,
                                  label="time before distilling (MTT: expert buffers)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.suptitle(f"{title}\n(mean ± std over networks; marker size grows with images per class)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * (len(handles) > 4), 1, 1))
    return fig


def transfer_bars(table, label_column: str, title: str, chance: float | None = None,
                  reference: str = "random real", ylabel: str = "test accuracy (%)", note: str = "") -> plt.Figure:
    """Cross-architecture transfer: one panel per '<dataset>, ipc <k>' named in the labels, one group of bars per
    architecture measured in that panel (the other columns, each '<arch> (%)' with its std column as error bars),
    one bar per set; the set whose label starts with `reference` is a dashed line with a ± std band over each group,
    `chance` a dotted line; `note` is printed under the panels."""
    stds = {std_column(c) for c in table.columns}
    columns = [c for c in table.columns if c.endswith(" (%)") and c not in stds]
    panel_of = [(m.group(1), m.group(2)) if (m := re.search(r"(\w+), ipc (\d+)", str(label))) else ("", "")
                for label in table[label_column]]
    panels = list(dict.fromkeys(panel_of))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7.0, 1.4 * len(columns) + 2), 3.6 * len(panels)),
                             squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        rows = table[[p == panel for p in panel_of]]
        architectures = [c for c in columns if any(mean_std(r, c) is not None for r in rows.to_dict("records"))]
        is_reference = rows[label_column].astype(str).str.startswith(reference)
        sets, floor = rows[~is_reference], rows[is_reference]
        width = 0.8 / max(len(sets), 1)
        for k, r in enumerate(sets.to_dict("records")):
            cells = [mean_std(r, a) or (float("nan"), 0.0) for a in architectures]   # no bar where not trained
            label = str(r[label_column]).replace(f", {panel[0]}, ipc {panel[1]}", "")
            ax.bar([i - 0.4 + (k + 0.5) * width for i in range(len(architectures))], [c[0] for c in cells], width,
                   yerr=[c[1] for c in cells], capsize=2, label=label)
        for r in floor.to_dict("records"):
            for i, a in enumerate(architectures):
                mean, std = mean_std(r, a) or (0.0, 0.0)
                ax.plot([i - 0.45, i + 0.45], [mean, mean], color="black", linestyle="--", linewidth=1.2,
                        label=f"{reference} (± std)" if i == 0 else None)
                ax.fill_between([i - 0.45, i + 0.45], mean - std, mean + std, color="black", alpha=0.12,
                                linewidth=0)
        if chance is not None:
            ax.axhline(chance, color="tab:red", linestyle=":", linewidth=1.2, label=f"chance ({chance:g}%)")
        ax.set_xticks(range(len(architectures)), [a.removesuffix(" (%)") for a in architectures])
        ax.set(ylabel=ylabel, title=f"{panel[0]}, {panel[1]} images per class" if panel[0] else "", ylim=(0, None))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    if note:
        fig.text(0.01, 0.0, textwrap.fill(note, 140), fontsize=7, va="top", ha="left")
    return fig


def confusion_matrix(matrix: torch.Tensor, classes: list[str], title: str) -> plt.Figure:
    """Confusion matrix with counts and row-normalised percentages."""
    fig, ax = plt.subplots(figsize=(4, 3.5))
    rates = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(matrix[i, j])}\n{100 * rates[i, j]:.0f}%", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig
