"""Trajectory matching: settings, loss, lr guards, descent, expert caching, ZCA and the saved set with its lr."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fakes import fake_dataset
from torch.func import functional_call

import utils.distill.experts as experts
import utils.zca as zca
from utility import RunContext
from utils.data import Dataset
from utils.distill import METHODS, DistillTask, TrajectoryMatchingConfig, distill
from utils.distill.experts import (
    ExpertConfig,
    buffer_size_mib,
    expert_dir,
    load_or_train_experts,
    prepare_experts,
)
from utils.distill.method import PREPARATION_SECONDS
from utils.distill.trajectory_matching import (
    MIN_LR,
    PAPER_SETTINGS,
    TrajectoryMatching,
    guard_lr,
    trajectory_loss,
)
from utils.profiles import PAPER, PROFILES
from utils.synthetic import SyntheticSet, synthetic_path
from utils.zca import zca_whiten

CPU = torch.device("cpu")
FIVE = RunContext(5, CPU, "fp32")   # experts trained with seed 5
# one expert, one start epoch, no augmentation: a step is a deterministic function of the images
TINY = {"syn_steps": 3, "expert_epochs": 1, "max_start_epoch": 1, "lr_img": 100.0, "lr_lr": 1e-12,
        "lr_teacher": 0.003, "num_experts": 1, "dsa": False, "architecture": "ConvNetW8"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_CACHE_DIR", str(tmp_path / "cache"))


def make(data: Dataset, ipc: int = 2, seed: int = 0, init: str = "real", **overrides) -> TrajectoryMatching:
    config = TrajectoryMatchingConfig(**{**TINY, **overrides})
    context = RunContext(seed, CPU, "fp32")
    return TrajectoryMatching(data, DistillTask(data.name, ipc, init), config, context,
                              **METHODS["mtt"].inputs(data, config, context))


def test_registered():
    assert METHODS["mtt"].distiller is TrajectoryMatching


def test_paper_profile_uses_the_paper_settings_of_each_ipc():
    """Every MTT field the authors set for an ipc (PAPER_SETTINGS) is what the `paper` profile distils with."""
    for ipc in PAPER.study.ipcs:
        config = PAPER.method_config("mtt", "CIFAR10", ipc)
        assert {k: getattr(config, k) for k in PAPER_SETTINGS[ipc]} == PAPER_SETTINGS[ipc], ipc
    assert set(PAPER.study.ipcs) <= set(PAPER_SETTINGS)
    with pytest.raises(ValueError, match="ipc=5; allowed: 1, 10, 50"):
        TrajectoryMatchingConfig.paper_settings(5)


def test_mhist_paper_settings_whiten_nothing_at_128_px():
    """ZCA needs a D x D covariance (D = 49,152 at 128 px): the paper MHIST settings must not ask for it."""
    mhist = PAPER.mhist
    for ipc in mhist.ipcs:
        config = mhist.method_config("mtt", ipc)
        assert not config.zca and config.architecture == mhist.architecture
        assert 3 * mhist.im_size ** 2 > zca.ZCA_MAX_DIM


def test_config_validation():
    with pytest.raises(ValueError, match="expert_train_epochs=5 is too short.*at least 22"):
        TrajectoryMatchingConfig(expert_train_epochs=5)
    with pytest.raises(ValueError, match="batch_syn"):
        TrajectoryMatchingConfig(batch_syn=0)
    with pytest.raises(ValueError, match="lr_teacher"):
        TrajectoryMatchingConfig(lr_teacher=-0.01)


def test_trajectory_loss_known_answer():
    student, start, target = torch.tensor([1.0, 1.0]), torch.zeros(2), torch.tensor([2.0, 0.0])
    assert trajectory_loss(student, start, target).item() == pytest.approx(2.0 / 4.0)


def test_guard_lr_clamps_and_raises():
    for value, expected in ((-0.5, MIN_LR), (0.0, MIN_LR), (0.02, 0.02)):
        lr = torch.tensor(value, requires_grad=True)
        guard_lr(lr)
        assert lr.item() == pytest.approx(expected)
    for bad in (math.nan, math.inf):
        with pytest.raises(FloatingPointError, match="learned learning rate"):
            guard_lr(torch.tensor(bad))


def test_steps_lower_the_matching_loss_on_mnist_shapes():
    distiller = make(fake_dataset("MNIST", 3, (1, 28, 28), 20))
    losses = [distiller.step() for _ in range(6)]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.6 * losses[0], losses


def test_learned_lr_never_goes_negative():
    # a huge lr_lr would push the lr far below zero (d loss / d lr > 0 here); the guard keeps it at MIN_LR
    distiller = make(fake_dataset("MNIST", 3, (1, 28, 28), 20), lr_lr=1.0)
    distiller.step()
    assert distiller.lr.grad.item() > 0
    assert distiller.synthetic()[2] == pytest.approx(MIN_LR)


def test_non_finite_loss_raises_before_any_update():
    distiller = make(fake_dataset("MNIST", 3, (1, 28, 28), 20))
    with torch.no_grad():
        distiller.images[0] = math.nan
    lr = distiller.lr.item()
    with pytest.raises(FloatingPointError, match="loss is nan.*nothing was updated"):
        distiller.step()
    assert distiller.lr.item() == lr and distiller.lr.grad is None and distiller.images.grad is None
    assert not distiller.optimizer.state and not distiller.optimizer_lr.state


def test_state_dict_resumes_identically():
    data = fake_dataset("MNIST", 2, (1, 28, 28), 10)
    straight = make(data, dsa=True, num_experts=2, max_start_epoch=2, lr_lr=1e-5)
    expected = [straight.step() for _ in range(2)]
    first = make(data, dsa=True, num_experts=2, max_start_epoch=2, lr_lr=1e-5)
    first.step()
    state = first.state_dict()
    first.step()  # a snapshot: later steps must not change it
    resumed = make(data, seed=99, dsa=True, num_experts=2, max_start_epoch=2, lr_lr=1e-5)
    resumed.load_state_dict(state)
    assert resumed.step() == pytest.approx(expected[1], rel=1e-5)
    assert resumed.lr.item() == pytest.approx(straight.lr.item(), rel=1e-6)


def test_expert_buffers_are_cached(monkeypatch):
    data = fake_dataset("MNIST", 2, (1, 28, 28), 10)
    calls = []
    real_train = experts.train_expert

    def counting(*args, **kwargs):
        calls.append(args[2].seed)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experts, "train_expert", counting)
    config = ExpertConfig(num_experts=2, epochs=2, architecture="ConvNetW8")
    first = load_or_train_experts(data, config, FIVE)
    assert calls == [5, 6]
    assert len(first) == 2 and len(first[0]) == 3
    assert not torch.equal(first[0][0], first[0][-1]) and not torch.equal(first[0][-1], first[1][-1])
    again = load_or_train_experts(data, config, FIVE)
    assert calls == [5, 6]
    assert all(torch.equal(a, b) for ta, tb in zip(first, again, strict=True) for a, b in zip(ta, tb, strict=True))
    folder = expert_dir(data, config, FIVE)
    on_disk = sum(p.stat().st_size for p in folder.glob("expert_*.pt")) / 2**20
    assert buffer_size_mib(data, config, FIVE) == pytest.approx(on_disk) and on_disk > 0
    load_or_train_experts(data, ExpertConfig(num_experts=3, epochs=2, architecture="ConvNetW8"), FIVE)
    assert calls == [5, 6, 7]  # only the new expert
    load_or_train_experts(data, ExpertConfig(num_experts=1, epochs=3, architecture="ConvNetW8"), FIVE)
    assert calls == [5, 6, 7, 5]  # another configuration trains anew
    fresh = ExpertConfig(num_experts=1, epochs=4, architecture="ConvNetW8")
    trained = prepare_experts(data, fresh, FIVE)[PREPARATION_SECONDS]
    recorded = torch.load(expert_dir(data, fresh, FIVE) / "expert_0.pt", weights_only=True)["train_seconds"]
    assert recorded > 0 and trained == round(recorded, 1), "each expert records how long its training took"
    assert prepare_experts(data, fresh, FIVE)[PREPARATION_SECONDS] == trained, \
        "a reused buffer reports the training time it took when it was trained"


def test_zca_whitening_decorrelates_with_training_statistics():
    g = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    mixing = torch.diag(torch.linspace(3, 10, 16)) @ rotation  # well above epsilon in every direction
    x = (torch.randn(4000, 16, generator=g) @ mixing).view(-1, 1, 4, 4)
    y = torch.zeros(len(x), dtype=torch.long)
    data = Dataset("MNIST", x, y, x[:50].clone(), y[:50].clone(), ["0"], [0.0], [1.0])

    def covariance(images: torch.Tensor) -> torch.Tensor:
        return torch.cov(images.flatten(1).T)

    raw = covariance(data.x_train)
    assert (raw - torch.diag(raw.diag())).abs().max() > 10  # strongly correlated before
    white = zca_whiten(data)
    assert torch.allclose(covariance(white.x_train), torch.eye(16), atol=0.05)
    assert torch.allclose(white.x_test, white.x_train[:50], atol=1e-4)  # test set uses the train statistics
    assert torch.equal(zca_whiten(data).x_train, white.x_train)  # cached transform gives the same result
    assert torch.equal(data.x_train, x)  # the input dataset is untouched


def test_zca_whitens_raw_pixels_not_normalised_values():
    """As the official MTT (kornia on [0, 1] pixels): the normalisation is undone before whitening, so the same
    pixels give the same whitened images whatever mean/std the dataset was normalised with."""
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(500, 1, 4, 4, generator=g)
    y = torch.zeros(len(pixels), dtype=torch.long)
    raw = Dataset("MNIST", pixels, y, pixels[:5].clone(), y[:5].clone(), ["0"], [0.0], [1.0])
    normalised = Dataset("MNIST", (pixels - 0.5) / 0.25, y, (pixels[:5] - 0.5) / 0.25, y[:5].clone(), ["0"],
                         [0.5], [0.25])
    torch.testing.assert_close(zca_whiten(normalised).x_train, zca_whiten(raw).x_train, rtol=1e-4, atol=1e-4)


def test_zca_rejects_images_too_large_for_a_covariance():
    data = fake_dataset("MHIST", 2, (3, 128, 128), 1)
    with pytest.raises(ValueError, match="49152 values.*Use zca=False"):
        zca_whiten(data)


def test_zca_distiller_works_in_whitened_space():
    data = fake_dataset("MNIST", 2, (1, 28, 28), 10)
    distiller = make(data, zca=True)
    whitened = zca_whiten(data).x_train.flatten(1)
    start = distiller.images.detach().flatten(1)
    assert all((whitened - row).abs().amax(1).min() < 1e-5 for row in start)  # initialised from whitened images
    assert math.isfinite(distiller.step())


def test_distill_round_trip_keeps_the_learned_lr(tmp_path):
    data = fake_dataset("CIFAR10", 2, (3, 32, 32), 8)
    task = DistillTask("CIFAR10", 1, "real")
    config = TrajectoryMatchingConfig(**{**TINY, "lr_lr": 1e-5, "dsa": True}, iterations=3, checkpoint_every=2)
    kwargs = {"results_dir": tmp_path / "results", "profile": "test", "context": RunContext(0, CPU, "fp32")}
    result, reused = distill("mtt", data, task, config, **kwargs)
    assert not reused and isinstance(result.lr, float)
    assert result.lr != TINY["lr_teacher"] and result.lr >= MIN_LR
    assert result.images.shape == (2, 3, 32, 32) and result.config["method_config"]["zca"] is False
    path = synthetic_path(tmp_path / "results", "mtt", "CIFAR10", 1, "real")
    saved = SyntheticSet.load(path)
    assert saved.lr == result.lr and torch.equal(saved.images, result.images)
    copy = SyntheticSet.load(saved.save(tmp_path / "copy.pt"))
    assert copy.lr == result.lr
    again, reused = distill("mtt", data, task, config, **kwargs)
    assert reused and again.lr == result.lr


def _tiny_distiller(**overrides) -> TrajectoryMatching:
    data = fake_dataset("MNIST", 2, (1, 8, 8), 6)
    return make(data, ipc=3, **{"syn_steps": 1, "architecture": "ConvNetD1W8", **overrides})


def test_one_student_step_is_a_manual_sgd_step_with_the_learned_lr():
    distiller = _tiny_distiller()
    start = distiller.experts[0][0]
    params = start.clone().requires_grad_(True)
    logits = functional_call(distiller.net, distiller._unflatten(params), (distiller.images.detach(),))
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, distiller.labels), params)
    expected = start - distiller.lr.detach() * grad
    torch.testing.assert_close(distiller.student(start).detach(), expected, rtol=1e-5, atol=1e-6)


def test_student_uses_every_image_once_per_pass_in_chunks():
    """The official student walks a shuffled permutation in chunks of batch_syn: 6 images, batch 2, 3 steps."""
    distiller = _tiny_distiller(syn_steps=3, batch_syn=2)
    seen = []
    net_forward = distiller.net.forward

    def record(x):
        seen.append(x.detach().clone())
        return net_forward(x)

    distiller.net.forward = record
    distiller.student(distiller.experts[0][0])
    batches = torch.cat(seen).flatten(1)
    assert [len(b) for b in seen] == [2, 2, 2]
    order = [int((distiller.images.detach().flatten(1) - row).abs().amax(1).argmin()) for row in batches]
    assert sorted(order) == list(range(6)), order


def test_matching_gradients_agree_with_finite_differences():
    """d loss / d images and d loss / d lr through the unrolled student, against central differences."""
    distiller = _tiny_distiller(syn_steps=3, batch_syn=6)
    distiller.net.double()   # float64 so that the differences are not lost in rounding
    start, target = distiller.experts[0][0].double(), distiller.experts[0][1].double()

    def loss(images: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        distiller.images, distiller.lr = images, lr
        distiller.device_generator.manual_seed(0)   # same minibatches in every evaluation
        return trajectory_loss(distiller.student(start), start, target)

    images = distiller.images.detach().double().requires_grad_(True)
    lr = distiller.lr.detach().double().requires_grad_(True)
    grad_images, grad_lr = torch.autograd.grad(loss(images, lr), (images, lr))
    direction = torch.randn(images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 1e-5
    images, lr = images.detach(), lr.detach()
    numeric = (loss(images + eps * direction, lr) - loss(images - eps * direction, lr)) / (2 * eps)
    numeric_lr = (loss(images, lr + 1e-8) - loss(images, lr - 1e-8)) / 2e-8
    assert (grad_images * direction).sum().item() == pytest.approx(numeric.item(), rel=1e-4)
    assert grad_lr.item() == pytest.approx(numeric_lr.item(), rel=1e-4)


def test_zca_is_computed_once_per_dataset(monkeypatch):
    data = fake_dataset("MNIST", 2, (1, 4, 4), 50)
    calls = []
    real_whiten = zca._whiten
    monkeypatch.setattr(zca, "_whiten", lambda *args: calls.append(1) or real_whiten(*args))
    first, again = zca_whiten(data), zca_whiten(data)
    assert again is first and len(calls) == 1
    shifted = Dataset("MNIST", data.x_train, data.y_train, data.x_test, data.y_test, data.classes, [0.0], [0.1])
    assert not torch.allclose(zca_whiten(shifted).x_train, first.x_train, atol=1e-2), "normalisation is in the key"
    assert len(calls) == 2


def test_expert_buffers_are_keyed_by_device_class():
    data = fake_dataset("MNIST", 2, (1, 8, 8), 4)
    config = ExpertConfig(num_experts=1, epochs=1, architecture="ConvNetD1W8")
    on_cpu = expert_dir(data, config, RunContext(0, CPU, "fp32"))
    assert on_cpu != expert_dir(data, config, RunContext(0, torch.device("cuda"), "fp32"))
    assert on_cpu == expert_dir(data, config, RunContext(0, "cpu", "fp32"))


def test_cpu_mnist_sets_from_real_images_match_later_shorter_segments_of_one_shared_buffer():
    cpu = PROFILES["cpu"]
    real, noise = (cpu.method_config("mtt", "MNIST", 10, init) for init in ("real", "noise"))
    assert (real.lr_img, real.expert_epochs, real.max_start_epoch) == (100.0, 1, 15)
    assert (noise.lr_img, noise.expert_epochs, noise.max_start_epoch) == (1000.0, 2, 2)
    assert real.expert_config() == noise.expert_config(), "both inits train on one expert buffer"
    with pytest.raises(ValueError, match=r"No mtt configuration for init=None; this profile has noise, real"):
        cpu.method_config("mtt", "MNIST", 10)
