"""Project paths, all derived from one root, the rule that smoke runs never write to `results/`, and the
reading and writing of cache files (optional: one that cannot be read or written is a warning, not an error)."""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "results"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

T = TypeVar("T")


class CacheWarning(UserWarning):
    """A cache file could not be read (it is moved aside and recomputed) or written (the run goes on)."""


class CacheFormatError(ValueError):
    """A cache file was read but does not hold the structure its reader expects (an unreadable cache file)."""


def require(value: object, fields: dict[str, type | tuple[type, ...]]) -> dict:
    """`value` if it is a dict holding every key of `fields` with a value of that type, else a `CacheFormatError`
    saying what was found (a reader raises it so that a file of an older layout counts as unreadable)."""
    if not isinstance(value, dict):
        raise CacheFormatError(f"it holds a {type(value).__name__}; expected a dict with keys {sorted(fields)}")
    missing = sorted(set(fields) - set(value))
    if missing:
        raise CacheFormatError(f"it lacks the keys {missing} (it has {sorted(map(str, value))})")
    for key, kind in fields.items():
        if not isinstance(value[key], kind):
            names = [t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,))]
            raise CacheFormatError(f"its {key!r} is a {type(value[key]).__name__}; expected {' or '.join(names)}")
    return value


def load_error(err: Exception) -> str:
    """Why a file could not be loaded, in our words where torch's would advise unpickling an untrusted file."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = next((line.strip().split(" Please use")[0] for line in text.splitlines()
                      if "WeightsUnpickler error:" in line), "")
        return (f"it holds Python objects other than tensors and plain values, which are never unpickled here "
                f"because unpickling them could run code ({found.removeprefix('WeightsUnpickler error: ')})")
    return f"{type(err).__name__}: {err}"


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


def read_cache(path: Path, read: Callable[[Path], T]) -> T | None:
    """`read(path)`, or None if the file is missing. A file that cannot be read (truncated, corrupt, a pickle
    that `torch.load(weights_only=True)` refuses, or one whose structure `read` rejects, e.g. with `require`) is
    named in a `CacheWarning` and moved aside to `<name>.corrupt`, and None is returned so that the caller
    recomputes it."""
    if not path.exists():
        return None
    try:
        return read(path)
    except MemoryError:
        raise
    except Exception as err:  # whatever a damaged file raises (EOFError, RuntimeError, JSONDecodeError, ...)
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
            where = f"moved it to {aside}"
        except OSError as move_error:
            where = f"could not move it aside ({move_error})"
        warnings.warn(f"cache file {path} cannot be read ({load_error(err)}); {where} and recomputing it",
                      CacheWarning, stacklevel=2)
        return None


def write_cache(path: Path, write: Callable[[Path], None]) -> bool:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place; returns whether it worked.

    A failed write (disk full, read-only folder) removes the temporary file and is a `CacheWarning`, not an
    error. Temporary files of killed processes are removed the next time the same file is written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            pid = stale.name[len(path.name) + 2:-len(".tmp")]
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                stale.unlink(missing_ok=True)
        write(tmp)
        os.replace(tmp, path)
        return True
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        warnings.warn(f"could not write cache file {path} ({type(err).__name__}: {err}); continuing without it",
                      CacheWarning, stacklevel=2)
        return False
    finally:
        tmp.unlink(missing_ok=True)
