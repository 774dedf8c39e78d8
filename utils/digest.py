"""Short content digests: of configurations and of tensors (the keys of every cache and saved-set reuse), and the
code digest of every file that can change a number (the stamp of every recorded unit)."""

from __future__ import annotations

import hashlib
import json
import weakref
from functools import lru_cache
from pathlib import Path

import torch

from utils.data import Dataset


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versioned(key: dict) -> dict:
    """`key` with the torch version and the code digest, for cache keys of artefacts whose numbers depend on them:
    a cache file made by other code is never reused, nor recorded as a unit of this code's results."""
    return {**key, "torch": str(torch.__version__), "code": code_digest()}


_DIGESTS: dict[tuple, tuple[list[weakref.ref], str]] = {}


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Short SHA-256 of tensor contents (identifies a training set in cache keys).

    Memoised by tensor identity and version counter, so a dataset is hashed once however often its digest is
    used, and again after an in-place change (a change made around torch, e.g. through `.numpy()`, is not seen)."""
    key = tuple((id(t), t._version) for t in tensors)
    hit = _DIGESTS.get(key)
    if hit is not None and all(ref() is t for ref, t in zip(hit[0], tensors)):
        return hit[1]
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    refs = [weakref.ref(t, lambda _, k=key: _DIGESTS.pop(k, None)) for t in tensors]
    _DIGESTS[key] = (refs, digest.hexdigest()[:16])
    return _DIGESTS[key][1]


def data_digest(data: Dataset) -> str:
    """Digest of a dataset's training images and labels (part of every reuse, checkpoint and cache key)."""
    return tensor_digest(data.x_train, data.y_train)


# What the code digest covers (paths relative to the project root, globs allowed), and the files under them that
# cannot change a number (figures, report, prose, progress bars, the dry run's projection), left out.
CODE_FILES = ("utils/**/*.py", "networks.py", "utility.py", "requirements.txt", "notebooks/[0-9][0-9]_*.ipynb")
NOT_NUMBERS = ("utils/plots.py", "utils/report.py", "utils/safe_html.py", "utils/readme_results.py",
               "utils/interpretation.py", "utils/progress.py", "utils/dry_run.py", "utils/provenance.py")


def _file_text(path: Path) -> str:
    """A file's content as the digest sees it: line endings normalised; of a notebook, only its code cells."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    if path.suffix != ".ipynb":
        return text
    cells = json.loads(text)["cells"]
    return "\n# %% cell\n".join("".join(c["source"]).replace("\r\n", "\n") for c in cells
                                if c["cell_type"] == "code")


@lru_cache(maxsize=1)
def code_hashes() -> dict[str, str]:
    """Short SHA-256 of every file the code digest covers, by path (sorted; the same on every machine)."""
    from utils.paths import PROJECT_ROOT

    paths = {p for pattern in CODE_FILES for p in PROJECT_ROOT.glob(pattern) if p.is_file()}
    relative = sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in paths)
    return {name: hashlib.sha256(_file_text(PROJECT_ROOT / name).encode()).hexdigest()[:16]
            for name in relative if name not in NOT_NUMBERS}


def code_digest(hashes: dict[str, str] | None = None) -> str:
    """One short hash of every file that can change a number (`code_hashes`, or the given per-file hashes)."""
    hashes = code_hashes() if hashes is None else hashes
    return config_hash({"files": hashes})


def changed_files(recorded: dict[str, str], current: dict[str, str] | None = None) -> list[str]:
    """The files whose hashes differ between a recorded `code_hashes` and the checkout's (added and removed too)."""
    current = code_hashes() if current is None else current
    return sorted(name for name in set(recorded) | set(current) if recorded.get(name) != current.get(name))
