"""The "Inside one iteration" helpers show the registered distillers' own computation: what the tables add up to
is what `step()` optimises."""

from __future__ import annotations

import json

import pytest
import torch

from utils import explore
from utils.distill import METHODS
from utils.distill.distribution_matching import DistributionMatching, dm_loss, embedding_network
from utils.distill.gradient_matching import GradientMatching, gradient_distance
from utils.distill.trajectory_matching import TrajectoryMatching
from utils.notebook import start
from utils.paths import NOTEBOOKS_DIR
from utils.synthetic import SyntheticSet, synthetic_path


@pytest.fixture
def run(tmp_path, module_cache, data_root):
    return start("explore", "smoke", str(data_root), str(tmp_path / "results"), 0, "cpu")


def test_the_distiller_is_the_registered_class_with_the_profiles_configuration(run):
    gm = explore.distiller_for(run, "gm", "CIFAR10", 1)
    assert type(gm) is GradientMatching and gm.config == run.profile.method_config("gm", "CIFAR10", 1)
    assert gm.device == run.device and gm.precision == run.precision
    assert torch.equal(explore.images(gm), explore.distiller_for(run, "gm", "CIFAR10", 1).images.detach())


def test_the_gradient_table_adds_up_to_the_layerwise_distance(run):
    gm = explore.distiller_for(run, "gm", "CIFAR10", 1)
    net, _ = gm.new_network()
    params = list(net.parameters())
    real, syn = gm.class_gradients(net, params, 0)
    table = explore.gradient_table(net, real, syn)
    assert len(table) == sum(p.dim() > 1 for p in params)
    assert table["distance (sum of 1 - cosine)"].sum() == pytest.approx(gradient_distance(real, syn).item(), rel=1e-5)
    with explore.replayed_draws(gm):
        first = gm.matching_loss(net, params).item()
    assert gm.matching_loss(net, params).item() == first, "replayed draws give the same batches and augmentations"
    loss = gm.step()
    assert len(gm.outer_losses) == gm.outer_loop and loss == pytest.approx(sum(gm.outer_losses) / gm.outer_loop)


def test_the_embedding_gaps_are_the_loss_that_step_optimises(run):
    dm = explore.distiller_for(run, "dm", "CIFAR10", 1)
    assert isinstance(dm, DistributionMatching)
    torch.manual_seed(7)
    net = embedding_network(dm.config.architecture, dm.data, dm.device)
    with explore.replayed_draws(dm):
        real, syn = dm.embeddings(net)
    gaps = explore.embedding_table(real, syn, dm.data.classes)
    assert list(gaps["class"]) == dm.data.classes
    assert gaps["mean gap"].sum() == pytest.approx(dm_loss(real, syn).item(), rel=1e-5)
    torch.manual_seed(7)   # step() draws its network the same way
    assert dm.step() == pytest.approx(gaps["mean gap"].sum() / dm.data.num_classes, rel=1e-5)
    assert explore.relative_change(explore.images(explore.distiller_for(run, "dm", "CIFAR10", 1)),
                                   explore.images(dm)) > 0


def test_the_students_last_step_is_the_loss_of_step_and_the_update_moves_the_lr(run):
    mtt = explore.distiller_for(run, "mtt", "CIFAR10", 1)
    assert isinstance(mtt, TrajectoryMatching) and len(mtt.experts) == run.profile.methods["mtt"].num_experts
    with explore.replayed_draws(mtt):
        _, _, start_params, target = mtt.segment()
        table = explore.student_table(mtt.student_steps(start_params), start_params, target)
    assert list(table["student step"]) == list(range(1, mtt.config.syn_steps + 1))
    initial_lr = mtt.lr.item()
    assert mtt.step() == pytest.approx(table["normalised distance"].iloc[-1], rel=1e-5)
    assert mtt.lr.item() != initial_lr
    assert len(explore.run_steps(mtt, 2)) == 2


def test_the_learned_lr_table_says_whether_each_set_grew(run):
    study = run.profile.study
    lrs = iter([0.02, 0.005] * len(study.datasets))
    for dataset in study.datasets:
        for init in study.inits:
            SyntheticSet(torch.zeros(10, 1, 2, 2), torch.arange(10), dataset, [0.0], [1.0], lr=next(lrs),
                         config={"method_config": {"lr_teacher": 0.01}}).save(
                synthetic_path(run.writer.root, "mtt", dataset, study.ipcs[0], init))
    table = explore.learned_lr_table(run)
    assert list(table["grew"]) == ["yes", "no"] * len(study.datasets)
    assert list(table["initial lr"]) == [0.01] * len(table)


def test_every_method_notebook_steps_through_one_iteration_before_its_study():
    for record in METHODS.values():
        notebook = json.loads((NOTEBOOKS_DIR / f"{record.notebook}.ipynb").read_text())
        cells = ["".join(cell["source"]) for cell in notebook["cells"]]
        inside = next(i for i, source in enumerate(cells) if source.startswith("## Inside one iteration"))
        study = next(i for i, source in enumerate(cells) if "distillation_study(run" in source)
        assert inside < study, record.notebook
        assert f'explore.distiller_for(run, "{record.key}"' in "".join(cells[inside:study]), record.notebook
