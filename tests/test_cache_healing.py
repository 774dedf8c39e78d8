"""Caches that load but are wrong heal, saved sets with bad images are refused by name, cache keys carry the torch
version, a refused pickle gets our own advice, and MHIST reads only inside its images folder (issue 24, points 4,
5, 6 and 11)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from PIL import Image

from tests.fakes import fake_dataset
from tests.test_reliability import EvaluationSettings, crafted, write_cifar_npz, write_mhist
from utility import RunContext, SyntheticEvaluation, set_seed
from utils import digest, paths
from utils.data import DatasetFormatError, load_dataset
from utils.distill import DistillTask, GradientMatchingConfig, distill
from utils.distill.base import checkpoint_path, run_distillation
from utils.distill.experts import ExpertConfig, expert_dir, load_or_train_experts
from utils.distill.gradient_matching import GradientMatching
from utils.full_training import FullTrainingConfig, full_training_path, read_full_training
from utils.paths import CacheWarning
from utils.study import evaluate_cached
from utils.synthetic import SyntheticSet, UnreadableSetError, synthetic_path

CPU = torch.device("cpu")
FP32 = RunContext(0, CPU, "fp32")
GM = GradientMatchingConfig(iterations=3, real_batch=4, loops=((1, 1, 1),), architecture="ConvNetD1W32",
                            checkpoint_every=1)
TASK = DistillTask("CIFAR10", 1, "noise")


@pytest.fixture(scope="module")
def data():
    return fake_dataset("CIFAR10", 2, (3, 32, 32), per_class=4)


def _gm_run(data, config: dict):
    set_seed(0)
    distiller = GradientMatching(data, TASK, GM, FP32)
    return run_distillation(distiller, iterations=GM.iterations, config=config, data=data, checkpoint_every=1,
                            device=CPU, desc="t")


def _stepped_state(data) -> dict:
    """A real distiller's state after one iteration, as a checkpoint holds it."""
    distiller = GradientMatching(data, TASK, GM, FP32.with_seed(1))
    distiller.step()
    return distiller.state_dict()


def _old_layouts(data) -> dict[str, object]:
    valid = {"losses": [1.0], "iteration": 1, "seconds": 0.5, "snapshots": {}}
    state = _stepped_state(data)
    return {
        "a list": [state],
        "no distiller": valid,
        "distiller without images": {**valid, "distiller": {k: v for k, v in state.items() if k != "images"}},
        # restoring gets as far as the images before failing: the distiller must be left as it was
        "distiller without optimizer": {**valid, "distiller": {k: v for k, v in state.items() if k != "optimizer"}},
        "NaN images": {**valid, "distiller": {**state, "images": torch.full_like(state["images"], float("nan"))}},
        "iteration past the end": {**valid, "iteration": 9, "losses": [1.0] * 9, "distiller": state},
    }


def test_a_checkpoint_of_another_layout_is_set_aside_and_the_run_starts_afresh(data, tmp_cache):
    reference = _gm_run(data, {"run": "clean"})
    for case, content in _old_layouts(data).items():
        config = {"run": case}
        path = checkpoint_path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(content, path)
        with pytest.warns(CacheWarning, match=f"{path}.*moved it to"):
            result = _gm_run(data, config)
        assert torch.equal(result.images, reference.images), case
        assert result.config["losses"] == reference.config["losses"], case
        assert path.with_name(path.name + ".corrupt").is_file(), case


def test_an_expert_of_another_layout_is_set_aside_and_retrained(tmp_cache):
    data = fake_dataset("CIFAR10", 2, (3, 32, 32), per_class=2)
    config = ExpertConfig(num_experts=1, epochs=1, dsa=False, architecture="ConvNetD1W32")
    [reference] = load_or_train_experts(data, config, FP32)
    path = expert_dir(data, config, FP32) / "expert_0.pt"
    good = torch.load(path, weights_only=True)
    for case, content in {"a list": [good["trajectory"]], "no key": {"trajectory": good["trajectory"]},
                          "no trajectory": {"key": good["key"]},
                          "one epoch short": {**good, "trajectory": good["trajectory"][:1]},
                          "NaN parameters": {**good, "trajectory": good["trajectory"] * float("nan")},
                          "no training time": {"key": good["key"], "trajectory": good["trajectory"]}}.items():
        torch.save(content, path)
        with pytest.warns(CacheWarning, match="expert_0.pt"):
            [again] = load_or_train_experts(data, config, FP32)
        assert all(torch.equal(a, b) for a, b in zip(again, reference)), case


def test_data_evaluation_and_baseline_caches_of_another_layout_are_set_aside(tmp_path, tmp_cache):
    write_cifar_npz(tmp_path / "root")
    first = load_dataset("CIFAR10", tmp_path / "root")
    data_cache = tmp_cache / "data" / "CIFAR10_64.pt"
    for content in ([1, 2], {"key": torch.load(data_cache, weights_only=True)["key"], "arrays": {}}):
        torch.save(content, data_cache)
        with pytest.warns(CacheWarning, match="CIFAR10_64.pt"):
            assert torch.equal(load_dataset("CIFAR10", tmp_path / "root").x_train, first.x_train)
    memo = tmp_cache / "data" / "file_hashes.json"
    memo.write_text("[]")
    with pytest.warns(CacheWarning, match="file_hashes.json"):
        load_dataset("CIFAR10", tmp_path / "root")
    path, _ = full_training_path(first, FullTrainingConfig("CIFAR10"), CPU)
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    with pytest.warns(CacheWarning, match=path.name):
        assert read_full_training(path, {}) is None


# ------------------------------------------------------------------------------------ 5. bad images refused


def _bad_sets(data) -> dict[str, SyntheticSet]:
    images, labels = torch.zeros(2, 3, 32, 32), torch.arange(2)

    def saved(**change) -> SyntheticSet:
        fields = dict(images=images, labels=labels, dataset="CIFAR10", mean=data.mean, std=data.std)
        return SyntheticSet(**{**fields, **change})

    return {"NaN": saved(images=images.clone().index_fill_(0, torch.tensor([1]), float("nan"))),
            "infinite": saved(images=images + float("inf")),
            "3-d images": saved(images=images[:, 0]),
            "other image size": saved(images=torch.zeros(2, 3, 16, 16)),
            "two images per class": saved(images=torch.zeros(4, 3, 32, 32), labels=torch.tensor([0, 0, 1, 1])),
            "labels of another length": saved(labels=torch.arange(3) % 2),
            "NaN snapshot": saved(snapshots={1: {"images": images + float("nan"), "lr": None}})}


@pytest.mark.parametrize("case", ["NaN", "infinite", "3-d images", "other image size", "two images per class",
                                  "labels of another length", "NaN snapshot"])
def test_a_saved_set_with_bad_images_is_refused_by_name_and_redistilled(case, data, tmp_path, tmp_cache):
    kwargs = dict(results_dir=tmp_path, profile="smoke")
    config = GradientMatchingConfig(iterations=1, real_batch=4, loops=((1, 1, 1),), architecture="ConvNetD1W32")
    good, _ = distill("gm", data, TASK, config, FP32, **kwargs)
    path = synthetic_path(tmp_path, "gm", "CIFAR10", 1, "noise")
    bad = _bad_sets(data)[case]
    bad.config = good.config
    torch.save({"images": bad.images, "labels": bad.labels, "dataset": bad.dataset, "mean": bad.mean,
                "std": bad.std, "config": bad.config, "snapshots": bad.snapshots}, path)
    if case in ("NaN", "infinite", "3-d images", "labels of another length", "NaN snapshot"):
        with pytest.raises(UnreadableSetError, match=f"{path.name}.*(non-finite|shape)"):
            SyntheticSet.load(path)
    with pytest.warns(CacheWarning, match=path.name):
        again, reused = distill("gm", data, TASK, config, FP32, **kwargs)
    assert not reused and torch.equal(again.images, good.images)


# ------------------------------------------------------------------------------- 6. torch version in the keys


@pytest.mark.parametrize("change", ["torch version", "code digest"])
def test_cache_keys_change_with_the_torch_version_and_the_code(change, data, tmp_cache, monkeypatch):
    calls = []
    run = SimpleNamespace(seed=0, precision="fp32", device=CPU,
                          evaluate=lambda *a, **k: calls.append(1) or SyntheticEvaluation("ConvNet", [{"accuracy": 1}],
                                                                                          [0.1]),
                          profile=SimpleNamespace(name="smoke", evaluation=EvaluationSettings()))
    expert = ExpertConfig(num_experts=1, epochs=1)

    def keys():
        return (checkpoint_path({"run": 1}), expert_dir(data, expert, FP32),
                full_training_path(data, FullTrainingConfig("CIFAR10"), CPU)[0])

    evaluate_cached(run, data.x_train, data.y_train, data, dsa=False)
    before = keys()
    if change == "torch version":
        monkeypatch.setattr(torch, "__version__", "1.13.0")
    else:
        monkeypatch.setattr(digest, "code_digest", lambda: "other code")
    evaluate_cached(run, data.x_train, data.y_train, data, dsa=False)
    assert len(calls) == 2, f"an evaluation made with another {change} was reused"
    assert all(a != b for a, b in zip(before, keys())), f"checkpoint, expert or baseline key ignores the {change}"


# ----------------------------------------------------------------------------------------------- 11. small points


def test_a_refused_pickle_is_explained_without_torchs_advice_to_unpickle_it(tmp_path, tmp_cache):
    marker = tmp_path / "code-ran"
    path = crafted(tmp_cache / "evaluations" / "x.pt", marker)
    with pytest.warns(CacheWarning) as caught:
        assert paths.read_cache(path, lambda p: torch.load(p, weights_only=True)) is None
    message = str(caught[0].message)
    assert "weights_only" not in message and "could run code" in message and str(path) in message
    saved = crafted(tmp_path / "synthetic" / "dm_CIFAR10_ipc1_real.pt", marker)
    with pytest.raises(UnreadableSetError) as err:
        SyntheticSet.load(saved)
    assert "weights_only" not in str(err.value) and "could run code" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_mhist_refuses_image_names_outside_its_images_folder(where, tmp_path, tmp_cache):
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    name = str(outside) if where == "absolute" else "../../../outside.png"   # from root/mhist/images/
    rows = pd.DataFrame({"Image Name": [name, "im1.png", "im2.png", "im3.png"],
                         "Majority Vote Label": ["HP", "SSA", "HP", "SSA"],
                         "Partition": ["train", "train", "test", "test"]})
    csv = write_mhist(tmp_path / "root", csv_text=rows.to_csv(index=False))
    with pytest.raises(DatasetFormatError) as err:
        load_dataset("MHIST", tmp_path / "root", im_size=8)
    for text in (str(csv), "Image Name", name, "inside mhist/images/"):
        assert text in str(err.value)
