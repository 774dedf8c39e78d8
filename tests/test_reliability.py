"""Reliability: crafted pickles never run, bad data is refused by name before caching, caches are keyed on content
and heal, and saved sets are found only for the right profile (issue 13; issue 14 points 6 and 9)."""

from __future__ import annotations

import dataclasses
import errno
import os
import pickle
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.fakes import Counter, fake_dataset
from utility import RunContext, SyntheticEvaluation
from utils import digest
from utils.comparison import gather, unevaluated_sets
from utils.data import DatasetFormatError, DatasetNotFoundError, load_dataset
from utils.digest import data_digest, tensor_digest
from utils.distill import DistillTask, GradientMatchingConfig, distill, find_synthetic, load_synthetic
from utils.distill.base import PeakMemory, checkpoint_path, distill_or_load, run_distillation
from utils.distill.experts import ExpertConfig, expert_dir, load_or_train_experts
from utils.paths import CacheWarning
from utils.results import ResultWriter
from utils.study import evaluate_cached
from utils.synthetic import SyntheticSet, UnreadableSetError, synthetic_path
from utils.zca import zca_whiten

CPU = torch.device("cpu")


class Payload:
    """Pickles as a call to `open(marker, 'w')`: if a loader ever unpickles it, the marker file appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def crafted(path: Path, marker: Path) -> Path:
    """A torch file whose unpickling would run code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": Payload(marker), "key": Payload(marker)}, path)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@dataclass
class EvaluationSettings:
    epochs: int = 1
    architecture: str = "ConvNet"


def tiny() -> SimpleNamespace:
    return SimpleNamespace(name="CIFAR10", mean=[0.0] * 3, std=[1.0] * 3)


def small_set(profile: str = "cpu", dataset: str = "CIFAR10") -> SyntheticSet:
    return SyntheticSet(torch.zeros(2, 3, 4, 4), torch.arange(2), dataset, [0.0] * 3, [1.0] * 3,
                        config={"profile": profile})


# ------------------------------------------------------------------------------------------- fake data roots


def write_cifar_npz(root: Path, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), "y_train": np.repeat(np.arange(10), 2),
              "x_test": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(10)}
    arrays.update(override)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "cifar10.npz", **{k: v for k, v in arrays.items() if v is not None})
    return root / "cifar10.npz"


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX (MNIST) file of unsigned bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, train_labels: np.ndarray) -> Path:
    raw = root / "MNIST" / "raw"
    rng = np.random.default_rng(1)
    write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(5))
    return raw / "train-labels-idx1-ubyte"


def write_mhist(root: Path, labels: list[str] | None = None, csv_text: str | None = None) -> Path:
    folder = root / "mhist"
    (folder / "images").mkdir(parents=True)
    labels = labels or ["HP", "SSA", "HP", "SSA"]
    partitions = ["train", "train", "test", "test"]
    for k in range(len(labels)):
        Image.new("RGB", (8, 8), (10 * k, 50, 90)).save(folder / "images" / f"im{k}.png")
    csv = folder / "annotations.csv"
    if csv_text is not None:
        csv.write_text(csv_text)
    else:
        pd.DataFrame({"Image Name": [f"im{k}.png" for k in range(len(labels))], "Majority Vote Label": labels,
                      "Partition": partitions}).to_csv(csv, index=False)
    return csv


def snapshot(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------------ 1. crafted pickles


def test_a_crafted_pickle_is_refused_by_every_loader_and_nothing_runs(tmp_path, tmp_cache):
    marker = tmp_path / "code-ran"
    # a saved set in results/: refused with an error naming the file
    with pytest.raises(UnreadableSetError, match="gm_CIFAR10_ipc1_real.pt"):
        SyntheticSet.load(crafted(tmp_path / "results" / "synthetic" / "gm_CIFAR10_ipc1_real.pt", marker))
    # a saved set being reused: warned about, moved aside, rebuilt
    path = crafted(tmp_path / "results" / "synthetic" / "dm_CIFAR10_ipc1_real.pt", marker)
    with pytest.warns(CacheWarning, match="dm_CIFAR10_ipc1_real.pt"):
        _, reused = distill_or_load(path, small_set, {"profile": "cpu"})
    assert not reused
    # a distillation checkpoint
    config = {"run": "crafted"}
    crafted(checkpoint_path(config), marker)
    with pytest.warns(CacheWarning, match="checkpoints"):
        result = run_distillation(Counter(), iterations=2, config=config, data=tiny(), checkpoint_every=1,
                                  device=CPU, desc="t")
    assert result.config["losses"] == [1.0, 2.0]
    # the data cache
    root = tmp_path / "root"
    write_cifar_npz(root)
    load_dataset("CIFAR10", root)
    crafted(tmp_cache / "data" / "CIFAR10_64.pt", marker)
    with pytest.warns(CacheWarning, match="CIFAR10_64.pt"):
        assert load_dataset("CIFAR10", root).x_train.shape == (20, 3, 32, 32)
    # torchvision's CIFAR-10 python batches
    batches = tmp_path / "pyroot" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    with pytest.raises(DatasetFormatError, match="data_batch_1"):
        load_dataset("CIFAR10", tmp_path / "pyroot")
    # the ZCA and expert caches
    small = fake_dataset("CIFAR10", 2, (3, 4, 4), per_class=2)
    zca_whiten(small)
    [zca] = (tmp_cache / "zca").iterdir()
    crafted(zca, marker)
    with pytest.warns(CacheWarning, match=zca.name):  # other test images: not whitened in memory before
        zca_whiten(dataclasses.replace(small, x_test=small.x_test + 1))
    data = fake_dataset("CIFAR10", 2, (3, 32, 32), per_class=2)
    expert = ExpertConfig(num_experts=1, epochs=1, dsa=False, architecture="ConvNetD1W32")
    crafted(expert_dir(data, expert, RunContext(0, CPU, "fp32")) / "expert_0.pt", marker)
    with pytest.warns(CacheWarning, match="expert_0.pt"):
        assert len(load_or_train_experts(data, expert, RunContext(0, CPU, "fp32"))[0]) == 2
    assert not marker.exists(), "a crafted pickle ran code"


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_python_batches_load_through_the_array_only_unpickler(protocol, tmp_path, tmp_cache):
    batches = tmp_path / "root" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        entry = {"batch_label": name, "labels": list(range(10)), "filenames": [name] * 10,
                 "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}
        (batches / name).write_bytes(pickle.dumps(entry, protocol=protocol))
    data = load_dataset("CIFAR10", tmp_path / "root")
    assert data.x_train.shape == (50, 3, 32, 32) and data.y_test.tolist() == list(range(10))


# ------------------------------------------------------------------------- 3, 4. bad data refused, by name


def _arrays(n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
            "y_train": np.repeat(np.arange(10), n_train // 10), "x_test": rng.integers(0, 256, (n_test, 32, 32, 3),
                                                                                        dtype=np.uint8),
            "y_test": np.arange(n_test) % 10}


BAD_CIFAR = {
    "float images": (dict(x_train=_arrays()["x_train"] / 255.0), ["x_train", "float64", "uint8"]),
    "negative label": (dict(y_train=np.r_[np.repeat(np.arange(10), 2)[:-1], -1]), ["y_train", "-1", "0-9"]),
    "labels 10 and 12": (dict(y_test=np.r_[np.arange(8), 10, 12]), ["y_test", "10, 12", "0-9"]),
    "channels first": (dict(x_train=_arrays()["x_train"].transpose(0, 3, 1, 2)), ["x_train", "(20, 3, 32, 32)",
                                                                                  "32 x 32 x 3"]),
    "length mismatch": (dict(y_train=np.arange(10)), ["y_train", "10 labels for 20 images"]),
    "missing y_test": (dict(y_test=None), ["y_test"]),
    "missing class": (dict(y_train=np.repeat(np.arange(10), 2) % 9), ["y_train", "every class"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CIFAR))
def test_bad_cifar10_npz_is_refused_by_file_and_field_before_caching(case, tmp_path, tmp_cache):
    override, expected = BAD_CIFAR[case]
    npz = write_cifar_npz(tmp_path / "root", **override)
    with pytest.raises(DatasetFormatError) as err:
        load_dataset("CIFAR10", tmp_path / "root")
    for text in [str(npz), *expected]:
        assert text in str(err.value), (case, str(err.value))
    assert not (tmp_cache / "data" / "CIFAR10_64.pt").exists()


def test_truncated_npz_is_named(tmp_path, tmp_cache):
    npz = write_cifar_npz(tmp_path / "root")
    truncate(npz)
    with pytest.raises(DatasetFormatError, match=str(npz)):
        load_dataset("CIFAR10", tmp_path / "root")
    assert not (tmp_cache / "data" / "CIFAR10_64.pt").exists()


BAD_MHIST = {
    "unknown label": (dict(labels=["HP", "SSA", "XYZ", "SSA"]), ["Majority Vote Label", "XYZ", "HP"]),
    "lowercase label": (dict(labels=["hp", "SSA", "HP", "SSA"]), ["Majority Vote Label", "hp", "exact case"]),
    "empty csv": (dict(csv_text=""), ["cannot be read as CSV"]),
    "header only": (dict(csv_text="Image Name,Majority Vote Label,Partition\n"), ["no 'train' rows"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MHIST))
def test_bad_mhist_annotations_are_refused_before_caching(case, tmp_path, tmp_cache):
    kwargs, expected = BAD_MHIST[case]
    csv = write_mhist(tmp_path / "root", **kwargs)
    with pytest.raises(DatasetFormatError) as err:
        load_dataset("MHIST", tmp_path / "root", im_size=8)
    for text in [str(csv), *expected]:
        assert text in str(err.value), (case, str(err.value))
    assert not (tmp_cache / "data" / "MHIST_8.pt").exists()


# ----------------------------------------------------------------- 5. data cache keyed by content; read-only root


def test_data_cache_follows_file_content_and_never_writes_to_the_data_root(tmp_path, tmp_cache):
    root = tmp_path / "root"
    labels = write_mnist(root, np.arange(10))
    before = snapshot(root)
    assert load_dataset("MNIST", root).y_train.tolist() == list(range(10))
    assert snapshot(root) == before, "loading wrote to the data root"
    stat = labels.stat()
    with open(labels, "r+b") as handle:  # same size, in place, labels reversed
        handle.seek(8)
        handle.write(bytes(range(9, -1, -1)))
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_dataset("MNIST", root).y_train.tolist() == list(range(9, -1, -1))


def test_failed_download_leaves_the_data_root_untouched(tmp_path, tmp_cache, monkeypatch):
    import torchvision.datasets.mnist as tv_mnist

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError, match=str(root.resolve())):
        load_dataset("MNIST", root)
    assert list(root.iterdir()) == []


# -------------------------------------------------------- 6. data digest, profile and device class in every key


def test_reuse_keys_include_the_data_digest_and_device_class(tmp_path, tmp_cache):
    config = GradientMatchingConfig(iterations=1, real_batch=4, loops=((1, 1, 1),), architecture="ConvNetD1W32")
    kwargs = dict(results_dir=tmp_path, profile="smoke", context=RunContext(0, CPU, "fp32"))
    task = DistillTask("CIFAR10", 1, "noise")
    real = fake_dataset("CIFAR10", 3, (3, 32, 32), per_class=4, seed=0)
    first, _ = distill("gm", real, task, config, **kwargs)
    assert first.config["data"] == data_digest(real) and first.config["device_class"] == "cpu"
    assert distill("gm", real, task, config, **kwargs)[1]
    black = fake_dataset("CIFAR10", 3, (3, 32, 32), per_class=4, seed=0)
    black.x_train = torch.zeros_like(black.x_train)
    assert not distill("gm", black, task, config, **kwargs)[1], "a set distilled from other data was reused"
    path = synthetic_path(tmp_path, "gm", "CIFAR10", 1, "noise")
    saved = SyntheticSet.load(path)
    saved.config["device_class"] = "cuda"
    saved.save(path)
    assert not distill("gm", black, task, config, **kwargs)[1], "a set distilled on a GPU was reused on a CPU"


def test_data_digest_is_computed_once_per_dataset(monkeypatch):
    data = fake_dataset("CIFAR10", 2, (3, 8, 8), per_class=3)
    calls = []
    real_sha = digest.hashlib.sha256
    monkeypatch.setattr(digest.hashlib, "sha256", lambda *a: calls.append(1) or real_sha(*a))
    first = data_digest(data)
    assert data_digest(data) == first and tensor_digest(data.x_train, data.y_train) == first
    assert len(calls) == 1
    data.x_train[0] += 1  # an in-place change is seen
    assert data_digest(data) != first and len(calls) == 2


def test_find_synthetic_filters_by_the_profile_recorded_in_the_set(tmp_path):
    small_set("cpu").save(synthetic_path(tmp_path, "dm", "CIFAR10", 1, "real"))
    small_set("paper").save(synthetic_path(tmp_path, "gm", "CIFAR10", 1, "real"))
    assert [p.name for p in find_synthetic(tmp_path, profile="paper")] == ["gm_CIFAR10_ipc1_real.pt"]
    assert len(find_synthetic(tmp_path)) == 2


def test_comparison_gathers_only_tables_of_its_profile(tmp_path):
    row = {"method": "Distribution matching", "dataset": "CIFAR10", "ipc": 10, "init": "real",
           "accuracy with DSA (%)": "30.00 ± 0.10"}
    for notebook, profile in (("02_gradient_matching", "paper"), ("07_distribution_matching", "cpu")):
        writer = ResultWriter(tmp_path, notebook=notebook, profile=profile, seed=0, device="cpu")
        writer.table(pd.DataFrame([{**row, "method": f"{row['method']} {profile}"}]), notebook)
    with pytest.warns(UserWarning, match="07_distribution_matching.csv"):
        table = gather(tmp_path, profile="paper")
    assert table["method"].tolist() == ["Distribution matching paper"] and set(table["profile"]) == {"paper"}


# ------------------------------------------------------------------------ 7. unreadable files heal or are named


def test_truncated_checkpoint_is_moved_aside_and_the_run_restarts(tmp_cache):
    config = {"run": "truncated"}
    checkpoint = checkpoint_path(config)
    checkpoint.parent.mkdir(parents=True)
    torch.save({"distiller": {"x": torch.ones(1, 1, 2, 2)}, "losses": [1.0], "iteration": 1, "seconds": 0.0},
               checkpoint)
    truncate(checkpoint)
    with pytest.warns(CacheWarning, match=str(checkpoint)):
        result = run_distillation(Counter(), iterations=3, config=config, data=tiny(), checkpoint_every=1,
                                  device=CPU, desc="t")
    assert result.config["losses"] == [1.0, 2.0, 3.0]
    assert checkpoint.with_name(checkpoint.name + ".corrupt").is_file()


def test_truncated_saved_set_is_rebuilt_when_reused_and_named_when_read(tmp_path):
    path = synthetic_path(tmp_path, "mtt", "CIFAR10", 1, "real")
    small_set().save(path)
    truncate(path)
    with pytest.raises(UnreadableSetError) as err:
        load_synthetic(path)
    for text in (str(path), "python -m utils.pipeline", "--only 06"):
        assert text in str(err.value)
    with pytest.warns(CacheWarning, match=str(path)):
        _, reused = distill_or_load(path, small_set, {"profile": "cpu"})
    assert not reused and SyntheticSet.load(path).config["profile"] == "cpu"


def test_truncated_data_cache_is_recomputed(tmp_path, tmp_cache):
    write_cifar_npz(tmp_path / "root")
    first = load_dataset("CIFAR10", tmp_path / "root")
    cache = tmp_cache / "data" / "CIFAR10_64.pt"
    truncate(cache)
    with pytest.warns(CacheWarning, match=str(cache)):
        again = load_dataset("CIFAR10", tmp_path / "root")
    assert torch.equal(again.x_train, first.x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("CIFAR10", tmp_path / "root")  # healed: read from the rewritten cache without a warning


def test_truncated_evaluation_cache_is_recomputed(tmp_cache):
    data = fake_dataset("CIFAR10", 2, (3, 8, 8), per_class=2)
    calls = []

    def evaluate(*args, **kwargs):
        calls.append(1)
        return SyntheticEvaluation("ConvNet", [{"accuracy": 0.5}], [0.1])

    run = SimpleNamespace(seed=0, precision="fp32", device=CPU, evaluate=evaluate,
                          profile=SimpleNamespace(name="smoke", evaluation=EvaluationSettings()))
    evaluate_cached(run, data.x_train, data.y_train, data, dsa=False)
    [path] = (tmp_cache / "evaluations").glob("*.json")
    truncate(path)
    with pytest.warns(CacheWarning, match=str(path)):
        result = evaluate_cached(run, data.x_train, data.y_train, data, dsa=False)
    assert result.mean() == 0.5 and len(calls) == 2
    evaluate_cached(run, data.x_train, data.y_train, data, dsa=False)
    assert len(calls) == 2


# ------------------------------------------------------------------------------ 8. a failed cache write is a warning


def test_failed_data_cache_write_warns_cleans_up_and_goes_on(tmp_path, tmp_cache, monkeypatch):
    write_cifar_npz(tmp_path / "root")
    (tmp_cache / "data").mkdir(parents=True)
    stale = tmp_cache / "data" / ".CIFAR10_64.pt.999999999.tmp"  # left by a killed process
    stale.write_bytes(b"partial")
    real_save = torch.save

    def disk_full(obj, path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.warns(CacheWarning, match="No space left"):
        data = load_dataset("CIFAR10", tmp_path / "root")
    assert data.x_train.shape == (20, 3, 32, 32)
    assert not list((tmp_cache / "data").glob("*.pt")) and not list((tmp_cache / "data").glob(".*tmp"))


# --------------------------------------------------------------------------- 11. stray files in results/synthetic


def test_stray_file_in_synthetic_folder_is_skipped_with_a_warning(tmp_path):
    good = synthetic_path(tmp_path, "gm", "MNIST", 1, "real")
    small_set(dataset="MNIST").save(good)
    (tmp_path / "synthetic" / "old_MNIST_ipc1_real.pt").write_bytes(b"x")
    with pytest.warns(UserWarning, match="old_MNIST_ipc1_real.pt"):
        assert find_synthetic(tmp_path) == [good]
    table = pd.DataFrame({"method": [], "dataset": [], "ipc": [], "init": []})
    with pytest.warns(UserWarning, match="old_MNIST_ipc1_real.pt"):
        assert unevaluated_sets(tmp_path, table) == [good.name]


# ----------------------------------------------------------------------------- 13. repeatable peak memory


def test_peak_memory_is_repeatable_for_identical_blocks():
    pins = []

    def block():
        chunks = [torch.ones(16 * 1024) for _ in range(1536)]  # 96 MiB in 64 KiB pieces from the C heap
        pins.append(torch.ones(16 * 1024))  # allocated after them: the freed pieces are not at the heap's top
        return len(chunks)

    peaks = []
    for _ in range(4):
        with PeakMemory(CPU) as memory:
            block()
        peaks.append(memory.peak_mib)
    assert all(peak > 80 for peak in peaks), peaks  # the first may add some one-off set-up on top
    assert max(peaks[1:]) - min(peaks[1:]) < 4, peaks


# ---------------------------------------------------------------------------------- 14. ipc types are checked


@pytest.mark.parametrize("ipc", [1.5, "2", True, None])
def test_ipc_of_the_wrong_type_is_refused_clearly(ipc):
    with pytest.raises(TypeError, match="ipc must be a positive integer"):
        DistillTask("CIFAR10", ipc, "real")


def test_ipc_range_and_integer_types():
    with pytest.raises(ValueError, match="ipc must be a positive integer"):
        DistillTask("CIFAR10", 0, "real")
    task = DistillTask("CIFAR10", np.int64(2), "real")
    assert task.ipc == 2 and type(task.ipc) is int

