"""Gradient matching: distance, loops table, optimisation on a tiny fake dataset, distill/reuse/resume."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

import utility
from networks import get_network
from utility import RunContext
from utils.data import Dataset
from utils.distill import METHODS, DistillTask, GradientMatchingConfig, distill, find_synthetic
from utils.distill.base import PeakMemory, checkpoint_path, method_config, run_distillation
from utils.distill.gradient_matching import GradientMatching, gradient_distance
from utils.synthetic import SyntheticSet, parse_synthetic_name, synthetic_path

CPU = torch.device("cpu")
FAST = dict(real_batch=8, loops=((1, 1, 1),), architecture="ConvNetD1W32", checkpoint_every=1)


def fake_dataset(per_class: int = 30, classes: int = 3, seed: int = 1234) -> Dataset:
    """Three noisy class prototypes at 3x32x32, posing as CIFAR10 (functions check the name)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(classes, 3, 32, 32, generator=g)
    split = {}
    for name, n in (("train", per_class), ("test", 5)):
        y = torch.arange(classes).repeat_interleave(n)
        split[name] = (protos[y] + 0.8 * torch.randn(len(y), 3, 32, 32, generator=g), y)
    return Dataset("CIFAR10", *split["train"], *split["test"], classes=[f"c{i}" for i in range(classes)],
                   mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


@pytest.fixture(scope="module")
def fake() -> Dataset:
    return fake_dataset()


# --------------------------------------------------------------------------------------- gradient_distance


def _grads(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 3, 3, generator=g), torch.randn(4, generator=g), torch.randn(5, 8, generator=g),
            torch.randn(5, generator=g)]


def test_identical_gradients_have_zero_distance():
    real = _grads()
    for kind in ("layerwise", "cos", "mse"):
        assert gradient_distance(real, [g.clone() for g in real], kind).item() == pytest.approx(0, abs=1e-5)
    # layerwise compares directions per output node: rescaling each row leaves it at zero
    scaled = [g * torch.rand(g.shape[0]).add(0.5).view(-1, *[1] * (g.dim() - 1)) for g in real]
    assert gradient_distance(real, scaled, "layerwise").item() == pytest.approx(0, abs=1e-5)


def test_layerwise_ignores_biases_and_counts_output_nodes():
    real = _grads(0)
    other = _grads(1)
    mixed = [other[0], real[1], other[2], real[3]]  # same weights as `other`, biases of `real`
    assert gradient_distance(real, other, "layerwise").item() == pytest.approx(
        gradient_distance(real, mixed, "layerwise").item(), rel=1e-6)
    # hand case: row 0 orthogonal (1 - 0), row 1 identical (1 - 1), row 2 opposite (1 + 1)
    gr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gs = torch.tensor([[0.0, 3.0], [0.0, 2.0], [-1.0, -1.0]])
    assert gradient_distance([gr], [gs], "layerwise").item() == pytest.approx(3.0, abs=1e-5)
    # only 1-D tensors: nothing to compare
    assert gradient_distance([torch.ones(3)], [-torch.ones(3)], "layerwise").item() == 0.0


def test_mse_and_cos_match_hand_computation():
    real, syn = _grads(0), _grads(1)
    mse = sum(((s - r) ** 2).sum().item() for r, s in zip(real, syn))
    assert gradient_distance(real, syn, "mse").item() == pytest.approx(mse, rel=1e-5)
    a, b = torch.cat([g.flatten() for g in real]), torch.cat([g.flatten() for g in syn])
    cos = 1 - (a @ b / (a.norm() * b.norm())).item()
    assert gradient_distance(real, syn, "cos").item() == pytest.approx(cos, rel=1e-4)
    assert gradient_distance(real, [-g for g in real], "cos").item() == pytest.approx(2.0, abs=1e-5)


def test_unknown_distance_is_an_error(fake):
    with pytest.raises(ValueError, match="layerwise"):
        gradient_distance(_grads(), _grads(), "l1")
    config = GradientMatchingConfig(distance="l1", **FAST)
    with pytest.raises(ValueError, match="layerwise"):
        GradientMatching(fake, DistillTask("CIFAR10", 1, "noise"), config, RunContext(0, CPU, "fp32"))


# ---------------------------------------------------------------------------------------------- loops_for


@pytest.mark.parametrize("ipc, loops", [(1, (1, 1)), (10, (10, 50)), (20, (20, 25)), (50, (50, 10))])
def test_paper_loops(ipc, loops):
    assert tuple(GradientMatchingConfig().loops_for(ipc)) == loops


def test_missing_ipc_names_the_loops_table():
    with pytest.raises(ValueError) as err:
        GradientMatchingConfig().loops_for(7)
    message = str(err.value)
    assert "ipc=7" in message and "loops" in message and "[1, 10, 20, 50]" in message
    assert GradientMatchingConfig(loops=((7, 2, 3),)).loops_for(7) == (2, 3)


def test_task_validation():
    with pytest.raises(ValueError, match="ipc"):
        DistillTask("CIFAR10", 0, "real")
    with pytest.raises(ValueError, match="noise"):
        DistillTask("CIFAR10", 1, "zeros")


# ------------------------------------------------------------------------------------------- optimisation


def test_matching_loss_falls_and_images_move(fake):
    torch.manual_seed(0)
    config = GradientMatchingConfig(real_batch=8, loops=((1, 1, 1),), architecture="ConvNetW32")
    gm = GradientMatching(fake, DistillTask("CIFAR10", 1, "noise"), config, RunContext(0, CPU, "fp32"))
    start = gm.images.detach().clone()
    losses = [gm.step() for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.95 * first, f"matching loss did not fall: first {first:.3f}, last {last:.3f}"
    images, labels, lr = gm.synthetic()
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [0, 1, 2] and lr is None
    assert (images - start).abs().max() > 0.05, "the synthetic images did not move"


def test_real_init_starts_from_training_images(fake):
    config = GradientMatchingConfig(**{**FAST, "loops": ((2, 1, 1),)})
    gm = GradientMatching(fake, DistillTask("CIFAR10", 2, "real"), config, RunContext(0, CPU, "fp32"))
    images = gm.images.detach()
    for image, label in zip(images, gm.labels):
        matches = (fake.x_train == image).flatten(1).all(1).nonzero().flatten()
        assert len(matches) == 1 and fake.y_train[matches[0]] == label


def test_ipc_larger_than_real_batch(fake):
    config = GradientMatchingConfig(real_batch=4, loops=((5, 1, 1),), architecture="ConvNetD1W32")
    gm = GradientMatching(fake, DistillTask("CIFAR10", 5, "noise"), config, RunContext(0, CPU, "fp32"))
    assert torch.isfinite(torch.tensor(gm.step()))


# ------------------------------------------------------------------------------------ distill and reuse


def test_distill_saves_reuses_and_recomputes(fake, tmp_path, tmp_cache):
    results = tmp_path / "results"
    task = DistillTask("CIFAR10", 1, "noise")
    config = GradientMatchingConfig(iterations=3, **FAST)
    kwargs = dict(results_dir=results, profile="smoke", context=RunContext(0, CPU, "fp32"))

    first, reused = distill("gm", fake, task, config, **kwargs)
    path = results / "synthetic" / "gm_CIFAR10_ipc1_noise.pt"
    assert not reused and path.is_file()
    assert synthetic_path(results, "gm", "CIFAR10", 1, "noise") == path
    assert parse_synthetic_name(path) == {"method": "gm", "dataset": "CIFAR10", "ipc": 1, "init": "noise"}
    assert find_synthetic(results) == [path] and find_synthetic(results, "MNIST") == []

    loaded = SyntheticSet.load(path)
    assert torch.equal(loaded.images, first.images) and loaded.images.shape == (3, 3, 32, 32)
    assert loaded.labels.tolist() == [0, 1, 2] and loaded.labels.dtype == torch.int64
    assert loaded.dataset == "CIFAR10" and loaded.mean == fake.mean and loaded.std == fake.std
    assert loaded.lr is None
    assert loaded.config == first.config
    assert loaded.config["method_config"] == method_config(config)
    assert loaded.config["iterations_done"] == 3 and len(loaded.config["losses"]) == 3
    assert loaded.config["im_size"] == [32, 32] and loaded.config["seed"] == 0
    assert loaded.config["peak_memory_mib"] >= 0
    assert not list((tmp_cache / "checkpoints").glob("*")), "a finished run must delete its checkpoint"

    again, reused = distill("gm", fake, task, config, **kwargs)
    assert reused and torch.equal(again.images, first.images)

    longer = GradientMatchingConfig(iterations=4, **FAST)
    changed, reused = distill("gm", fake, task, longer, **kwargs)
    assert not reused and changed.config["iterations_done"] == 4
    assert SyntheticSet.load(path).config["iterations_done"] == 4, "the recomputed set replaces the old file"
    _, reused = distill("gm", fake, task, longer, **{**kwargs, "context": RunContext(1, CPU, "fp32")})
    assert not reused, "a different seed must not reuse the saved set"


def test_distill_rejects_mismatches(fake, tmp_path, tmp_cache):
    kwargs = dict(results_dir=tmp_path, profile="smoke", context=RunContext(0, CPU, "fp32"))
    config = GradientMatchingConfig(iterations=1, **FAST)
    with pytest.raises(ValueError, match="MNIST"):
        distill("gm", fake, DistillTask("MNIST", 1, "noise"), config, **kwargs)
    with pytest.raises(ValueError) as err:
        distill("kip", fake, DistillTask("CIFAR10", 1, "noise"), config, **kwargs)
    assert all(name in str(err.value) for name in METHODS)
    assert not (tmp_path / "synthetic").exists() or not list((tmp_path / "synthetic").iterdir())


# ---------------------------------------------------------------------------------------- checkpoint/resume


class Interrupted(RuntimeError):
    pass


class Wrapped:
    """Delegates to a distiller, counting steps and raising once `fail_at` steps have been done."""

    def __init__(self, inner, fail_at: int | None = None):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    def step(self) -> float:
        if self.calls == self.fail_at:
            raise Interrupted(f"stopped after {self.calls} steps")
        self.calls += 1
        return self.inner.step()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def synthetic(self):
        return self.inner.synthetic()


def test_interrupted_run_resumes_from_checkpoint(fake, tmp_cache):
    task = DistillTask("CIFAR10", 1, "noise")
    config = GradientMatchingConfig(iterations=5, **FAST)

    def make(fail_at=None):
        return Wrapped(GradientMatching(fake, task, config, RunContext(0, CPU, "fp32")), fail_at)

    def run(distiller, run_config):
        return run_distillation(distiller, iterations=5, config=run_config, data=fake, checkpoint_every=1,
                                device=CPU, desc="test")

    utility.set_seed(0)
    reference = run(make(), {"run": "uninterrupted"})

    run_config = {"run": "interrupted"}
    checkpoint = checkpoint_path(run_config)
    utility.set_seed(0)
    with pytest.raises(Interrupted):
        run(make(fail_at=2), run_config)
    assert checkpoint.is_file()
    state = torch.load(checkpoint, weights_only=False)
    assert state["iteration"] == 2 and len(state["losses"]) == 2

    utility.set_seed(123)  # the checkpoint must restore every RNG the run depends on
    resumed_distiller = make()
    resumed = run(resumed_distiller, run_config)
    assert resumed_distiller.calls == 3, "only the remaining 3 of 5 iterations run after resuming"
    assert len(resumed.config["losses"]) == 5 and resumed.config["iterations_done"] == 5
    assert resumed.config["losses"][:2] == state["losses"]
    assert resumed.config["losses"] == pytest.approx(reference.config["losses"], rel=1e-5)
    torch.testing.assert_close(resumed.images, reference.images, rtol=1e-5, atol=1e-6)
    assert not checkpoint.exists(), "the checkpoint is removed once the run completes"


def test_peak_memory_counts_what_the_block_allocates_and_not_what_came_before():
    before = torch.ones(64 * 2**20 // 4)
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(192 * 2**20 // 4)
        time.sleep(0.2)   # long enough for the sampling fallback (50 ms) where /proc is unavailable
        del block
    assert 150 < memory.peak_mib < 400
    assert before.sum() > 0


# ------------------------------------------------------------------------------- independent reference


def _naive_layerwise(real: list[torch.Tensor], syn: list[torch.Tensor]) -> torch.Tensor:
    """DC paper Eq. 10, one output node at a time: sum of 1 − cos over the rows of every weight tensor."""
    total = torch.zeros(())
    for gr, gs in zip(real, syn):
        if gr.dim() == 1:   # biases and norm parameters are not matched
            continue
        for r, s in zip(gr.reshape(len(gr), -1), gs.reshape(len(gs), -1)):
            total = total + 1 - (r @ s) / (r.norm() * s.norm() + 1e-6)
    return total


def test_outer_iteration_equals_a_naive_reference(fake):
    """One GM step against a deliberately naive re-implementation of Algorithm 1 of the DC paper with the official
    optimisers: per class a real and a synthetic gradient and their layer-wise distance, summed; one image step
    (SGD, momentum 0.5) per outer loop; between outer loops `inner_loop` epochs of plain SGD (lr_net, no momentum)
    over the shuffled synthetic set in batches of `batch_train` (here 2 batches per epoch, as at ipc 50)."""
    ipc, classes, outer_loop, inner_loop, lr_img, lr_net = 2, 3, 2, 2, 0.1, 0.01
    config = GradientMatchingConfig(real_batch=8, loops=((ipc, outer_loop, inner_loop),), architecture="ConvNetD1W32",
                                    dsa=False, batch_train=4, lr_img=lr_img, lr_net=lr_net)
    gm = GradientMatching(fake, DistillTask("CIFAR10", ipc, "real"), config, RunContext(3, CPU, "fp32"))
    generator = torch.Generator()
    generator.set_state(gm.device_generator.get_state())
    start = gm.images.detach().clone()
    labels = torch.arange(classes).repeat_interleave(ipc)
    rng = torch.get_rng_state()
    net = get_network("ConvNetD1W32", 3, classes, (32, 32))   # the network `step` will draw
    torch.set_rng_state(rng)
    loss = gm.step()

    params = list(net.parameters())
    syn, velocity, losses = start.clone(), None, []
    for outer in range(outer_loop):
        syn.requires_grad_(True)
        total = torch.zeros(())
        for c in range(classes):
            idx = torch.nonzero(fake.y_train == c).flatten()
            real = fake.x_train[idx[torch.randperm(len(idx), generator=generator)[:8]]]
            g_real = torch.autograd.grad(F.cross_entropy(net(real), torch.full((len(real),), c)), params)
            g_syn = torch.autograd.grad(F.cross_entropy(net(syn[c * ipc:(c + 1) * ipc]), labels[c * ipc:(c + 1) * ipc]),
                                        params, create_graph=True)
            total = total + _naive_layerwise([g.detach() for g in g_real], list(g_syn))
        losses.append(total.item())
        (grad,) = torch.autograd.grad(total, syn)
        velocity = grad if velocity is None else 0.5 * velocity + grad
        syn = (syn - lr_img * velocity).detach()
        if outer == outer_loop - 1:
            break
        for _ in range(inner_loop):
            for batch in torch.randperm(len(syn), generator=generator).split(4):
                step_grads = torch.autograd.grad(F.cross_entropy(net(syn[batch]), labels[batch]), params)
                with torch.no_grad():
                    for p, g in zip(params, step_grads):
                        p -= lr_net * g

    torch.testing.assert_close(gm.images.detach(), syn, rtol=1e-5, atol=1e-5)
    assert loss == pytest.approx(sum(losses) / (outer_loop * classes), rel=1e-5)
    assert not torch.equal(syn, start)


def test_sets_saved_by_an_earlier_implementation_are_not_reused(fake, tmp_path, tmp_cache):
    """Sets distilled before a fix that changes the computation (siamese DSA, ...) carry an older
    `implementation` number and are distilled again rather than reused silently."""
    from utils.distill import IMPLEMENTATION_VERSION

    kwargs = dict(results_dir=tmp_path, profile="smoke", context=RunContext(0, CPU, "fp32"))
    task, config = DistillTask("CIFAR10", 1, "noise"), GradientMatchingConfig(iterations=1, **FAST)
    first, _ = distill("gm", fake, task, config, **kwargs)
    assert first.config["implementation"] == IMPLEMENTATION_VERSION
    path = synthetic_path(tmp_path, "gm", "CIFAR10", 1, "noise")
    old = SyntheticSet.load(path)
    old.config["implementation"] = IMPLEMENTATION_VERSION - 1
    old.save(path)
    _, reused = distill("gm", fake, task, config, **kwargs)
    assert not reused
