"""Write tables and figures atomically under a results folder, each stamped with run metadata."""

from __future__ import annotations

import csv
import json
import os
import platform
import secrets
import subprocess
import time
from collections.abc import Callable
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
    """Read a results CSV (a plain CSV; older ones had a `#` header, skipped), integer columns as integers; a
    malformed one (a row of another width than the header, unparsable) is a `ResultsFileError`."""
    side = read_sidecar(path)
    skip = 0 if sidecar(path).exists() else len(side["metadata"])
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))[skip:]
        ragged = next((n for n, row in enumerate(rows[1:], 2) if row and len(row) != len(rows[0])), None)
        if ragged is None:
            return pd.read_csv(path, skiprows=skip, dtype={c: "int64" for c in side["integer_columns"]})
    except (ValueError, csv.Error) as err:   # undecodable, empty, unparsable, integer columns holding other values
        raise _damaged(path, f"cannot be read as CSV ({type(err).__name__}: {err})") from err
    raise _damaged(path, f"record {ragged} has {len(rows[ragged - 1])} fields; the header has {len(rows[0])}")


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

    def metadata(self) -> dict[str, str]:
        """Run metadata stamped into every file: profile, seed, device, versions, commit, time."""
        return {"notebook": self.notebook, "profile": self.profile, "seed": str(self.seed), "device": self.device,
                **self.details, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version(), "commit": code_commit(),
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds_since_start": f"{time.perf_counter() - self.start:.1f}"}

    def table(self, df: pd.DataFrame, name: str, caption: str = "") -> dict[str, Path]:
        """Write `df` as `tables/<name>.csv` (plain), `.json` (caption and metadata), `.md` and `.tex`, all
        renamed into place together."""
        meta = self.metadata()
        footer = "; ".join(f"{k}: {v}" for k, v in meta.items())
        body = {"caption": caption, "metadata": meta,
                "integer_columns": [str(c) for c in df.columns if pd.api.types.is_integer_dtype(df[c])]}
        texts = {
            "csv": df.to_csv(index=False),
            "json": json.dumps(body, indent=2) + "\n",
            "md": (f"**{caption}**\n\n" if caption else "") + df.to_markdown(index=False)
                  + f"\n\n<sub>{footer}</sub>\n",
            "tex": "".join(f"% {k}: {v}\n" for k, v in meta.items())
                   + df.to_latex(index=False, caption=latex_escape(caption) or None, escape=True),
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
