"""Write tables and figures atomically under a results folder, each stamped with run metadata."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
import torchvision


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV, skipping its `#` metadata header (a `#` inside a cell is kept)."""
    return pd.read_csv(path, skiprows=len(read_metadata(path)))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `# key: value` metadata header of a results CSV."""
    meta = {}
    with open(path) as handle:
        for line in handle:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].rstrip("\n").partition(": ")
            meta[key] = value
    return meta


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
        """Run metadata stamped into every file: profile, seed, device, versions, time."""
        return {"notebook": self.notebook, "profile": self.profile, "seed": str(self.seed), "device": self.device,
                **self.details, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version(), "created_utc": datetime.now(timezone.utc).isoformat(
                    timespec="seconds"), "wall_seconds_since_start": f"{time.perf_counter() - self.start:.1f}"}

    def table(self, df: pd.DataFrame, name: str, caption: str = "") -> dict[str, Path]:
        """Write `df` as `tables/<name>.csv`, `.md` and `.tex`."""
        meta = self.metadata()
        header = "".join(f"# {k}: {v}\n" for k, v in meta.items())
        footer = "; ".join(f"{k}: {v}" for k, v in meta.items())
        writers = {
            "csv": lambda p: p.write_text(header + df.to_csv(index=False)),
            "md": lambda p: p.write_text((f"**{caption}**\n\n" if caption else "") + df.to_markdown(index=False)
                                         + f"\n\n<sub>{footer}</sub>\n"),
            "tex": lambda p: p.write_text("".join(f"% {k}: {v}\n" for k, v in meta.items())
                                          + df.to_latex(index=False, caption=caption or None, escape=True)),
        }
        return {ext: atomic_write(self.tables / f"{name}.{ext}", fn) for ext, fn in writers.items()}

    def figure(self, fig, name: str) -> dict[str, Path]:
        """Write a matplotlib figure as `figures/<name>.png` and `.pdf`, metadata embedded in both."""
        meta = self.metadata()
        text = "; ".join(f"{k}: {v}" for k, v in meta.items())
        paths = {
            "png": atomic_write(self.figures / f"{name}.png", lambda p: fig.savefig(
                p, format="png", dpi=150, bbox_inches="tight", metadata={"Description": text})),
            "pdf": atomic_write(self.figures / f"{name}.pdf", lambda p: fig.savefig(
                p, format="pdf", bbox_inches="tight", metadata={"Subject": text})),
        }
        return paths

    def json(self, payload: dict, name: str) -> Path:
        """Write `payload` with the metadata as `tables/<name>.json`."""
        body = {"metadata": self.metadata(), **payload}
        return atomic_write(self.tables / f"{name}.json",
                            lambda p: p.write_text(json.dumps(body, indent=2, default=str)))
