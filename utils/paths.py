"""Project paths, all derived from one root, and the rule that smoke runs never write to `results/`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "results"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def cache_dir() -> Path:
    """Gitignored folder for prepared arrays, baselines, expert buffers and checkpoints (env `DD_CACHE_DIR`)."""
    path = Path(os.environ.get("DD_CACHE_DIR") or PROJECT_ROOT / ".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Data root: the argument, else env `DD_DATA_ROOT`, else `./data`."""
    return Path(root or os.environ.get("DD_DATA_ROOT") or "./data").expanduser()


def results_dir(profile: str, path: str | os.PathLike | None = None) -> Path:
    """Where a notebook writes: `path`, else `results/`; a smoke run is redirected to a temporary folder."""
    chosen = Path(path).resolve() if path else RESULTS_DIR
    if profile == "smoke" and chosen == RESULTS_DIR.resolve():
        chosen = Path(tempfile.mkdtemp(prefix="dd-smoke-results-"))
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen
