"""Run profiles: how much work each notebook does. One table of settings per profile, no `if` ladders.

- `smoke`: seconds per notebook, tiny subsets; for tests. Never writes to `results/`.
- `cpu`: real data with reduced budgets; the whole sequence fits about two hours on 2 CPU cores.
- `paper`: the published hyperparameters (DC/DSA/DM/MTT papers), meant for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from utility import SCHEDULES
from utils.distill.distribution_matching import DistributionMatchingConfig
from utils.distill.gradient_matching import GradientMatchingConfig
from utils.distill.trajectory_matching import TrajectoryMatchingConfig
from utils.synthetic import INITS


@dataclass(frozen=True)
class Protocol:
    """How the networks of one evaluation are trained on a set, where it departs from the profile's
    `EvaluationSettings` (None: the profile's value, or the study's); `label` follows the metric in table columns."""

    label: str
    dsa: bool = False              # train with DSA augmentation
    epochs: int | None = None      # None: the profile's `dsa_epochs` with DSA, else `epochs` (or the study's own)
    schedule: str = "step"         # lr schedule of `utility.train`: "step" (lr/10 at half) or "cosine"
    lr: float | None = None        # None: the set's learned lr (MTT), else the profile's
    source: str = ""               # whose protocol it is, for captions

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")


# Evaluation protocols by name: a study's `variants` and `EvaluationSettings.also` name them.
PROTOCOLS = {
    "plain": Protocol("", source="DC paper"),
    "dsa": Protocol(" with DSA", dsa=True, source="DSA paper"),
    # ECE1512 2022F Project B report (Shi & Chen), its §2.2.5: evaluation networks trained like its baselines, all
    # other hyperparameters unchanged; a fixed lr, so an MTT set's learned lr is not used
    "course": Protocol(", course protocol", epochs=20, schedule="cosine", lr=0.01,
                       source="the ECE1512 course report's, its §2.2.5"),
}


@dataclass(frozen=True)
class EvaluationSettings:
    """The distilled-set protocol (fresh network, SGD momentum 0.9, wd 5e-4, lr/10 at half, batch 256)."""

    n_models: int = 5            # networks trained per set; mean ± std over them
    architecture: str = "ConvNet"   # the evaluation network where a study names none (`networks.get_network`)
    epochs: int = 300            # epochs without augmentation (DC paper)
    dsa_epochs: int = 1000       # epochs with DSA augmentation (DSA paper)
    lr: float = 0.01
    batch_size: int = 256
    test_images: int | None = None   # None: the whole real test set
    floor_subsets: int = 3           # random-real floor: its networks are spread over this many random subsets
    curve_points: int = 0            # snapshots evaluated inside each distillation; a curve also has iteration 0
    curve_models: int = 1            # networks per curve point (iteration 0 and inside; the final point: n_models)
    also: tuple[str, ...] = ("course",)   # `PROTOCOLS` every study set and floor is evaluated under besides its own

    def __post_init__(self):
        unknown = [name for name in self.also if name not in PROTOCOLS]
        if unknown:
            raise ValueError(f"Unknown evaluation protocol(s) {', '.join(map(repr, unknown))} in also; allowed: "
                             f"{', '.join(PROTOCOLS)}")

    def protocols(self, variants: tuple[str, ...]) -> tuple[str, ...]:
        """A study's evaluation protocols: its own `variants`, then those of `also` it does not have."""
        return (*variants, *(name for name in self.also if name not in variants))


@dataclass(frozen=True)
class BaselineSettings:
    """01: ConvNet on the full training set (as the ECE1512 2022F Project B report, Shi & Chen: 20 epochs,
    batch 256, SGD with cosine annealing from lr 0.01)."""

    datasets: tuple[str, ...] = ("MNIST", "CIFAR10")
    architecture: str = "ConvNet"     # depth 3, width 128 (`networks.get_network`)
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
    variants: tuple[str, ...] = ("plain", "dsa")   # how 02 trains its evaluation networks (06, 07: always DSA)


@dataclass(frozen=True)
class TransferGrid:
    """03: which saved sets (method, dataset, ipc, init) train which architectures."""

    architectures: tuple[str, ...] = ("ConvNet", "LeNet", "AlexNet", "VGG11", "ResNet18", "MLP")
    datasets: tuple[str, ...] = ("MNIST", "CIFAR10")
    ipcs: tuple[int, ...] = (10,)
    inits: tuple[str, ...] = ("real", "noise")
    methods: tuple[str, ...] | None = None   # method keys (utils.distill.METHODS); None: every method

    def selects(self, method: str | None, dataset: str, ipc: int, init: str = "-") -> bool:
        """Whether this grid trains the set; `method` None: the random-real floor of (dataset, ipc)."""
        if dataset not in self.datasets or ipc not in self.ipcs:
            return False
        return method is None or ((self.methods is None or method in self.methods) and init in self.inits)


@dataclass(frozen=True)
class CrossArchSettings:
    """03: grids of saved sets x architectures, and one budget per architecture (so each column of the table has
    one protocol whichever grid a set comes from)."""

    grids: tuple[TransferGrid, ...] = (TransferGrid(),)
    epochs: int = 300
    n_models: int = 5
    test_images: int | None = None   # None: the whole real test set
    budgets: tuple[tuple[str, int, float | None], ...] = ()   # (architecture, epochs, lr or None) overriding the above

    def budget(self, architecture: str) -> tuple[int, float | None]:
        """Epochs and learning rate (None: the set's own, else the evaluation lr) `architecture` trains with."""
        found = {arch: (epochs, lr) for arch, epochs, lr in self.budgets}
        return found.get(architecture, (self.epochs, None))

    def union(self, name: str) -> tuple:
        """One field of every grid ('architectures', 'datasets', 'ipcs', 'inits'), joined in grid order."""
        return tuple(dict.fromkeys(value for grid in self.grids for value in getattr(grid, name)))

    @property
    def architectures(self) -> tuple[str, ...]:
        """Every architecture of any grid."""
        return self.union("architectures")

    def architectures_for(self, method: str | None, dataset: str, ipc: int, init: str = "-") -> tuple[str, ...]:
        """The architectures one set trains on: those of every grid that selects it (`TransferGrid.selects`)."""
        return tuple(dict.fromkeys(arch for grid in self.grids if grid.selects(method, dataset, ipc, init)
                                   for arch in grid.architectures))


@dataclass(frozen=True)
class NasSearch:
    """04: one architecture search: candidate networks trained on (a subset of) the full training set and on a
    distilled set, and the two rankings compared."""

    dataset: str = "CIFAR10"
    candidates: tuple[str, ...] = tuple(f"ConvNetD{d}W{w}" for d in (1, 2, 3, 4) for w in (32, 64, 128, 256))
    method: str = "gm"                # the distilled set searched on: <method>_<dataset>_ipc<ipc>_<init>.pt
    ipc: int = 10
    init: str = "real"
    full_epochs: int = 20             # full-data side: SGD, cosine annealing from lr 0.01, batch 256 (the course's)
    full_train_images: int | None = None   # None: the whole training set
    full_seeds: int = 2               # full-data rankings; their agreement is the ceiling any proxy can reach
    longer_seeds: int = 2             # full-data runs again at twice `full_epochs`: is the ranking stable?
    distilled_epochs: int = 300
    distilled_schedule: str = "step"  # 'step': the distilled-set protocol (lr / 10 at half); 'cosine': the course's
    n_models: int = 3                 # networks per candidate on the distilled set (issue 10: >= 3 outside headlines)
    course: bool = False              # the course report's own search: its numbers are set beside this one's

    def __post_init__(self):
        if not self.candidates:
            raise ValueError("NasSearch.candidates must name at least one network")
        if min(self.full_seeds, self.longer_seeds, self.n_models) < 1:
            raise ValueError(f"NasSearch full_seeds, longer_seeds and n_models must be >= 1, got {self.full_seeds}, "
                             f"{self.longer_seeds} and {self.n_models}")
        if self.distilled_schedule not in ("step", "cosine"):
            raise ValueError(f"NasSearch.distilled_schedule must be 'step' or 'cosine', got "
                             f"{self.distilled_schedule!r}")

    @property
    def name(self) -> str:
        """The search's name in file names and titles: its dataset."""
        return self.dataset


# The course report's search (ECE1512 2022F Project B, Shi & Chen): MNIST, ConvNet of depth 1, 2 and 4 (width 128),
# both sides trained like its baselines (20 epochs, cosine annealing from lr 0.01, batch 256) on its GM + DSA set.
COURSE_NAS = NasSearch(dataset="MNIST", candidates=("ConvNetD1", "ConvNetD2", "ConvNetD4"), full_epochs=20,
                       distilled_epochs=20, distilled_schedule="cosine", course=True)


@dataclass(frozen=True)
class NasSettings:
    """04: the architecture searches to run, one per dataset: the course report's, then the extension."""

    searches: tuple[NasSearch, ...] = (COURSE_NAS, NasSearch())


@dataclass(frozen=True)
class MhistSettings:
    """05: MHIST resolution, ConvNet depth (4 at 64 px, 5 at 128, 7 at 224) and width, sets and budgets."""

    im_size: int = 128
    depth: int = 5
    width: int = 128
    ipcs: tuple[int, ...] = (10, 50)
    inits: tuple[str, ...] = ("real", "noise")
    baseline_epochs: int = 20
    eval_epochs: int = 1000          # distilled-set evaluation, trained with DSA (flip and rotate suit histology)
    n_models: int = 5
    methods: dict[str, Any] = field(default_factory=dict)   # method key -> config or {ipc: config}

    @property
    def architecture(self) -> str:
        """The ConvNet of this depth and width, used for distillation, evaluation and the baseline."""
        return f"ConvNetD{self.depth}W{self.width}"

    def method_config(self, method: str, ipc: int, init: str | None = None):
        """The distillation configuration of `method` for MHIST, with this profile's ConvNet depth."""
        return replace(_method_config(self.methods, method, "MHIST", ipc, init), architecture=self.architecture)


@dataclass(frozen=True)
class Profile:
    """Every setting of one profile."""

    name: str
    precision: str = "auto"        # bf16 autocast where the hardware has it natively, else fp32
    compile: bool = True           # torch.compile the networks (utils/compiled.py) unless DD_COMPILE says otherwise
    threads: int | None = None     # torch's intra-op threads in a notebook; None: torch's default (every core)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    baseline: BaselineSettings = field(default_factory=BaselineSettings)
    study: DistillStudySettings = field(default_factory=DistillStudySettings)
    # method key -> one config, or dicts keyed by dataset, then init ('real' / 'noise'), then ipc, each level
    # optional (see `_method_config`)
    methods: dict[str, Any] = field(default_factory=dict)
    cross_arch: CrossArchSettings = field(default_factory=CrossArchSettings)
    nas: NasSettings = field(default_factory=NasSettings)
    mhist: MhistSettings = field(default_factory=MhistSettings)

    def method_config(self, method: str, dataset: str, ipc: int, init: str | None = None):
        """The distillation configuration of `method` (a key of `utils.distill.METHODS`) for `dataset` at `ipc`,
        started from `init`."""
        return _method_config(self.methods, method, dataset, ipc, init)


def _method_config(methods: dict[str, Any], method: str, dataset: str, ipc: int, init: str | None = None):
    """A method's config from a profile's `methods`: one config for everything, or dicts keyed by dataset name,
    by init ('real' / 'noise') and by ipc, in that order, each level optional, so a budget can go where it buys
    the most accuracy (`init` is needed only where the profile keys that method's config by init)."""
    if method not in methods:
        raise ValueError(f"Unknown method {method!r}; this profile configures {', '.join(methods)}")
    config = methods[method]
    for level, key in (("dataset", dataset), ("init", init)):
        if _level(config) != level:
            continue
        if key not in config:
            raise ValueError(f"No {method} configuration for {level}={key!r}; this profile has "
                             f"{', '.join(sorted(config))}")
        config = config[key]
    if isinstance(config, dict):
        if ipc not in config:
            raise ValueError(f"No {method} configuration for ipc={ipc}; this profile has ipc {sorted(config)}")
        return config[ipc]
    return config


def _level(config: Any) -> str | None:
    """Which key a level of a profile's `methods` entry has: 'init' (real / noise), 'dataset' (other names),
    else None (ipc numbers, or a config)."""
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        return None
    return "init" if set(config) <= set(INITS) else "dataset"


# The measurements behind every value below are in the README's *Profiles* section ("Why the budgets").
PAPER_MTT = {ipc: TrajectoryMatchingConfig.paper_settings(
    ipc, num_experts=100, expert_train_epochs=50,   # the authors' CIFAR-10 settings, 100 experts x 50 epochs
    batch_syn=250 if ipc == 50 else None)           # ipc 50: minibatches, so the unrolled student fits 40 GB
    for ipc in (1, 10, 50)}
PAPER_MHIST_MTT = {ipc: TrajectoryMatchingConfig.paper_settings(
    ipc, num_experts=100, expert_train_epochs=50,
    zca=False,        # a 128 px image has 49,152 values: its covariance does not fit (`utils.zca.ZCA_MAX_DIM`)
    lr_img=1000.0,    # the authors' image lr without ZCA
    batch_syn=20)     # 1.4 GiB per 128 px image over 30 unrolled steps: 20 images per step, about 27 GiB
    for ipc in (10, 50)}

PAPER = Profile(
    name="paper",
    methods={"gm": GradientMatchingConfig(), "dm": DistributionMatchingConfig(), "mtt": PAPER_MTT},   # published
    mhist=MhistSettings(methods={"gm": GradientMatchingConfig(), "dm": DistributionMatchingConfig(),
                                 "mtt": PAPER_MHIST_MTT}),
)

# About 5-6 s an MTT iteration on 2 cores; no ZCA, so the authors' no-ZCA image lr 1000 (100 barely moves CIFAR-10's
# images). Experts of 16 epochs (2 x 145 s on CIFAR-10, 2 x 175 s on MNIST); sets from noise match 2-epoch segments
# from the first epochs, where a noise set learns its coarse content (MNIST: 81.6 %; from later segments 60.3 %), and
# sets from real images, which have that content already, 1-epoch segments starting anywhere up to epoch 15 (MNIST
# 95.4 against 93.5 %, CIFAR-10 46.2 against 39.2 %; benchmarks/README, issue 26, `benchmarks/mtt_variants.py`).
CPU_MTT = TrajectoryMatchingConfig(iterations=30, syn_steps=10, batch_syn=50, expert_epochs=2, max_start_epoch=2,
                                   lr_img=1000.0, lr_teacher=0.01, num_experts=2, expert_train_epochs=16,
                                   expert_train_images=10000)
CPU_MTT_REAL = replace(CPU_MTT, expert_epochs=1, max_start_epoch=15)


def cpu_gm(iterations: int) -> GradientMatchingConfig:
    """The `cpu` profile's gradient matching at `iterations`: loops (10, 5, 5), real batch 64."""
    return GradientMatchingConfig(iterations=iterations, real_batch=64, loops=((10, 5, 5),))

CPU = Profile(
    name="cpu",
    # the published protocol (300 DSA epochs, 5 networks, a halfway curve point) is half of the two hours
    evaluation=EvaluationSettings(n_models=5, epochs=300, dsa_epochs=300, curve_points=1, curve_models=1),
    baseline=BaselineSettings(epochs=2),   # a full-data epoch is the costliest unit of 01
    study=DistillStudySettings(ipcs=(10,), variants=("dsa",)),   # ipc 10 is the course report's; DSA only fits
    methods={
        # a GM iteration with loops (10, 5, 5) at real batch 64 costs 7-10 s; the curves of 15 iterations asked for
        # about 19 (CIFAR-10 real) and 47 (MNIST noise), and those of the run at digest e7f8f2cde6bfb219 (30 / 20)
        # for about 47 on CIFAR-10 from noise (+5 min) and 250 on MNIST from noise (+40 min, more than the 3 h allow)
        "gm": {"MNIST": cpu_gm(30), "CIFAR10": {"real": cpu_gm(20), "noise": cpu_gm(50)}},
        # DM gains about 4 points per doubling on CIFAR-10 from noise, none needed on MNIST
        "dm": {"MNIST": DistributionMatchingConfig(iterations=400, real_batch=64, checkpoint_every=100),
               "CIFAR10": DistributionMatchingConfig(iterations=1500, real_batch=64, checkpoint_every=100)},
        # MNIST's 30-iteration curve from noise asked for about 58; a MNIST iteration costs 2.9 s. From real images
        # MNIST takes image lr 100: at 1000 they moved 28 % (rms) in 30 iterations, a third of their pixels left the
        # valid range and the set fell below its own starting images (91.7 against 93.25 %, one network)
        "mtt": {"MNIST": {"real": replace(CPU_MTT_REAL, iterations=60, lr_img=100.0),
                          "noise": replace(CPU_MTT, iterations=60)},
                "CIFAR10": {"real": CPU_MTT_REAL, "noise": CPU_MTT}},
    },
    # AlexNet is unstable above lr 0.01; VGG11 and ResNet18 cost 0.9 and 1.2 s an epoch; ResNet18 trains at 0.05
    # the course report's rows (GM + DSA sets, ConvNet -> LeNet) and every method's CIFAR-10 real set on six networks
    cross_arch=CrossArchSettings(grids=(TransferGrid(architectures=("ConvNet", "LeNet"), methods=("gm",)),
                                        TransferGrid(datasets=("CIFAR10",), inits=("real",))),
                                 epochs=300, n_models=3, test_images=1000,
                                 budgets=(("AlexNet", 80, 0.01), ("VGG11", 30, None), ("ResNet18", 40, 0.05))),
    # full data: 2 epochs on 10,000 images (a 60k-image MNIST epoch costs about 2 min), one seed again at 4 epochs;
    # 3 networks per candidate on the distilled set (issue 10: >= 3 outside the headline rows)
    nas=NasSettings(searches=(
        replace(COURSE_NAS, full_epochs=2, full_train_images=10000, longer_seeds=1),
        NasSearch(candidates=tuple(f"ConvNetD{d}W{w}" for d in (1, 2, 3, 4) for w in (32, 128)), full_epochs=2,
                  full_train_images=10000, longer_seeds=1))),
    # 64 px (the offline copy's resolution) with a narrow depth-4 ConvNet; longer budgets did not widen the gap
    mhist=MhistSettings(im_size=64, depth=4, width=32, ipcs=(10, 50), inits=("real",), baseline_epochs=15,
                        eval_epochs=300, n_models=5,
                        methods={"gm": GradientMatchingConfig(iterations=20, real_batch=32,
                                                              loops=((10, 5, 2), (50, 5, 1))),
                                 "dm": DistributionMatchingConfig(iterations=300, real_batch=64),
                                 "mtt": TrajectoryMatchingConfig(iterations=50, syn_steps=10, batch_syn=20,
                                                                 max_start_epoch=2, lr_img=1000.0, lr_teacher=0.01,
                                                                 num_experts=1)}),
)

SMOKE_NET = "ConvNetW32"
SMOKE = Profile(   # seconds per notebook: the smallest sizes that still run every code path
    name="smoke",
    compile=False,   # compiling its tiny shapes took most of a fresh run (9 min on 2 cores); eager runs in seconds
    threads=1,       # its ops are too small to share: a second thread cost more CPU than it saved (benchmarks/README)
    # a 32-wide ConvNet (the same code path as the 128-wide one): its eager autograd was most of a first run
    evaluation=EvaluationSettings(n_models=2, architecture=SMOKE_NET, epochs=2, dsa_epochs=2, test_images=200,
                                  curve_points=1),
    baseline=BaselineSettings(architecture=SMOKE_NET, epochs=2, train_images=512),
    study=DistillStudySettings(ipcs=(1,), variants=("dsa",)),   # as cpu: the committed run's path
    methods={"gm": GradientMatchingConfig(iterations=2, real_batch=8, loops=((1, 1, 1), (2, 2, 1)), checkpoint_every=1,
                                          architecture=SMOKE_NET),
             "dm": DistributionMatchingConfig(iterations=2, real_batch=8, checkpoint_every=1, architecture=SMOKE_NET),
             "mtt": TrajectoryMatchingConfig(iterations=2, syn_steps=2, expert_epochs=1, max_start_epoch=1,
                                             lr_teacher=0.01, num_experts=1, expert_train_images=256,
                                             checkpoint_every=1, architecture=SMOKE_NET)},
    cross_arch=CrossArchSettings(grids=(TransferGrid(architectures=("ConvNet", "LeNet"), ipcs=(1,), methods=("gm",)),
                                        TransferGrid(architectures=("ConvNet", "MLP"), datasets=("CIFAR10",),
                                                     ipcs=(1,), inits=("real",))),
                                 epochs=2, n_models=2),
    nas=NasSettings(searches=(
        replace(COURSE_NAS, ipc=1, full_epochs=1, full_train_images=128, longer_seeds=1, distilled_epochs=2,
                n_models=1),
        NasSearch(ipc=1, candidates=("ConvNetD1W32", "ConvNetD2W32"), full_epochs=1, full_train_images=128,
                  longer_seeds=1, distilled_epochs=2, n_models=1))),
    mhist=MhistSettings(im_size=32, depth=3, width=32, ipcs=(1,), inits=("real",), baseline_epochs=1, eval_epochs=2,
                        n_models=2,
                        methods={"gm": GradientMatchingConfig(iterations=2, real_batch=8, loops=((1, 1, 1),)),
                                 "dm": DistributionMatchingConfig(iterations=2, real_batch=8),
                                 "mtt": TrajectoryMatchingConfig(iterations=2, syn_steps=2, expert_epochs=1,
                                                                 max_start_epoch=1, lr_teacher=0.01, num_experts=1,
                                                                 expert_train_images=256)}),
)

PROFILES = {p.name: p for p in (SMOKE, CPU, PAPER)}


def get_profile(name: str) -> Profile:
    """The profile called `name` (smoke, cpu or paper)."""
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; allowed: {', '.join(PROFILES)}")
    return PROFILES[name]


__all__ = ["PROFILES", "PROTOCOLS", "Profile", "Protocol", "get_profile"]
