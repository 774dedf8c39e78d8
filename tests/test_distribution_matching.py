"""Distribution matching: the loss on a known case, batched = per-class, descent, state and the saved set."""

from __future__ import annotations

import pytest
import torch
from fakes import fake_dataset

import utils.distill.distribution_matching as dm
from utility import RunContext
from utils.data import Dataset
from utils.distill import METHODS, DistillTask, DistributionMatchingConfig, distill
from utils.distill.distribution_matching import DistributionMatching, dm_loss, embedding_network
from utils.synthetic import SyntheticSet, synthetic_path

CPU = torch.device("cpu")


def make(data: Dataset, ipc: int = 2, seed: int = 0, init: str = "real", **config) -> DistributionMatching:
    cfg = DistributionMatchingConfig(**{"architecture": "ConvNetW16", **config})
    return DistributionMatching(data, DistillTask(data.name, ipc, init), cfg, RunContext(seed, CPU, "fp32"))


def test_registered():
    assert METHODS["dm"].distiller is DistributionMatching


def test_dm_loss_known_answer():
    real = [torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    syn = [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 2.0], [0.0, 4.0]])]
    # class 0: means (2, 0) vs (0, 0) -> 4; class 1: means (0, 1) vs (0, 3) -> 4
    assert dm_loss(real, syn).item() == pytest.approx(8.0)


def test_dm_loss_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="one embedding tensor per class"):
        dm_loss([torch.zeros(2, 3)], [torch.zeros(1, 3), torch.zeros(1, 3)])


def test_rejects_network_without_embedding():
    data = fake_dataset("MNIST", 2, (1, 28, 28), 4)
    with pytest.raises(ValueError, match="architecture='LeNet'.*ConvNet"):
        make(data, architecture="LeNet")


def reference_step(distiller: DistributionMatching) -> float:
    """The paper's class-by-class loop with the same random draws as the batched step."""
    net = embedding_network(distiller.config.architecture, distiller.data, CPU)
    ipc, loss = distiller.task.ipc, torch.zeros(())
    for c, idx in enumerate(distiller.class_indices):
        pick = idx[distiller.permutation(len(idx))[: distiller.config.real_batch]]
        real, syn = distiller.x_train[pick], distiller.images[c * ipc:(c + 1) * ipc]
        params = distiller.dsa.sample_siamese()   # one draw for the class's real batch and synthetic images
        with torch.no_grad():
            real_mean = net.embed(distiller.dsa.apply(real, params)).mean(0)
        syn_mean = net.embed(distiller.dsa.apply(syn, params)).mean(0)
        loss = loss + ((real_mean - syn_mean) ** 2).sum()
    distiller.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distiller.optimizer.step()
    return loss.item() / distiller.data.num_classes


def test_batched_step_equals_per_class_loop():
    data = fake_dataset("CIFAR10", 3, (3, 32, 32), 12)
    batched, looped = make(data, real_batch=5), make(data, real_batch=5)
    for _ in range(2):
        torch.manual_seed(1)
        loss_batched = batched.step()
        torch.manual_seed(1)
        loss_looped = reference_step(looped)
        assert loss_batched == pytest.approx(loss_looped, rel=1e-4)
        assert torch.allclose(batched.images, looped.images, atol=1e-5)


def test_steps_lower_the_loss_on_a_fixed_embedding(monkeypatch):
    data = fake_dataset("MNIST", 3, (1, 28, 28), 6)
    torch.manual_seed(0)
    fixed = embedding_network("ConvNetW16", data, CPU)
    monkeypatch.setattr(dm, "embedding_network", lambda *args: fixed)
    distiller = make(data, ipc=1, init="noise", dsa=False, real_batch=100)
    losses = [distiller.step() for _ in range(8)]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.5 * losses[0], losses


def test_state_dict_resumes_identically():
    data = fake_dataset("MNIST", 2, (1, 28, 28), 6)
    torch.manual_seed(0)
    straight = make(data)
    expected = [straight.step() for _ in range(2)]
    torch.manual_seed(0)
    first = make(data)
    first.step()
    state = first.state_dict()
    first.step()  # a snapshot: later steps must not change it
    resumed = make(data, seed=123)
    resumed.load_state_dict(state)
    assert resumed.step() == pytest.approx(expected[1], rel=1e-5)
    assert torch.allclose(resumed.images, straight.images, atol=1e-6)


def test_distill_saves_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_CACHE_DIR", str(tmp_path / "cache"))
    data = fake_dataset("CIFAR10", 2, (3, 32, 32), 6)
    task = DistillTask("CIFAR10", 2, "real")
    config = DistributionMatchingConfig(iterations=3, real_batch=4, architecture="ConvNetW16", checkpoint_every=2)
    kwargs = {"results_dir": tmp_path / "results", "profile": "test", "context": RunContext(0, CPU, "fp32")}
    result, reused = distill("dm", data, task, config, **kwargs)
    assert not reused and result.lr is None
    assert result.images.shape == (4, 3, 32, 32) and result.labels.tolist() == [0, 0, 1, 1]
    assert len(result.config["losses"]) == 3 and result.config["method_config"]["real_batch"] == 4
    saved = SyntheticSet.load(synthetic_path(tmp_path / "results", "dm", "CIFAR10", 2, "real"))
    assert torch.equal(saved.images, result.images) and saved.lr is None
    again, reused = distill("dm", data, task, config, **kwargs)
    assert reused and torch.equal(again.images, result.images)
