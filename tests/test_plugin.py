"""A fourth method registered from inside a test runs through a smoke study and the dry run: everything the
studies and the dry run know about a method comes from its `Method` record and the profile's budgets."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import pytest
import torch

import utils.dry_run as dry_run
from utility import RunContext
from utils.data import Dataset
from utils.distill import METHODS, DistillTask, find_synthetic
from utils.distill.base import SyntheticImages
from utils.distill.method import Method, TrainingRuns
from utils.notebook import start
from utils.profiles import SMOKE
from utils.study import distillation_study
from utils.synthetic import SyntheticSet

CPU = torch.device("cpu")


@dataclass(frozen=True)
class MeanMatchingConfig:
    """The toy method's settings."""

    iterations: int = 2
    checkpoint_every: int = 1
    architecture: str = "ConvNet"
    dsa: bool = False
    lr_img: float = 0.5


class MeanMatching(SyntheticImages):
    """A toy distiller: pulls every synthetic image towards the mean real image of its class (`means`, an input)."""

    def __init__(self, data: Dataset, task: DistillTask, config: MeanMatchingConfig, context: RunContext,
                 means: torch.Tensor):
        super().__init__(data, task, config, context, lr_img=config.lr_img, momentum=0.0)
        self.means = means.to(self.device)

    def step(self) -> float:
        loss = ((self.images - self.means[self.labels]) ** 2).mean()
        self.update_images(loss)
        return loss.item()


def class_means(data: Dataset, config: MeanMatchingConfig, context: RunContext) -> dict[str, torch.Tensor]:
    return {"means": torch.stack([data.x_train[idx].mean(0) for idx in data.class_indices()])}


def zero_means(data: Dataset, config: MeanMatchingConfig) -> dict[str, torch.Tensor]:
    return {"means": torch.zeros(data.num_classes, data.channels, *data.im_size)}


def needs_a_convnet(config: MeanMatchingConfig, ipc: int, network: torch.nn.Module, image_values: int) -> None:
    if not config.architecture.startswith("ConvNet"):
        raise ValueError(f"architecture={config.architecture!r}: the toy method wants a ConvNet")


def warm_up(config: MeanMatchingConfig) -> tuple[TrainingRuns, ...]:
    return (TrainingRuns("warm-up", "1 x 1 epochs", runs=1, epochs=1, images=512),)


TOY = Method(key="toy", label="Mean matching (toy)", config=MeanMatchingConfig, distiller=MeanMatching,
             notebook="09_toy", check=needs_a_convnet, inputs=class_means, stand_ins=zero_means, training=warm_up)
TOY_PROFILE = replace(SMOKE, study=replace(SMOKE.study, datasets=("MNIST",)),
                      methods={**SMOKE.methods, "toy": MeanMatchingConfig()},
                      mhist=replace(SMOKE.mhist, methods={**SMOKE.mhist.methods, "toy": MeanMatchingConfig()}))


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", TOY)


def test_a_registered_method_runs_through_a_smoke_study(registered, tmp_path, tmp_cache, data_root):
    run = start("09_toy", "smoke", str(data_root), str(tmp_path), 0, "cpu")
    run.profile = TOY_PROFILE
    table = distillation_study(run, "toy", prefix="09_toy")
    assert table["method"].tolist() == ["random real", "Mean matching (toy)", "Mean matching (toy)"]
    assert table["accuracy with DSA (%)"].notna().all() and "accuracy (%)" not in table.columns, \
        "evaluated like every method: DSA only"
    assert table["accuracy, course protocol (%)"].notna().all(), "every set and the floor, the course's way too"
    curve = pd.read_csv(tmp_path / "tables" / "09_toy_curves.csv")
    assert curve.groupby("init")["iteration"].apply(list).to_dict() == {"noise": [0, 1, 2], "real": [0, 1, 2]}
    saved = find_synthetic(tmp_path)
    assert [p.name for p in saved] == ["toy_MNIST_ipc1_noise.pt", "toy_MNIST_ipc1_real.pt"]
    distilled = SyntheticSet.load(saved[0])
    assert distilled.config["method"] == "toy" and len(distilled.config["losses"]) == 2
    assert distilled.config["losses"][1] < distilled.config["losses"][0], "the images moved towards the means"
    for figure in ("09_toy_MNIST_ipc1_noise_images", "09_toy_MNIST_loss", "09_toy_MNIST_accuracy_vs_iterations"):
        assert (tmp_path / "figures" / f"{figure}.png").is_file()


def test_a_registered_method_runs_through_the_dry_run(registered):
    table = dry_run.dry_run(TOY_PROFILE, CPU, notebooks=("09",))
    assert (table["check"] == "ok").all(), table.to_string()
    units = table["unit"].tolist()
    assert {"toy MNIST ipc1 real", "toy MNIST ipc1 noise", "evaluate toy MNIST ipc1 real with DSA (2 epochs)"} <= set(
        units)
    assert units.count("toy warm-up MNIST (1 x 1 epochs)") == 1, "shared training is listed once per dataset"
    measured = dry_run.dry_run(TOY_PROFILE, CPU, measure=True, notebooks=("09",), match="^toy MNIST")
    assert len(measured) == 2 and (measured["seconds per step"] > 0).all()
    mhist = dry_run.dry_run(TOY_PROFILE, CPU, notebooks=("05",), match="^toy")
    assert set(mhist["unit"]) == {"toy MHIST ipc1 real", "toy warm-up MHIST (1 x 1 epochs)"}


def test_a_registered_methods_own_check_fails_the_dry_run(registered):
    broken = replace(TOY_PROFILE, methods={**TOY_PROFILE.methods, "toy": MeanMatchingConfig(architecture="MLP")})
    table = dry_run.dry_run(broken, CPU, notebooks=("09",), match="^toy MNIST")
    assert table["check"].str.contains("FAILS: toy MNIST ipc1 .*the toy method wants a ConvNet").all()
