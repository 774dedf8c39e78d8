"""One report from a results folder: `python -m utils.report [--results-dir DIR] [--pdf]` writes `DIR/report.html`
(one self-contained file, figures embedded) and `DIR/report/report.tex` (the `.tex` tables and PDF figures of the
folder, to compile or to copy sections from), with `--pdf` also `DIR/report/report.pdf` (pdflatex). Both read like
the course report: an abstract, the setup, one section per notebook (question, method, protocol card, results with
the sentences the notebook generated from its numbers, the course report's numbers beside this run's,
interpretation), conclusions generated from the tables, references, and every file of the folder."""

from __future__ import annotations

import argparse
import base64
import io
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import mistune
import nbformat
import pandas as pd
from nbconvert.filters.markdown import markdown2html
from PIL import Image

from utils import provenance
from utils.comparison import COURSE_CAPTION, COURSE_REPORT, RUN_COURSE, RUN_HEADLINE, course_vs_run
from utils.cross_architecture import grid_sets
from utils.interpretation import best_summary, counted, shown
from utils.paths import NOTEBOOKS_DIR, RESULTS_DIR
from utils.profiles import PROFILES, EvaluationSettings
from utils.results import (
    ResultsFileError,
    atomic_write,
    atomic_write_many,
    display_frame,
    latex_escape,
    latex_table,
    read_sidecar,
    read_table,
    sidecar,
    std_column,
)
from utils.safe_html import outside, relative_href, sanitise
from utils.study import protocol_words

TEMPLATES = Path(__file__).resolve().parent / "templates"
TITLE = "Dataset distillation: gradient, distribution and trajectory matching"
MAX_IMAGE_WIDTH = 1100   # pixels, the page width; wider PNGs are scaled down in the HTML (not on disk)
LATEX_SYMBOLS = {"±": r"$\pm$", "×": r"$\times$", "ρ": r"$\rho$", "τ": r"$\tau$", "θ": r"$\theta$", "−": "-",
                 "→": r"$\rightarrow$", "≈": r"$\approx$", "≥": r"$\geq$", "≤": r"$\leq$", "‖": r"$\|$", "·": ".",
                 "—": "---", "–": "--", "’": "'", "“": "``", "”": "''", "…": "...", "ₜ": r"$_t$", "ₘ": r"$_m$",
                 "₊": r"$_+$", "μ": r"$\mu$", "σ": r"$\sigma$", "²": r"$^2$", "é": r"\'e"}


MACS = ("MACs are multiply-accumulate operations of one forward pass of one image, counted by flopth; training "
        "MACs count forward passes only (train images × MACs per image × epochs; a backward pass costs about twice "
        "as much again), test MACs are test images × MACs per image.")
REFERENCES = (
    "B. Zhao, K. R. Mopuri and H. Bilen. Dataset Condensation with Gradient Matching. ICLR 2021. "
    "arXiv:2006.05929.",
    "B. Zhao and H. Bilen. Dataset Condensation with Differentiable Siamese Augmentation. ICML 2021. "
    "arXiv:2102.08259.",
    "B. Zhao and H. Bilen. Dataset Condensation with Distribution Matching. WACV 2023. arXiv:2110.04181.",
    "G. Cazenavette, T. Wang, A. Torralba, A. A. Efros and J.-Y. Zhu. Dataset Distillation by Matching Training "
    "Trajectories. CVPR 2022. arXiv:2203.11932.",
    "Y. Shi and H. Chen. ECE1512 2022F Project B report. University of Toronto, 2022.",
)


@dataclass
class Table:
    """One results table: its CSV name, caption, metadata and contents."""

    name: str
    caption: str
    metadata: dict[str, str]
    frame: pd.DataFrame

    @property
    def html(self) -> str:
        return display_frame(self.frame).to_html(index=False, border=0, classes="data", escape=True)

    @property
    def provenance(self) -> str:
        """The caption line: which run wrote the table."""
        keys = ("profile", "seed", "device", "precision", "hardware", "commit", "created_utc")
        return "; ".join(f"{k}: {self.metadata[k]}" for k in keys if self.metadata.get(k))


@dataclass
class Figure:
    """One results figure (PNG embedded in the HTML, PDF included by the LaTeX report)."""

    name: str
    caption: str
    png: Path
    pdf: Path | None

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(_report_png(self.png)).decode("ascii")


@dataclass
class Section:
    """One notebook: title, question, method and interpretation (markdown), the sentences it generated from its
    results (markdown), its protocol card, tables, figures and the course report's numbers beside this run's."""

    number: str
    title: str
    question: str
    interpretation: str
    notebook: Path | None
    executed: bool
    duration_s: float | None
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    method: str = ""
    findings: list[str] = field(default_factory=list)
    protocol: dict[str, str] = field(default_factory=dict)
    course: Table | None = None


def _report_png(path: Path) -> bytes:
    """The PNG for the HTML report: scaled down to `MAX_IMAGE_WIDTH` pixels when wider, stored with a palette
    where it has at most 256 colours (losslessly; plots), so the report stays a size a browser opens quickly."""
    with Image.open(path) as image:
        if image.width <= MAX_IMAGE_WIDTH and image.mode == "P":
            return path.read_bytes()
        small = image.convert("RGB")
    if small.width > MAX_IMAGE_WIDTH:
        small = small.resize((MAX_IMAGE_WIDTH, round(small.height * MAX_IMAGE_WIDTH / small.width)),
                             Image.Resampling.LANCZOS)
    colours = small.getcolors(256)
    if colours is not None:
        small = small.quantize(len(colours), dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()


def notebook_text(path: Path) -> tuple[str, str, str]:
    """(title, question, interpretation) of a notebook: its first markdown cell (the `# ` heading line and the
    rest) and the body of its `## Interpretation` cell (empty when it has none)."""
    cells = [c.source.strip() for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
    first = cells[0] if cells else ""
    heading, _, question = first.partition("\n") if first.startswith("# ") else ("", "", first)
    interpretation = next((c.partition("\n")[2].strip() for c in cells if c.startswith("## Interpretation")), "")
    return heading.lstrip("# ").strip(), question.strip(), interpretation


def split_question(text: str) -> tuple[str, str]:
    """(question, method) of a notebook's first cell: the paragraph(s) up to the first one that starts with a bold
    'Method.', 'Setup.', 'Data.' or 'Evaluation.' label, and the rest."""
    paragraphs = text.split("\n\n")
    labels = ("**Method.**", "**Setup.**", "**Data.**", "**Evaluation.**")
    cut = next((k for k, p in enumerate(paragraphs) if k and p.startswith(labels)), len(paragraphs))
    return "\n\n".join(paragraphs[:cut]).strip(), "\n\n".join(paragraphs[cut:]).strip()


def generated_findings(path: Path) -> list[str]:
    """The markdown an executed notebook displayed: the result sentences `utils.interpretation` wrote from its
    tables (empty for a notebook that has not run)."""
    cells = nbformat.read(path, as_version=4).cells
    return [str(output["data"]["text/markdown"]).strip() for cell in cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "text/markdown" in output.get("data", {})]


def _written(path: Path) -> tuple[str, float]:
    """When a table or figure was written: its metadata's `created_utc` and seconds since its notebook started
    (finer than the second), ('', 0) where not recorded."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            text = str(image.info.get("Description", ""))
        meta = dict(item.split(": ", 1) for item in text.split("; ") if ": " in item)
    else:
        try:
            meta = read_sidecar(path)["metadata"]
        except ResultsFileError:   # left out of the report, with a warning, when its table is read
            meta = {}
    try:
        seconds = float(meta.get("wall_seconds_since_start", 0))
    except ValueError:
        seconds = 0.0
    return str(meta.get("created_utc", "")), seconds


def in_written_order(paths: list[Path]) -> list[Path]:
    """Tables or figures in the order their notebook wrote them (recorded time, then name)."""
    return sorted(paths, key=lambda p: (*_written(p), p.name))


def _iterations(by_init: dict) -> str:
    """A set's distillation iterations: one number where every init has the same, else one per init."""
    counts = {init: config.iterations for init, config in by_init.items()}
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values())):,}"
    return ", ".join(f"{n:,} ({init})" for init, n in counts.items())


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _also(ev: EvaluationSettings) -> str:
    """The protocols every study set and floor is also evaluated under (`EvaluationSettings.also`), in words."""
    return "; ".join(f"{name}: {protocol_words(name, ev)}" for name in ev.also) or "no"


def _curve(ev: EvaluationSettings) -> str:
    """Where a set's accuracy-vs-iterations curve is sampled and with how many networks."""
    if not ev.curve_points:
        return "none"
    return (f"iteration 0, {ev.curve_points} point{'s' if ev.curve_points > 1 else ''} inside and the final set; "
            f"{ev.curve_models} network{'s' if ev.curve_models > 1 else ''} a point before the final "
            f"({ev.n_models} at the final)")


def protocol_card(profile_name: str, number: str) -> dict[str, str]:
    """The settings behind a notebook's numbers, read from the profile (`utils.profiles`): evaluation epochs,
    networks, DSA, ZCA, learning rate, test images and distillation budgets; empty for an unknown profile."""
    profile = PROFILES.get(profile_name)
    if profile is None:
        return {}
    ev = profile.evaluation
    test_images = f"{ev.test_images:,} (stratified subset)" if ev.test_images else "the whole test set"
    if number == "01":
        b = profile.baseline
        return {"datasets": ", ".join(b.datasets), "network": b.architecture, "epochs": str(b.epochs),
                "train images": f"{b.train_images:,}" if b.train_images else "the whole training set",
                "optimiser": f"SGD, momentum 0.9, cosine annealing from lr {b.lr:g}, batch {b.batch_size}",
                "test images": test_images}
    if number in ("02", "06", "07"):
        method = {"02": "gm", "06": "mtt", "07": "dm"}[number]
        study = profile.study
        variants = study.variants if number == "02" else ("dsa",)
        budgets = {f"{d}, ipc {ipc}": {init: profile.method_config(method, d, ipc, init) for init in study.inits}
                   for d in study.datasets for ipc in study.ipcs}
        return {"sets": f"{', '.join(study.datasets)}; ipc {', '.join(map(str, study.ipcs))}; "
                        f"init {', '.join(study.inits)}",
                "distillation iterations": "; ".join(f"{k}: {_iterations(c)}" for k, c in budgets.items()),
                "ZCA": _yes_no(any(getattr(c, "zca", False) for by_init in budgets.values()
                                   for c in by_init.values())),
                "evaluation network": ev.architecture, "networks per set": str(ev.n_models),
                "evaluation epochs": "; ".join(f"{ev.dsa_epochs if v == 'dsa' else ev.epochs} "
                                               f"({'with' if v == 'dsa' else 'without'} DSA)" for v in variants),
                "DSA during evaluation": ", ".join("with" if v == "dsa" else "without" for v in variants),
                "evaluation lr": "the learned lr of each set" if number == "06" else f"{ev.lr:g}",
                "also evaluated": _also(ev), "accuracy-vs-iterations curve": _curve(ev),
                "test images": test_images}
    if number == "03":
        c = profile.cross_arch
        limit = min((n for n in (ev.test_images, c.test_images) if n), default=None)
        budgets = []
        for arch in c.architectures:
            epochs, lr = c.budget(arch)
            budgets.append(f"{arch} {epochs} epochs, lr {lr:g}" if lr is not None
                           else f"{arch} {epochs} epochs, lr: a set's learned (MTT) or {ev.lr:g}")
        return {"sets": "; ".join(f"{', '.join(g.architectures)}: {grid_sets(g)}" for g in c.grids),
                "architectures and budgets": "; ".join(budgets), "networks per set": str(c.n_models),
                "DSA during evaluation": "no",
                "test images": f"{limit:,} (stratified subset)" if limit else "the whole test set"}
    if number == "04":
        card = {}
        for n in profile.nas.searches:
            images = f"{n.full_train_images:,}" if n.full_train_images else "all"
            whose = " (the course report's)" if n.course else ""
            card[f"{n.dataset} search{whose}"] = (
                f"candidates {', '.join(n.candidates)}; full data: {counted(n.full_epochs, 'epoch')} on {images} "
                f"training images, {counted(n.full_seeds, 'seed')}, and {counted(2 * n.full_epochs, 'epoch')}, "
                f"{counted(n.longer_seeds, 'seed')} (cosine annealing from lr 0.01); distilled: the {n.method} set, "
                f"ipc {n.ipc}, {n.init} init, {counted(n.distilled_epochs, 'epoch')} ({n.distilled_schedule} "
                f"schedule), {counted(n.n_models, 'network')} per candidate, no DSA")
        return {**card, "test images": test_images}
    if number == "05":
        m = profile.mhist
        return {"images": f"{m.im_size}×{m.im_size}", "network": m.architecture,
                "sets": f"ipc {', '.join(map(str, m.ipcs))}; init {', '.join(m.inits)}",
                "distillation iterations": "; ".join(
                    f"{k}: {_iterations({init: m.method_config(k, ipc, init) for init in m.inits})} (ipc {ipc})"
                    for k in ("gm", "dm", "mtt") for ipc in m.ipcs),
                "evaluation epochs": f"{m.eval_epochs} (with DSA)", "networks per set": str(m.n_models),
                "also evaluated": _also(ev), "accuracy-vs-iterations curve": _curve(ev),
                "full-data baseline": f"{m.baseline_epochs} epochs", "test images": test_images}
    return {}


def _duration(path: Path) -> float | None:
    """Wall time papermill recorded for an executed notebook, in seconds."""
    duration = nbformat.read(path, as_version=4).metadata.get("papermill", {}).get("duration")
    return float(duration) if duration is not None else None


def _figure_caption(name: str, notebook_stem: str) -> str:
    """'02_gradient_matching_CIFAR10_ipc10_noise_images' -> 'CIFAR10 ipc10 noise images'."""
    short = name[len(notebook_stem) + 1:] if name.startswith(notebook_stem + "_") else name[3:]
    return short.replace("_", " ") or name.replace("_", " ")


def load_table(path: Path) -> Table:
    """A results table with its caption and metadata (sidecar JSON, or an older CSV's `#` header)."""
    side = read_sidecar(path)
    return Table(path.stem, side["caption"], side["metadata"], read_table(path))


class ReportWarning(UserWarning):
    """A file of the results folder is left out of the report (the report lists it with the reason too)."""


def _leave_out(skipped: list[str], message: str) -> None:
    """Warn that a file is left out, once, and record it for the report's list of left-out files."""
    if message not in skipped:
        warnings.warn(message, ReportWarning, stacklevel=3)
        skipped.append(message)


def _contained(root: Path, paths: Iterable[Path], skipped: list[str]) -> list[Path]:
    """`paths` less those that resolve outside `root` (symlinks leading out), each left out with a warning."""
    kept = []
    for path in paths:
        target = outside(root, path)
        if target is None:
            kept.append(path)
        else:
            _leave_out(skipped, f"{path.relative_to(root).as_posix()} links to {target}, outside the results "
                                "folder: left out of the report")
    return kept


def _readable_tables(root: Path, paths: list[Path], skipped: list[str]) -> list[Table]:
    """The tables at `paths` that can be read; one whose CSV or sidecar is damaged is left out with a warning."""
    found = []
    for path in paths:
        if sidecar(path).exists() and not _contained(root, [sidecar(path)], skipped):
            continue
        try:
            found.append(load_table(path))
        except ResultsFileError as err:
            _leave_out(skipped, f"{err}: left out of the report")
    return found


def _pdf(root: Path, png: Path, skipped: list[str]) -> Path | None:
    """The PDF beside a figure's PNG, if there is one inside the folder."""
    pdf = png.with_suffix(".pdf")
    return next(iter(_contained(root, [pdf], skipped)), None) if pdf.exists() else None


def sections(results_dir: Path, skipped: list[str] | None = None) -> list[Section]:
    """One section per notebook number that has an executed notebook, a table or a figure in `results_dir`, in
    order; the text comes from the executed notebook, else from the project's notebook of that number. Files
    that resolve outside `results_dir` or cannot be read are left out, each named in a warning and in
    `skipped`."""
    skipped = [] if skipped is None else skipped
    executed = {p.name[:2]: p for p in _contained(
        results_dir, sorted((results_dir / "notebooks").glob("[0-9][0-9]_*.ipynb")), skipped)}
    source = {p.name[:2]: p for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}
    tables = in_written_order(_contained(results_dir, list((results_dir / "tables").glob("[0-9][0-9]_*.csv")),
                                         skipped))
    figures = in_written_order(_contained(results_dir, list((results_dir / "figures").glob("[0-9][0-9]_*.png")),
                                          skipped))
    numbers = sorted(set(executed) | {p.name[:2] for p in tables} | {p.name[:2] for p in figures})
    found = []
    for number in numbers:
        notebook = executed.get(number) or source.get(number)
        title, question, interpretation = notebook_text(notebook) if notebook else (f"Notebook {number}", "", "")
        stem = notebook.stem if notebook else number
        question, method = split_question(question)
        section = Section(number, title, question, interpretation, notebook, number in executed,
                          _duration(executed[number]) if number in executed else None, method=method,
                          findings=generated_findings(executed[number]) if number in executed else [])
        section.tables = _readable_tables(results_dir, [p for p in tables if p.name[:2] == number], skipped)
        section.figures = [Figure(p.stem, _figure_caption(p.stem, stem), p, _pdf(results_dir, p, skipped))
                           for p in figures if p.name[:2] == number]
        profiles = list(dict.fromkeys(str(t.metadata.get("profile", "")) for t in section.tables))
        section.protocol = protocol_card(profiles[0], number) if len(profiles) == 1 else {}
        course = course_vs_run(results_dir, number)
        if len(course):
            section.course = Table(f"{number}_course_report", COURSE_CAPTION, {}, course)
        found.append(section)
    return found


def _distinct(values: Iterable[str]) -> str:
    """Distinct non-empty values in first-seen order, joined for display ('-' when none)."""
    return "; ".join(dict.fromkeys(v for v in values if v)) or "-"


def setup(results_dir: Path, found: list[Section]) -> dict[str, str]:
    """Machine, profile, device, precision, versions, commit and total time, from the tables' metadata and the
    executed notebooks."""
    metas = [t.metadata for s in found for t in s.tables]
    durations = [s.duration_s for s in found if s.duration_s is not None]
    if not durations:   # no executed notebooks: the longest time since start any table of a notebook recorded
        per_notebook: dict[str, float] = {}
        for m in metas:
            seconds = float(m.get("wall_seconds_since_start") or 0)
            per_notebook[m.get("notebook", "")] = max(per_notebook.get(m.get("notebook", ""), 0.0), seconds)
        durations = list(per_notebook.values())
    total = sum(durations)
    return {
        "profile": _distinct(m.get("profile", "") for m in metas),
        "seed": _distinct(str(m.get("seed", "")) for m in metas),
        "machine": _distinct(m.get("hardware", "") for m in metas),
        "device": _distinct(m.get("device", "") for m in metas),
        "precision": _distinct(m.get("precision", "") for m in metas),
        "software": _distinct(f"python {m['python']}, torch {m['torch']}, torchvision {m.get('torchvision', '?')}"
                              for m in metas if "python" in m and "torch" in m),
        "commit": _distinct(m.get("commit", "") for m in metas) if any("commit" in m for m in metas)
        else "not recorded (results written before commits were recorded)",
        "total time": f"{total / 3600:.2f} h ({total:.0f} s, sum over notebooks)" if total else "-",
        "notebooks": ", ".join(f"{s.number}{'' if s.executed else ' (no executed notebook)'}" for s in found),
        "results written": _distinct(sorted({m.get("created_utc", "")[:10] for m in metas})),
        "code digest": provenance.code_line(results_dir).removeprefix(provenance.CODE_PREFIX).replace("`", "").strip()
        or "not recorded (results written before code digests were recorded)",
    }


def file_listing(results_dir: Path, skip: Iterable[Path] = (),
                 left_out: list[str] | None = None) -> list[tuple[str, str]]:
    """Every file under `results_dir` (relative path, human-readable size), except `skip`, hidden files and
    files that resolve outside the folder (each named in a warning and in `left_out`)."""
    skipped = {p.resolve() for p in skip}
    rows = []
    for path in _contained(results_dir, sorted(results_dir.rglob("*")), [] if left_out is None else left_out):
        relative = path.relative_to(results_dir)
        if path.is_file() and path.resolve() not in skipped and not any(p.startswith(".") for p in relative.parts):
            size = path.stat().st_size
            unit = next((u for u, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)) if size >= f), "B")
            scale = {"GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}[unit]
            rows.append((relative.as_posix(), f"{size / scale:.1f} {unit}" if unit != "B" else f"{size} B"))
    return rows


def _comparison(found: list[Section]) -> list[Table]:
    """The tables that answer 'how do we compare': best set per dataset, published and course-report numbers."""
    by_name = {t.name: t for s in found for t in s.tables}
    return [by_name[n] for n in ("08_best", "08_published") if n in by_name]


def _ours(row: pd.Series, column: str) -> str:
    """This run's number in a course-report row: 'mean ± std', or the mean alone (one network)."""
    std = row[std_column(column)]
    return f"{row[column]:g}" if pd.isna(std) else shown((row[column], std))


def _course_lines(found: list[Section]) -> list[str]:
    """One line per course-report number that this run has a counterpart for: both numbers and the difference,
    under this run's headline protocol and, where evaluated, the course report's own."""
    lines = []
    for s in found:
        if s.course is None:
            continue
        for _, row in s.course.frame.iterrows():
            if pd.isna(row[RUN_HEADLINE]):
                continue
            gap = row[RUN_HEADLINE] - row["course report"]
            line = (f"- {row['what']}: {_ours(row, RUN_HEADLINE)} {row['unit']} in this run against "
                    f"{row['course report']:g} {row['unit']} in the course report ({gap:+.2f})")
            if pd.notna(row[RUN_COURSE]):
                line += (f"; trained the course report's way, {_ours(row, RUN_COURSE)} {row['unit']} "
                         f"({row[RUN_COURSE] - row['course report']:+.2f})")
            lines.append(line + ".")
    return lines


def abstract(found: list[Section]) -> str:
    """The report's abstract (markdown): what was run, and the best distilled set per dataset against random real
    images of the same size, from the comparison table (08_best) where the run has it."""
    by_name = {t.name: t for s in found for t in s.tables}
    profile = _distinct(str(t.metadata.get("profile", "")) for s in found for t in s.tables)
    text = (f"We distil MNIST, CIFAR-10 and MHIST into a few synthetic images per class with gradient matching "
            f"(with DSA), distribution matching and trajectory matching, train networks from scratch on them, and "
            f"compare them with random real images of the same size, with the published numbers and with the "
            f"{COURSE_REPORT}. This run used the `{profile}` profile.")
    if "08_best" in by_name:
        text += " Per dataset and size, the best distilled set against random real images:\n\n" + \
            best_summary(by_name["08_best"].frame)
    return text


def conclusions(found: list[Section]) -> str:
    """The conclusions (markdown), every sentence generated from the tables: the comparison's (08) and each course
    report number against this run's."""
    parts = []
    comparison = next((s for s in found if s.number == "08"), None)
    if comparison is not None and comparison.findings:
        parts.append("**Across methods** (section 08).\n\n" + "\n\n".join(comparison.findings))
    lines = _course_lines(found)
    if lines:
        parts.append(f"**Against the {COURSE_REPORT}** (its GPU protocol; this run's protocol is in each section's "
                     "card, so a difference is the protocol's as much as the method's).\n\n" + "\n".join(lines))
    return "\n\n".join(parts) or "This results folder has no comparison (08) and no number to set beside the course " \
                                   "report's; run the notebooks first."


def _emphasis_safe(text: str) -> str:
    """Markdown in which a '*' inside a symbol such as θ*ₜ is a literal star, not the start of emphasis."""
    return re.sub(r"(?<=[^\s*\\])\*(?=[ₜₘ₊₀-₉])", r"\\*", text or "")


def render_html(results_dir: Path, found: list[Section], files: list[tuple[str, str]],
                skipped: Iterable[str] = ()) -> str:
    """The HTML report (jinja2 template `templates/report.html.j2`): the notebooks' markdown sanitised, file links
    relative and quoted, and the files left out (`skipped`) listed."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["j2"]))
    env.filters["markdown"] = lambda text: jinja2.utils.markupsafe.Markup(
        sanitise(markdown2html(_emphasis_safe(text))))
    env.filters["relative_href"] = relative_href
    return env.get_template("report.html.j2").render(
        title=TITLE, status=provenance.status_line(results_dir), course_report=COURSE_REPORT,
        setup=setup(results_dir, found), sections=found,
        comparison=_comparison(found), files=files, skipped=list(skipped), abstract=abstract(found),
        conclusions=conclusions(found),
        macs=MACS, references=REFERENCES, generated=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def latex_text(text: str) -> str:
    """Plain text made safe for LaTeX: special characters escaped, common symbols as LaTeX commands (θ̂ as a hatted
    θ), any other non-ASCII character as '?'."""
    return r"$\hat{\theta}$".join("".join(LATEX_SYMBOLS.get(c, c if ord(c) < 128 else "?") for c in latex_escape(part))
                                   for part in text.split("θ\u0302"))


def _latex_nodes(nodes: list[dict]) -> str:
    """LaTeX for mistune's markdown syntax tree (paragraphs, lists, emphasis, code, links)."""
    parts = []
    for node in nodes:
        kind, children = node["type"], node.get("children", [])
        if kind == "text":
            parts.append(latex_text(node["raw"]))
        elif kind == "codespan":
            parts.append(r"\texttt{" + latex_text(node["raw"]) + "}")
        elif kind == "strong":
            parts.append(r"\textbf{" + _latex_nodes(children) + "}")
        elif kind == "emphasis":
            parts.append(r"\emph{" + _latex_nodes(children) + "}")
        elif kind in ("softbreak", "linebreak"):
            parts.append("\n")
        elif kind == "paragraph":
            parts.append(_latex_nodes(children) + "\n\n")
        elif kind == "list":
            env = "enumerate" if node.get("attrs", {}).get("ordered") else "itemize"
            parts.append(f"\\begin{{{env}}}\n" + _latex_nodes(children) + f"\\end{{{env}}}\n\n")
        elif kind == "list_item":
            parts.append(r"\item " + _latex_nodes(children).strip() + "\n")
        elif kind == "heading":
            parts.append(r"\paragraph{" + _latex_nodes(children) + "}\n")
        elif kind == "block_code":
            parts.append(r"\begin{verbatim}" + "\n" + node["raw"] + r"\end{verbatim}" + "\n\n")
        else:   # block_text, link and anything else: its text
            parts.append(_latex_nodes(children) if children else latex_text(node.get("raw", "")))
    return "".join(parts)


def markdown2latex(text: str) -> str:
    """Notebook markdown as LaTeX, parsed by mistune."""
    return _latex_nodes(mistune.create_markdown(renderer=None)(_emphasis_safe(text))).strip()


def render_latex(results_dir: Path, found: list[Section]) -> str:
    """`report/report.tex`: `\\input`s every `.tex` table and `\\includegraphics` every PDF figure, by paths
    relative to `DIR/report/`."""
    info = setup(results_dir, found)
    lines = [r"\documentclass[10pt]{article}", r"\usepackage[T1]{fontenc}", r"\usepackage[utf8]{inputenc}",
             r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs}", r"\usepackage{graphicx}",
             r"\DeclareUnicodeCharacter{00B1}{\ensuremath{\pm}}", r"\DeclareUnicodeCharacter{03C1}{\ensuremath{\rho}}",
             r"\DeclareUnicodeCharacter{03C4}{\ensuremath{\tau}}", r"\DeclareUnicodeCharacter{2212}{-}",
             r"\DeclareUnicodeCharacter{00D7}{\ensuremath{\times}}", r"\DeclareUnicodeCharacter{00B7}{.}",
             r"\title{" + latex_text(TITLE) + "}", r"\date{" + latex_text(info["results written"]) + "}",
             r"\begin{document}", *_latex_status(results_dir), r"\sloppy", r"\maketitle", r"\begin{abstract}",
             markdown2latex(abstract(found)),
             r"\end{abstract}", r"\tableofcontents", r"\section*{Setup}", r"\begin{itemize}"]
    lines += [r"\item \textbf{" + latex_text(k) + "}: " + latex_text(v) for k, v in info.items()]
    lines += [r"\end{itemize}", latex_text(MACS), "",
              "Published numbers and those of the " + latex_text(COURSE_REPORT) + " are in the tables of "
              "section 08 and, number by number, at the end of each section.", ""]
    for s in found:
        lines += [r"\clearpage", r"\section{" + latex_text(s.title) + "}", markdown2latex(s.question), ""]
        if s.method:
            lines += [r"\subsection*{Method}", markdown2latex(s.method), ""]
        if s.protocol:
            lines += [r"\subsection*{Setup}", latex_table(pd.DataFrame(list(s.protocol.items()),
                                                                         columns=["setting", "value"]))
                      .replace(r"\begin{tabular}{ll}", r"\begin{tabular}{lp{0.7\linewidth}}"), ""]
        lines += [r"\subsection*{Results}"]
        for t in s.tables:
            lines += [r"\begingroup\footnotesize", r"\input{../tables/" + t.name + ".tex}", r"\endgroup", ""]
        for f in s.figures:
            if f.pdf is not None:
                lines += [r"\begin{figure}[htbp]", r"\centering",
                          r"\includegraphics[width=\linewidth,height=0.45\textheight,keepaspectratio]{../figures/"
                          + f.pdf.name + "}", r"\caption{" + latex_text(f.caption) + "}", r"\end{figure}", ""]
        lines += [markdown2latex(text) + "\n" for text in s.findings]
        if s.course is not None:
            lines += [r"\subsection*{Course report vs this run}", r"\begingroup\footnotesize",
                      latex_table(display_frame(s.course.frame), s.course.caption), r"\endgroup", ""]
        if s.interpretation:
            lines += [r"\subsection*{Interpretation}", markdown2latex(s.interpretation), ""]
    lines += [r"\clearpage", r"\section*{Conclusions}", markdown2latex(conclusions(found)), "",
              r"\section*{References}", r"\begin{enumerate}",
              *(r"\item " + latex_text(ref) for ref in REFERENCES), r"\end{enumerate}", r"\end{document}", ""]
    return "\n".join(lines)


def _latex_status(results_dir: Path) -> list[str]:
    """The status line (partial results, changed code) as the document's first paragraph, if there is one."""
    status = provenance.status_line(results_dir)
    return [r"\noindent\textbf{" + latex_text(status.replace("**", "").replace("`", "")) + "}", ""] if status else []


LATEX_PACKAGES = "texlive-latex-base texlive-latex-recommended"   # Debian: pdflatex, booktabs, graphicx, geometry


def compile_pdf(tex_path: Path) -> Path:
    """`report.pdf` beside `tex_path`, compiled twice by pdflatex (the contents need the second pass) in a
    temporary folder and renamed into place; a missing pdflatex or a failed compile is an error naming it."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise FileNotFoundError(f"pdflatex is not installed, so {tex_path.with_suffix('.pdf')} cannot be written "
                                f"(Debian: apt-get install {LATEX_PACKAGES}); the .tex is there")
    with tempfile.TemporaryDirectory() as out:
        for _ in range(2):
            done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", f"-output-directory={out}",
                                   tex_path.name], cwd=tex_path.parent, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"pdflatex failed on {tex_path} (exit {done.returncode}):\n{done.stdout[-3000:]}")
        built = Path(out) / tex_path.with_suffix(".pdf").name
        return atomic_write(tex_path.with_suffix(".pdf"), lambda p: shutil.copyfile(built, p))


def build(results_dir: str | Path = RESULTS_DIR, pdf: bool = False) -> dict[str, Path]:
    """Write `report.html` and `report/report.tex` into `results_dir`, with `pdf` also `report/report.pdf`;
    returns their paths."""
    root = Path(results_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"--results-dir {root} is not a folder; run `make results` (or "
                                "`python -m utils.pipeline`) first, or name a results folder")
    skipped: list[str] = []
    found = sections(root, skipped)
    if not found:
        raise FileNotFoundError(f"{root} has no tables, figures or executed notebooks (expected "
                                f"tables/NN_*.csv, figures/NN_*.png or notebooks/NN_*.ipynb); run the notebooks first")
    html_path, tex_path = root / "report.html", root / "report" / "report.tex"
    pdf_path = tex_path.with_suffix(".pdf")
    files = sorted(file_listing(root, skip=[html_path, tex_path, pdf_path], left_out=skipped)
                   + [("report.html", "this report"), ("report/report.tex", "this report in LaTeX")]
                   + ([("report/report.pdf", "this report as PDF")] if pdf else []))
    html, tex = render_html(root, found, files, skipped), render_latex(root, found)
    atomic_write_many({html_path: lambda p: p.write_text(html, encoding="utf-8"),
                       tex_path: lambda p: p.write_text(tex, encoding="utf-8")})
    return {"html": html_path, "tex": tex_path, **({"pdf": compile_pdf(tex_path)} if pdf else {})}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="default: results/")
    parser.add_argument("--pdf", action="store_true", help="also compile report/report.pdf with pdflatex")
    args = parser.parse_args(argv)
    paths = build(args.results_dir, pdf=args.pdf)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
