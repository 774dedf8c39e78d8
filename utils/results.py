"""Write tables and figures atomically under a results folder, each stamped with run metadata."""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch
import torchvision

from utils.paths import PROJECT_ROOT


def _temporary_beside(path: Path) -> Path:
    """Create an empty, uniquely named hidden file beside `path` with the usual umask-respecting permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.stem}-{secrets.token_hex(4)}{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write_many(writes: dict[Path, Callable[[Path], None]]) -> dict[Path, Path]:
    """Call each `write(tmp)` on a temporary file beside its path; only once all succeeded, rename them into
    place together, so a failure (e.g. a full disk) leaves every previous file untouched and no temporary file."""
    staged: dict[Path, Path] = {}
    try:
        for path, write in writes.items():
            staged[path] = _temporary_beside(path)
            write(staged[path])
        for path, tmp in staged.items():
            os.replace(tmp, path)
    except OSError as err:
        if err.errno is not None and err.filename is None:   # a full disk names no file
            err.filename = str(path)
        raise
    finally:
        for tmp in staged.values():
            if os.path.exists(tmp):
                os.remove(tmp)
    return {path: path for path in writes}


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place."""
    atomic_write_many({Path(path): write})
    return Path(path)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


MACHINE_COLUMN = "machine"   # where a row's units ran; written only where a table's rows differ in it


def std_column(column: str) -> str:
    """The column that holds the std of a mean column: 'accuracy (%)' -> 'accuracy std (%)', 'x' -> 'x std'."""
    return f"{column[:-4]} std (%)" if column.endswith(" (%)") else f"{column} std"


def mean_std(row: Mapping, column: str) -> tuple[float, float] | None:
    """(mean, std) of `column` in a table row, std from its `std_column` (0 without one); None where the mean is
    missing (not measured)."""
    mean = row.get(column)
    if mean is None or pd.isna(mean):
        return None
    std = row.get(std_column(column))
    return float(mean), 0.0 if std is None or pd.isna(std) else float(std)


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` as Markdown, TeX and HTML show it: each mean column and its `std_column` as one 'mean ± std' cell
    (two decimals; the mean alone where the std is missing), integer columns without a decimal point, missing
    values as '-'."""
    shown = pd.DataFrame(index=df.index)
    stds = {std_column(c) for c in df.columns} & set(df.columns)
    for column in df.columns:
        if column in stds:
            continue
        values = df[column]
        if std_column(column) in df.columns:
            pairs = zip(values, df[std_column(column)])
            shown[column] = ["-" if pd.isna(m) else f"{m:.2f}" if pd.isna(s) else f"{m:.2f} ± {s:.2f}"
                             for m, s in pairs]
        elif pd.api.types.is_float_dtype(values) and values.dropna().map(float.is_integer).all():
            shown[column] = [f"{v:,.0f}" if not pd.isna(v) else "-" for v in values]
        elif pd.api.types.is_float_dtype(values):
            shown[column] = [f"{round(v, 4):,}" if not pd.isna(v) else "-" for v in values]
        else:
            shown[column] = values.astype(object).where(values.notna(), "-")
    return shown


def _integer_columns(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every column that holds only whole numbers and gaps (pandas made it float) as pandas' nullable
    integers, so the CSV writes '6' (not '6.0') and an empty cell where a value is missing; percentages stay
    measurements (floats)."""
    df = df.copy()
    for column in df.columns:
        values = df[column]
        present = values.dropna()
        if (pd.api.types.is_float_dtype(values) and values.isna().any() and len(present)
                and not str(column).endswith("(%)")
                and present.map(float.is_integer).all()):
            df[column] = values.astype("Int64")
    return df


def latex_table(shown: pd.DataFrame, caption: str = "") -> str:
    """A displayed table as a LaTeX table that never runs wider than the text: scaled down to the line width
    where it is wider (`\\resizebox`, from graphicx)."""
    tabular = shown.to_latex(index=False, escape=True)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines += [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%", tabular.rstrip("\n") + "}",
              r"\end{table}", ""]
    return "\n".join(lines)


def sidecar(path: str | os.PathLike) -> Path:
    """The metadata file `<name>.json` beside a table's `<name>.csv`."""
    return Path(path).with_suffix(".json")


def _legacy_header(path: str | os.PathLike) -> dict[str, str]:
    """The `# key: value` lines that older result CSVs started with (read so old results folders still work)."""
    meta = {}
    with open(path) as handle:
        for line in handle:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].rstrip("\n").partition(": ")
            meta[key] = value
    return meta


class ResultsFileError(ValueError):
    """A table's CSV or sidecar JSON cannot be read (the message names the file and the remedy)."""


def _damaged(path: str | os.PathLike, what: str) -> ResultsFileError:
    return ResultsFileError(f"{path}: {what}; re-run the notebook that writes it (python -m utils.pipeline --only "
                            f"{Path(path).name[:2]}) or delete it")


def read_sidecar(path: str | os.PathLike) -> dict:
    """A table's sidecar: `caption`, `metadata` and `integer_columns`; for an older CSV without one, built from
    its `#` header and the bold first line of its `.md`. A damaged sidecar is a `ResultsFileError`."""
    json_path = sidecar(path)
    if json_path.exists():
        try:
            side = json.loads(json_path.read_text())
        except ValueError as err:   # JSONDecodeError, UnicodeDecodeError
            raise _damaged(json_path, f"cannot be read as JSON ({type(err).__name__}: {err})") from err
        kinds = {"caption": str, "metadata": dict, "integer_columns": list}
        if not isinstance(side, dict) or any(not isinstance(side.get(k), kind) for k, kind in kinds.items()):
            raise _damaged(json_path, "expected a JSON object with a caption (text), metadata (an object) and "
                                      "integer_columns (a list)")
        return side
    markdown = Path(path).with_suffix(".md")
    first = markdown.read_text().partition("\n")[0] if markdown.exists() else ""
    caption = first[2:-2] if first.startswith("**") and first.endswith("**") else ""
    return {"caption": caption, "metadata": _legacy_header(Path(path).with_suffix(".csv")), "integer_columns": []}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The run metadata (profile, seed, device, hardware, versions, time) of a results table."""
    return read_sidecar(path)["metadata"]


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV (a plain CSV; older ones had a `#` header, skipped), integer columns as integers
    (pandas' nullable integers where a value is missing); a malformed one (a row of another width than the header,
    unparsable) is a `ResultsFileError`."""
    side = read_sidecar(path)
    skip = 0 if sidecar(path).exists() else len(side["metadata"])
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))[skip:]
        ragged = next((n for n, row in enumerate(rows[1:], 2) if row and len(row) != len(rows[0])), None)
        if ragged is None:
            table = _numeric_summaries(pd.read_csv(path, skiprows=skip,
                                                   dtype={c: "Int64" for c in side["integer_columns"]}))
            return table.astype({c: "int64" for c in side["integer_columns"] if not table[c].isna().any()})
    except (ValueError, TypeError, csv.Error) as err:   # undecodable, empty, unparsable, integers holding text
        raise _damaged(path, f"cannot be read as CSV ({type(err).__name__}: {err})") from err
    raise _damaged(path, f"record {ragged} has {len(rows[ragged - 1])} fields; the header has {len(rows[0])}")


SUMMARY = re.compile(r"^\s*(-?\d+(?:\.\d+)?)(?:\s*±\s*(\d+(?:\.\d+)?))?\s*$")


def _numeric_summaries(table: pd.DataFrame) -> pd.DataFrame:
    """Older results stored 'mean ± std' strings and '-' for missing values: each text column whose cells are all
    such becomes a mean column and its `std_column` (where any cell had a std), '-' an empty value."""
    for column in [c for c in table.columns if pd.api.types.is_object_dtype(table[c])
                   or pd.api.types.is_string_dtype(table[c])]:
        texts = table[column].map(lambda c: "" if pd.isna(c) else str(c).strip())
        matches = texts[~texts.isin(["", "-"])].map(SUMMARY.match)
        if matches.empty or matches.isna().any():
            continue
        table[column] = pd.to_numeric(matches.map(lambda m: m.group(1))).reindex(table.index)
        if matches.map(lambda m: m.group(2) is not None).any() and std_column(column) not in table.columns:
            table.insert(table.columns.get_loc(column) + 1, std_column(column),
                         pd.to_numeric(matches.map(lambda m: m.group(2))).reindex(table.index))
    return table


@lru_cache(maxsize=1)
def code_commit() -> str:
    """The project's git commit (short hash, '-dirty' with uncommitted changes to tracked files outside `results/`,
    which a run rewrites), else 'unknown'."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        dirty = git("status", "--porcelain", "-uno", "--", ".", ":(exclude)results")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class ResultWriter:
    """Saves a notebook's tables (CSV, Markdown, LaTeX) and figures (PNG, PDF) with profile, seed, device,
    versions and wall time."""

    def __init__(self, results_dir: str | os.PathLike, *, notebook: str, profile: str, seed: int, device: str,
                 details: dict[str, str] | None = None):
        self.root = Path(results_dir)
        self.notebook, self.profile, self.seed, self.device = notebook, profile, seed, str(device)
        self.details = details or {}   # e.g. precision and hardware
        self.start = time.perf_counter()
        for sub in ("tables", "figures", "synthetic"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    def metadata(self) -> dict[str, str | int | float]:
        """Run metadata stamped into every file: profile, seed (int), device, versions, commit, time (seconds as
        a float)."""
        return {"notebook": self.notebook, "profile": self.profile, "seed": int(self.seed), "device": self.device,
                **self.details, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version(), "commit": code_commit(),
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds_since_start": round(time.perf_counter() - self.start, 1)}

    def table(self, df: pd.DataFrame, name: str, caption: str = "") -> dict[str, Path]:
        """Write `df` as `tables/<name>.csv` (plain: numbers as numbers, missing values empty), `.json` (caption
        and typed metadata), `.md` and `.tex` ('mean ± std' cells, `display_frame`), all renamed into place
        together. A `MACHINE_COLUMN` is written only where its rows differ (units from several machines)."""
        if MACHINE_COLUMN in df.columns and df[MACHINE_COLUMN].nunique(dropna=False) <= 1:
            df = df.drop(columns=[MACHINE_COLUMN])
        df = _integer_columns(df)
        shown = display_frame(df)
        meta = self.metadata()
        footer = "; ".join(f"{k}: {v}" for k, v in meta.items())
        body = {"caption": caption, "metadata": meta,
                "integer_columns": [str(c) for c in df.columns if pd.api.types.is_integer_dtype(df[c])]}
        texts = {
            "csv": df.to_csv(index=False),
            "json": json.dumps(body, indent=2) + "\n",
            "md": (f"**{caption}**\n\n" if caption else "") + shown.to_markdown(index=False)
                  + f"\n\n<sub>{footer}</sub>\n",
            "tex": "".join(f"% {k}: {v}\n" for k, v in meta.items())
                   + latex_table(shown, caption),
        }
        paths = {ext: self.tables / f"{name}.{ext}" for ext in texts}
        atomic_write_many({paths[ext]: lambda p, text=text: p.write_text(text) for ext, text in texts.items()})
        return paths

    def figure(self, fig, name: str) -> dict[str, Path]:
        """Write a matplotlib figure as `figures/<name>.png` and `.pdf`, metadata embedded in both."""
        meta = self.metadata()
        text = "; ".join(f"{k}: {v}" for k, v in meta.items())
        paths = {ext: self.figures / f"{name}.{ext}" for ext in ("png", "pdf")}
        atomic_write_many({
            paths["png"]: lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight",
                                                metadata={"Description": text}),
            paths["pdf"]: lambda p: fig.savefig(p, format="pdf", bbox_inches="tight", metadata={"Subject": text}),
        })
        return paths
