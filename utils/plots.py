"""Figures shared by the notebooks: learning curves, synthetic images per class, loss curves, scatter plots."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib import ticker

from utility import TrainHistory
from utils.data import Dataset


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
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _grid(images: torch.Tensor, rows: int) -> torch.Tensor:
    """Tile N x C x H x W images into one C x (rows*H) x (cols*W) canvas, row-major."""
    n, c, h, w = images.shape
    cols = n // rows
    return images[: rows * cols].view(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def synthetic_before_after(before: torch.Tensor, after: torch.Tensor, data: Dataset, title: str,
                           max_per_class: int = 10) -> plt.Figure:
    """Synthetic images before and after distillation side by side, one row per class."""
    ipc = len(before) // data.num_classes
    show = min(ipc, max_per_class)
    pick = torch.cat([torch.arange(c * ipc, c * ipc + show) for c in range(data.num_classes)])
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.6 * show * 2, 0.6 * data.num_classes + 1))
    for ax, images, label in zip(axes, (before, after), ("initial", "distilled")):
        canvas = _grid(data.denormalise(images[pick]), data.num_classes)
        ax.imshow(canvas.permute(1, 2, 0).squeeze(-1), cmap="gray" if data.channels == 1 else None)
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([(i + 0.5) * data.im_size[0] for i in range(data.num_classes)], data.classes)
    fig.suptitle(title)
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


def accuracy_vs_time(table, score_columns: dict[str, str], title: str) -> plt.Figure:
    """One panel per dataset: each distilled set's score (column per dataset in `score_columns`, 'mean ± std')
    against its distillation time; colour = method, filled = real init, hollow = noise init, size = ipc."""
    datasets = list(dict.fromkeys(table["dataset"]))
    methods = list(dict.fromkeys(table["method"]))
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = table[table["dataset"] == dataset]
        for r in rows.to_dict("records"):
            score = float(str(r[score_columns[dataset]]).split(" ± ")[0])
            colour = colours[r["method"]]
            ax.scatter(max(float(r["distillation time (s)"]), 1.0), score, s=20 + 2 * int(r["ipc"]),
                       color=colour if r["init"] == "real" else "none", edgecolors=colour, linewidths=1.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if str(round(v))[0] in "25" else ""))
        ax.set(title=dataset, xlabel="distillation time (s, log scale)",
               ylabel=f"{score_columns[dataset].replace(' (%)', '')} (%)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=m) for m, c in colours.items()]
    handles += [plt.Line2D([], [], marker="o", linestyle="", color="grey", label="real init"),
                plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="grey",
                           label="noise init")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"{title} (marker size grows with images per class)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def grouped_bars(table, label_column: str, title: str, ylabel: str = "test accuracy (%)") -> plt.Figure:
    """Bars of 'mean ± std' cells: one group per row of `table`, one bar per other column, std as error bar."""
    columns = [c for c in table.columns if c != label_column]
    parse = [[tuple(float(v) for v in str(cell).split(" ± ")) for cell in table[c]] for c in columns]
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(table) * len(columns) / 3, 4))
    width = 0.8 / len(columns)
    for k, (column, values) in enumerate(zip(columns, parse)):
        positions = [i + k * width for i in range(len(table))]
        ax.bar(positions, [v[0] for v in values], width, yerr=[v[1] for v in values], label=column, capsize=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(table))], table[label_column], rotation=20, ha="right",
                  fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(6, len(columns)))
    fig.tight_layout()
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
