"""Accuracy-vs-iterations snapshots, the floor over several random subsets, run order, per-architecture budgets
and the NAS ceiling (issue 10)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from fakes import Counter

import utility
from utility import SyntheticEvaluation
from utils import pipeline
from utils.distill.base import run_distillation
from utils.nas import ceiling
from utils.notebook import start
from utils.profiles import CrossArchSettings, EvaluationSettings, get_profile
from utils.study import (
    FLOOR,
    SetResult,
    SetUnit,
    curve_sets,
    curve_table,
    merge_evaluations,
    protocol_settings,
    snapshot_iterations,
)
from utils.synthetic import SyntheticSet, initial_images

CPU = torch.device("cpu")


def evaluation(*accuracies: float) -> SyntheticEvaluation:
    return SyntheticEvaluation("ConvNet", [{"accuracy": a} for a in accuracies], [1.0] * len(accuracies))


@pytest.mark.parametrize("iterations, points, expected", [(15, 1, (8,)), (30, 2, (10, 20)), (2, 1, (1,)),
                                                          (1, 1, ()), (100, 0, ())])
def test_snapshot_iterations_lie_strictly_inside_the_run(iterations, points, expected):
    assert snapshot_iterations(iterations, points) == expected


def test_a_run_keeps_the_images_and_lr_of_each_snapshot_and_saves_them(tmp_cache, tmp_path):
    data = SimpleNamespace(name="CIFAR10", mean=[0.0] * 3, std=[1.0] * 3)
    result = run_distillation(Counter(), iterations=6, config={"run": "snapshots"}, data=data, checkpoint_every=2,
                              device=CPU, desc="t", snapshots_at=(2, 4))
    assert sorted(result.snapshots) == [2, 4]
    assert result.snapshots[2]["images"].flatten().tolist() == [2.0] * 4
    assert result.snapshots[4]["lr"] == 2.0 and result.images.flatten().tolist() == [6.0] * 4
    loaded = SyntheticSet.load(result.save(tmp_path / "set.pt"))
    assert sorted(loaded.snapshots) == [2, 4]
    torch.testing.assert_close(loaded.snapshots[4]["images"], result.snapshots[4]["images"])


def test_a_resumed_run_keeps_the_snapshots_taken_before_the_interruption(tmp_cache):
    data = SimpleNamespace(name="CIFAR10", mean=[0.0] * 3, std=[1.0] * 3)

    class Failing(Counter):
        def step(self) -> float:
            if self.steps == 3:
                raise KeyboardInterrupt
            return super().step()

    config = {"run": "resumed snapshots"}
    with pytest.raises(KeyboardInterrupt):
        run_distillation(Failing(), iterations=6, config=config, data=data, checkpoint_every=2, device=CPU,
                         desc="t", snapshots_at=(2, 4))
    result = run_distillation(Counter(), iterations=6, config=config, data=data, checkpoint_every=2, device=CPU,
                              desc="t", snapshots_at=(2, 4))
    assert sorted(result.snapshots) == [2, 4]
    assert result.snapshots[2]["images"].flatten().tolist() == [2.0] * 4


def test_curve_table_ends_with_the_final_evaluation_and_skips_floors():
    floor = SetResult(FLOOR, "CIFAR10", 10, "-", {"dsa": evaluation(0.3, 0.3)})
    distilled = SetResult("Distribution matching", "CIFAR10", 10, "real", {"dsa": evaluation(0.40, 0.42)},
                          iterations=800, curve={0: evaluation(0.30), 400: evaluation(0.38)})
    table = curve_table([floor, distilled])
    assert table["iteration"].tolist() == [0, 400, 800]
    assert table["accuracy (%)"].tolist() == [30.0, 38.0, 41.0]
    assert table["models"].tolist() == [1, 1, 2]


def test_a_curve_starts_at_iteration_0_with_the_images_the_distiller_started_from():
    data = SimpleNamespace(num_classes=3, channels=1, im_size=(4, 4))
    run = SimpleNamespace(seed=7, profile=get_profile("cpu"))
    snap = {"images": torch.ones(6, 1, 4, 4), "lr": 0.02}
    mtt = SyntheticSet(torch.zeros(6, 1, 4, 4), torch.arange(3).repeat_interleave(2), "MNIST", [0.0], [1.0],
                       config={"method_config": {"lr_teacher": 0.001}}, snapshots={5: snap})
    points = curve_sets(run, SetUnit(data, 2, "mtt", "noise"), mtt, data)
    assert sorted(points) == [0, 5] and points[5][1] == 0.02
    started, _ = initial_images(data, 2, "noise", torch.Generator().manual_seed(7))
    torch.testing.assert_close(points[0][0], started)
    assert points[0][1] == 0.001, "MTT's learnable lr starts at lr_teacher"
    mtt.config["method_config"]["lr_teacher"] = run.profile.evaluation.lr
    assert curve_sets(run, SetUnit(data, 2, "mtt", "noise"), mtt, data)[0][1] is None, "the evaluation lr: one entry"
    assert curve_sets(run, SetUnit(data, 2, "gm", "noise"), SyntheticSet(
        mtt.images, mtt.labels, "MNIST", [0.0], [1.0]), data) == {}, "no snapshots, no curve"


def test_every_profile_with_a_curve_has_at_least_three_points():
    for name in ("smoke", "cpu"):
        settings = get_profile(name).evaluation
        inside = snapshot_iterations(15, settings.curve_points)
        assert len({0, *inside, 15}) >= 3, name


def test_the_course_protocol_fixes_its_epochs_lr_and_schedule_and_keeps_the_studys_other_settings():
    assert protocol_settings("course", 0.2, epochs=300, architecture="ConvNetD4W32", n_models=5) == {
        "epochs": 20, "lr": 0.01, "schedule": "cosine", "dsa": False, "architecture": "ConvNetD4W32", "n_models": 5}
    assert protocol_settings("dsa", 0.2, epochs=300) == {"epochs": 300, "lr": 0.2, "dsa": True, "schedule": "step"}
    with pytest.raises(ValueError, match="protocol 'courses'; allowed: plain, dsa, course"):
        protocol_settings("courses")
    with pytest.raises(ValueError, match="'cours' in also; allowed: plain, dsa, course"):
        EvaluationSettings(also=("cours",))


def test_an_evaluation_trains_with_the_schedule_it_is_given(monkeypatch, tmp_path, data_root):
    schedules = []
    real_train = utility.train

    def spy(*args, schedule="step", **kwargs):
        schedules.append(schedule)
        return real_train(*args, schedule=schedule, **kwargs)

    monkeypatch.setattr(utility, "train", spy)
    run = start("02_gradient_matching", "smoke", str(data_root), str(tmp_path), 0, "cpu")
    data = SimpleNamespace(x_test=torch.randn(8, 1, 28, 28), y_test=torch.arange(8) % 2, channels=1, num_classes=2,
                           im_size=(28, 28))
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 0, 1])
    run.evaluate(x, y, data, n_models=1, epochs=1, schedule="cosine")
    run.evaluate(x, y, data, n_models=1, epochs=1)
    assert schedules == ["cosine", "step"]


def test_merged_floor_keeps_every_network_of_every_subset():
    merged = merge_evaluations([evaluation(0.2, 0.3), evaluation(0.4), evaluation(0.5, 0.6)])
    assert len(merged.runs) == 5 and merged.mean() == pytest.approx(0.4)


def test_profiles_spread_the_floor_over_at_least_three_subsets():
    for name in ("cpu", "paper"):
        assert get_profile(name).evaluation.floor_subsets >= 3


def test_cross_architecture_runs_after_every_method_and_before_the_comparison():
    order = [p.name[:2] for p in pipeline.notebooks()]
    assert order.index("03") > max(order.index("02"), order.index("06"), order.index("07"))
    numbered = sorted(p.name[:2] for p in pipeline.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert order[-1] == "08" and sorted(order) == numbered


def test_an_architecture_budget_overrides_the_shared_one():
    settings = CrossArchSettings(epochs=300, budgets=(("ResNet18", 40, 0.05), ("VGG11", 30, None)))
    assert settings.budget("ResNet18") == (40, 0.05)
    assert settings.budget("VGG11") == (30, None)
    assert settings.budget("LeNet") == (300, None)


def test_nas_ceiling_is_the_rank_agreement_of_two_seeds():
    table = pd.DataFrame({"full-data accuracy, seed 0 (%)": [1.0, 2.0, 3.0, 4.0],
                          "full-data accuracy, seed 1 (%)": [1.5, 2.5, 3.5, 4.5]})
    assert ceiling(table, [0, 1])["ceiling spearman (full data, seed vs seed)"] == pytest.approx(1.0)
    table["full-data accuracy, seed 1 (%)"] = [4.0, 3.0, 2.0, 1.0]
    assert ceiling(table, [0, 1])["ceiling spearman (full data, seed vs seed)"] == pytest.approx(-1.0)
    assert pd.isna(ceiling(table, [0])["ceiling spearman (full data, seed vs seed)"])


def test_the_smoke_profile_trains_small_networks_only_where_it_studies():
    """A first smoke run spent most of its time in the eager autograd of 128-wide ConvNets (benchmarks/README)."""
    from networks import get_network

    smoke = get_profile("smoke")
    networks = {smoke.evaluation.architecture, smoke.mhist.architecture, smoke.baseline.architecture,
                *(smoke.method_config(method, "CIFAR10", 1).architecture for method in smoke.methods)}
    for name in networks:
        assert utility.count_parameters(get_network(name, 3, 10, (32, 32))) < 60_000, name


def test_a_profile_sets_the_threads_its_notebooks_compute_with(tmp_path, data_root):
    before = torch.get_num_threads()
    try:
        start("02_gradient_matching", "smoke", str(data_root), str(tmp_path), 0, "cpu")
        assert torch.get_num_threads() == get_profile("smoke").threads == 1
    finally:
        torch.set_num_threads(before)
    assert get_profile("cpu").threads is None, "cpu and paper use every core"
