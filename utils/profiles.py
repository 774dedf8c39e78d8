"""Run profiles: how much work each notebook does. One table of settings per profile, no `if` ladders.

- `smoke`: seconds per notebook, tiny subsets; for tests. Never writes to `results/`.
- `cpu`: real data with reduced budgets; the whole sequence fits about two hours on 2 CPU cores.
- `paper`: the published hyperparameters (DC/DSA/DM/MTT papers), meant for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.distill.gradient_matching import GradientMatchingConfig


@dataclass(frozen=True)
class EvaluationSettings:
    """The distilled-set protocol (fresh network, SGD momentum 0.9, wd 5e-4, lr/10 at half, batch 256)."""

    n_models: int = 5            # networks trained per set; mean ± std over them
    epochs: int = 300            # epochs without augmentation (DC paper)
    dsa_epochs: int = 1000       # epochs with DSA augmentation (DSA paper)
    lr: float = 0.01
    batch_size: int = 256
    test_images: int | None = None   # None: the whole real test set


@dataclass(frozen=True)
class BaselineSettings:
    """01: ConvNet on the full training set (seed report: 20 epochs, batch 256, SGD + cosine from lr 0.01)."""

    datasets: tuple[str, ...] = ("MNIST", "CIFAR10")
    epochs: int = 20
    train_images: int | None = None   # None: the whole training set
    batch_size: int = 256
    lr: float = 0.01


@dataclass(frozen=True)
class DistillStudySettings:
    """02/06/07: which sets to distil."""

    datasets: tuple[str, ...] = ("MNIST", "CIFAR10")
    ipcs: tuple[int, ...] = (1, 10, 50)
    inits: tuple[str, ...] = ("real", "noise")


@dataclass(frozen=True)
class CrossArchSettings:
    """03: architectures each saved set is trained on."""

    architectures: tuple[str, ...] = ("ConvNet", "LeNet", "AlexNet", "VGG11", "ResNet18", "MLP")
    ipcs: tuple[int, ...] = (10,)   # which saved sets to transfer
    epochs: int = 300
    n_models: int = 5


@dataclass(frozen=True)
class NasSettings:
    """04: candidate ConvNets trained on full data and on a distilled set; rankings compared."""

    dataset: str = "CIFAR10"
    depths: tuple[int, ...] = (1, 2, 3, 4)
    widths: tuple[int, ...] = (32, 64, 128, 256)
    full_epochs: int = 20
    full_train_images: int | None = None
    distilled_epochs: int = 300
    n_models: int = 2


@dataclass(frozen=True)
class MhistSettings:
    """05: MHIST resolution, network depth, distilled sets and baseline budget."""

    im_size: int = 128
    depth: int = 5
    ipcs: tuple[int, ...] = (10, 50)
    inits: tuple[str, ...] = ("real", "noise")
    baseline_epochs: int = 20


@dataclass(frozen=True)
class Profile:
    """Every setting of one profile."""

    name: str
    precision: str = "auto"        # bf16 autocast where the hardware has it natively, else fp32
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    baseline: BaselineSettings = field(default_factory=BaselineSettings)
    study: DistillStudySettings = field(default_factory=DistillStudySettings)
    gm: GradientMatchingConfig = field(default_factory=GradientMatchingConfig)
    cross_arch: CrossArchSettings = field(default_factory=CrossArchSettings)
    nas: NasSettings = field(default_factory=NasSettings)
    mhist: MhistSettings = field(default_factory=MhistSettings)



PAPER = Profile(name="paper")

CPU = Profile(
    name="cpu",
    evaluation=EvaluationSettings(n_models=3, epochs=100, dsa_epochs=100),
    baseline=BaselineSettings(epochs=3, train_images=None),
    study=DistillStudySettings(ipcs=(10,)),
    gm=GradientMatchingConfig(iterations=40, real_batch=64, loops=((10, 5, 5),)),
    cross_arch=CrossArchSettings(epochs=100, n_models=3),
    nas=NasSettings(depths=(1, 2, 3, 4), widths=(128,), full_epochs=1, full_train_images=10000,
                    distilled_epochs=100, n_models=2),
    mhist=MhistSettings(im_size=64, depth=4, ipcs=(10, 50), baseline_epochs=10),
)

SMOKE = Profile(
    name="smoke",
    evaluation=EvaluationSettings(n_models=2, epochs=2, dsa_epochs=2, test_images=200),
    baseline=BaselineSettings(epochs=2, train_images=512),
    study=DistillStudySettings(ipcs=(1,)),
    gm=GradientMatchingConfig(iterations=2, real_batch=8, loops=((1, 1, 1), (2, 2, 1)), checkpoint_every=1),
    cross_arch=CrossArchSettings(architectures=("ConvNet", "MLP"), ipcs=(1,), epochs=2, n_models=2),
    nas=NasSettings(depths=(1, 2), widths=(32,), full_epochs=1, full_train_images=256, distilled_epochs=2,
                    n_models=1),
    mhist=MhistSettings(im_size=32, depth=3, ipcs=(1,), inits=("real",), baseline_epochs=1),
)

PROFILES = {p.name: p for p in (SMOKE, CPU, PAPER)}


def get_profile(name: str) -> Profile:
    """The profile called `name` (smoke, cpu or paper)."""
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; allowed: {', '.join(PROFILES)}")
    return PROFILES[name]


__all__ = ["PROFILES", "Profile", "get_profile"]
