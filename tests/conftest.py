"""Shared fixtures: the data root and the three real datasets, loaded once per session.

Dataset arrays come from the project's own cache (default `.cache/`), which makes loads fast. Tests that
write anything cache-like (fake datasets, distillation checkpoints) point `DD_CACHE_DIR` at a temporary
folder themselves with `monkeypatch.setenv`, so they can never overwrite the real cached arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from utils.data import Dataset, load_dataset

# The test machine has two cores shared with other jobs: a second intra-op thread that has to wait for a busy
# core slows small CPU kernels down by 10x or more, so the tests run single-threaded unless told otherwise.
_DEFAULT_THREADS = torch.get_num_threads()
torch.set_num_threads(int(os.environ.get("DD_TEST_THREADS", "1")))
# Compiling a network costs seconds to minutes per shape; the tests (and the notebooks they execute) run eagerly
# unless told otherwise. `tests/test_compiled.py` switches compilation on where it checks it.
os.environ.setdefault("DD_COMPILE", "0")


@pytest.fixture
def default_threads():
    """Torch's own thread count for the duration of a test (for timings of the library as users run it)."""
    capped = torch.get_num_threads()
    torch.set_num_threads(_DEFAULT_THREADS)
    yield _DEFAULT_THREADS
    torch.set_num_threads(capped)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("DD_DATA_ROOT")
    if not root:
        pytest.fail("DD_DATA_ROOT is not set: point it at the datasets folder "
                    "(e.g. DD_DATA_ROOT=/work/shared/datasets); CI always sets it.", pytrace=False)
    path = Path(root).expanduser()
    if not path.is_dir():
        pytest.fail(f"DD_DATA_ROOT={root!r} is not a directory.", pytrace=False)
    return path


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> Dataset:
    return load_dataset("MNIST", data_root)


@pytest.fixture(scope="session")
def cifar10(data_root: Path) -> Dataset:
    return load_dataset("CIFAR10", data_root)


@pytest.fixture(scope="session")
def mhist(data_root: Path) -> Dataset:
    return load_dataset("MHIST", data_root)


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty DD_CACHE_DIR for tests that write caches or checkpoints."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DD_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private DD_CACHE_DIR shared by one test module, so its data arrays are prepared once."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv("DD_CACHE_DIR", str(path))
        yield path


@pytest.fixture(autouse=True)
def _restore_torch_rng():
    """Keep tests independent of each other's use of the global torch RNG."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


@pytest.fixture(autouse=True)
def _close_ledger():
    """A notebook started in one test must not record or reuse units in the next one (`utils.ledger`)."""
    yield
    from utils.ledger import open_ledger

    open_ledger(None)
