"""Dataset loading: shapes, labels, normalisation, caching, error messages and fake-root layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from utils.data import CLASS_NAMES, DatasetNotFoundError, load_dataset

MNIST_TRAIN_PER_CLASS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_PER_CLASS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _counts(y: torch.Tensor, n: int) -> list[int]:
    return torch.bincount(y, minlength=n).tolist()


def _check_normalised(data, tol: float = 1e-3) -> None:
    x = data.x_train
    assert x.mean(dim=(0, 2, 3)).abs().max().item() < tol
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max().item() < tol
    # the test split uses the *training* statistics: close to, but not exactly, zero mean
    assert data.x_test.mean(dim=(0, 2, 3)).abs().max().item() < 0.1


# ----------------------------------------------------------------------------------------------------- MNIST


def test_mnist_shapes_dtypes_counts(mnist):
    assert mnist.name == "MNIST"
    assert mnist.x_train.shape == (60000, 1, 28, 28)
    assert mnist.x_test.shape == (10000, 1, 28, 28)
    assert mnist.x_train.dtype == mnist.x_test.dtype == torch.float32
    assert mnist.y_train.dtype == mnist.y_test.dtype == torch.int64
    assert (mnist.channels, mnist.im_size, mnist.num_classes) == (1, (28, 28), 10)
    assert mnist.classes == CLASS_NAMES["MNIST"]
    assert _counts(mnist.y_train, 10) == MNIST_TRAIN_PER_CLASS
    assert _counts(mnist.y_test, 10) == MNIST_TEST_PER_CLASS
    assert [len(i) for i in mnist.class_indices()] == MNIST_TRAIN_PER_CLASS


def test_mnist_normalisation(mnist):
    _check_normalised(mnist)
    assert mnist.mean == pytest.approx([0.1307], abs=1e-4)
    assert mnist.std == pytest.approx([0.3081], abs=1e-4)
    # black pixels map to -mean/std, white to (1 - mean)/std
    assert mnist.x_train.min().item() == pytest.approx(-mnist.mean[0] / mnist.std[0], abs=1e-4)
    assert mnist.x_train.max().item() == pytest.approx((1 - mnist.mean[0]) / mnist.std[0], abs=1e-4)
    pixels = mnist.denormalise(mnist.x_test[:8])
    assert pixels.min() >= 0 and pixels.max() <= 1


# --------------------------------------------------------------------------------------------------- CIFAR10


def test_cifar10_shapes_dtypes_counts(cifar10):
    assert cifar10.x_train.shape == (50000, 3, 32, 32)
    assert cifar10.x_test.shape == (10000, 3, 32, 32)
    assert cifar10.x_train.dtype == torch.float32 and cifar10.y_train.dtype == torch.int64
    assert cifar10.classes[0] == "airplane" and cifar10.classes[-1] == "truck" and cifar10.num_classes == 10
    assert _counts(cifar10.y_train, 10) == [5000] * 10
    assert _counts(cifar10.y_test, 10) == [1000] * 10


def test_cifar10_normalisation_and_raw_mean(cifar10):
    # the official constants normalise with std 0.2023 etc., not the measured pixel std (0.247, 0.243, 0.262)
    pixels = cifar10.denormalise(cifar10.x_train)
    assert pixels.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-4)
    assert pixels.std(dim=(0, 2, 3)).tolist() == pytest.approx([0.2470, 0.2435, 0.2616], abs=1e-3)
    assert cifar10.x_train.std(dim=(0, 2, 3)).tolist() == pytest.approx([0.2470 / 0.2023, 0.2435 / 0.1994,
                                                                          0.2616 / 0.2010], abs=2e-3)
    # denormalising recovers 8-bit pixel values
    pixels = pixels[:4] * 255
    assert (pixels - pixels.round()).abs().max().item() < 1e-3


# ----------------------------------------------------------------------------------------------------- MHIST


def test_mhist_shapes_counts(mhist):
    assert mhist.classes == ["HP", "SSA"]
    assert mhist.x_train.shape == (2175, 3, 64, 64)
    assert mhist.x_test.shape == (977, 3, 64, 64)
    assert mhist.y_train.dtype == torch.int64
    assert _counts(mhist.y_train, 2) == [1545, 630]
    assert _counts(mhist.y_test, 2) == [617, 360]
    _check_normalised(mhist)


# ----------------------------------------------------------------------------------------------- caching


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10", "MHIST"])
def test_second_load_reads_only_the_cache(name, data_root, request, monkeypatch):
    """A warm load neither parses nor re-hashes the source files (its time: benchmarks/data_loading.py)."""
    import utils.data as data_module

    first = request.getfixturevalue(name.lower())  # makes sure the cache is warm

    def forbidden(*args, **kwargs):
        raise AssertionError("a warm load must not read the source files again")

    for reader in ("_mnist_raw", "_cifar10_raw", "_mhist_raw"):
        monkeypatch.setattr(data_module, reader, forbidden)
    monkeypatch.setattr(data_module, "open", forbidden, raising=False)   # hashing a source file opens it
    again = load_dataset(name, data_root)
    assert torch.equal(again.y_train, first.y_train)
    assert torch.equal(again.x_test[:16], first.x_test[:16])
    assert again.mean == first.mean


# -------------------------------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_dataset("ImageNet")
    for name in ("MNIST", "CIFAR10", "MHIST"):
        assert name in str(err.value)


def test_im_size_only_for_mhist(data_root):
    with pytest.raises(ValueError, match="MHIST"):
        load_dataset("CIFAR10", data_root, im_size=16)


def test_missing_mhist_names_root_and_annotations(tmp_path, tmp_cache):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("MHIST", empty)
    message = str(err.value)
    assert str(empty.resolve()) in message
    assert "annotations.csv" in message
    assert isinstance(err.value, FileNotFoundError)


# ----------------------------------------------------------------------------------------- fake data roots


def test_fake_cifar10_npz(tmp_path, tmp_cache):
    rng = np.random.default_rng(0)
    root = tmp_path / "root"
    root.mkdir()
    base = np.array([10, 100, 200], dtype=np.int64)  # distinct per channel, in HWC order

    def images(n):
        noise = rng.integers(0, 40, size=(n, 32, 32, 3))
        return (base + noise).astype(np.uint8)

    x_train, x_test = images(20), images(10)
    y_train = np.repeat(np.arange(10), 2).astype(np.uint8)
    y_test = np.arange(10).astype(np.uint8)
    np.savez(root / "cifar10.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    data = load_dataset("CIFAR10", root)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (10, 3, 32, 32)
    assert data.y_train.dtype == torch.int64
    assert data.y_train.tolist() == y_train.tolist() and data.y_test.tolist() == y_test.tolist()
    # HWC -> CHW: channel c carries the c-th base value
    expected_mean = x_train.reshape(-1, 3).mean(0) / 255
    assert data.denormalise(data.x_train).mean(dim=(0, 2, 3)).tolist() == pytest.approx(expected_mean.tolist(),
                                                                                         abs=1e-5)
    pixels = (data.denormalise(data.x_train) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(pixels, x_train.transpose(0, 3, 1, 2))
    assert (tmp_cache / "data").is_dir(), "the fake root must be cached in the private cache"


def _write_mhist(root: Path, size: int, rows: list[tuple[str, str, str]]) -> None:
    """MHIST layout: mhist/annotations.csv + mhist/images/<name>.png; image k is a flat colour encoding k."""
    folder = root / "mhist" / "images"
    folder.mkdir(parents=True)
    records = []
    for k, (name, label, partition) in enumerate(rows):
        colour = (10 * k + 5, 200 - 10 * k, 100)
        image = Image.new("RGB", (size, size), colour)
        if k == 0:
            image = image.convert("L")  # a grayscale file must still load as RGB
        image.save(folder / name)
        records.append({"Image Name": name, "Majority Vote Label": label,
                        "Number of Annotators who Selected SSA (Out of 7)": 5 if label == "SSA" else 1,
                        "Partition": partition})
    pd.DataFrame(records).to_csv(root / "mhist" / "annotations.csv", index=False)


def test_fake_mhist_any_size_is_resized(tmp_path, tmp_cache):
    rows = [("MHIST_aaa.png", "HP", "train"), ("MHIST_aab.png", "SSA", "test"), ("MHIST_aac.png", "SSA", "train"),
            ("MHIST_aad.png", "HP", "train"), ("MHIST_aae.png", "HP", "test"), ("MHIST_aaf.png", "HP", "train"),
            ("MHIST_aag.png", "SSA", "train"), ("MHIST_aah.png", "HP", "test")]
    root = tmp_path / "root"
    _write_mhist(root, 40, rows)

    data = load_dataset("MHIST", root, im_size=32)
    train = [(k, r) for k, r in enumerate(rows) if r[2] == "train"]
    test = [(k, r) for k, r in enumerate(rows) if r[2] == "test"]
    assert data.x_train.shape == (len(train), 3, 32, 32)
    assert data.x_test.shape == (len(test), 3, 32, 32)
    assert data.im_size == (32, 32)
    assert data.y_train.tolist() == [int(r[1] == "SSA") for _, r in train]
    assert data.y_test.tolist() == [int(r[1] == "SSA") for _, r in test]
    assert _counts(data.y_train, 2) == [3, 2] and _counts(data.y_test, 2) == [2, 1]

    # each row got its own image, in annotation order (flat colours survive bicubic resizing)
    for split, items in (("train", train), ("test", test)):
        pixels = data.denormalise(getattr(data, f"x_{split}")) * 255
        for row, (k, _) in enumerate(items):
            if k == 0:
                continue  # the grayscale one has its own colour
            colour = torch.tensor([10 * k + 5, 200 - 10 * k, 100], dtype=torch.float32).view(3, 1, 1)
            assert (pixels[row] - colour).abs().max().item() < 1.0

    smaller = load_dataset("MHIST", root, im_size=24)
    assert smaller.x_train.shape == (len(train), 3, 24, 24)
    again = load_dataset("MHIST", root, im_size=32)
    assert torch.equal(again.x_train, data.x_train)


def test_normalisation_uses_the_official_constants(mnist, cifar10):
    """The DC/DSA/DM/MTT code normalises with fixed constants, not measured stds (0.247, 0.243, 0.262)."""
    assert cifar10.mean == pytest.approx([0.4914, 0.4822, 0.4465]) and cifar10.std == pytest.approx(
        [0.2023, 0.1994, 0.2010])
    assert mnist.mean == pytest.approx([0.1307]) and mnist.std == pytest.approx([0.3081])
