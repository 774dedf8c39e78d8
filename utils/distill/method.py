"""The record each distillation method exports: everything the studies, the dry run and the saved-set tools know
about a method comes from it (`utils.distill.METHODS` maps each key to its record)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from utility import RunContext
from utils.data import Dataset

PREPARATION_SECONDS = "training time (s)"


@dataclass(frozen=True)
class TrainingRuns:
    """Networks a method trains before it distils (MTT's expert buffers), as the dry run lists them (`<key> <name>
    <dataset> (<detail>)`, once per dataset however many sets share them)."""

    name: str
    detail: str
    runs: int
    epochs: int
    images: int | None          # training images; None: the whole training set
    batch_size: int = 256
    dsa: bool = False


@dataclass(frozen=True)
class TimedIteration:
    """One configuration the dry run times an iteration of, and the weights with which its seconds and peak memory
    enter the projection of the real iteration (the projection never falls below the first one measured)."""

    config: Any
    time_weight: float = 1.0
    memory_weight: float = 1.0


def no_check(config: Any, ipc: int, network: nn.Module, image_values: int) -> None:
    """A method whose configurations need no check beyond the network building at the dataset's shapes."""


def no_inputs(data: Dataset, config: Any, context: RunContext) -> dict[str, Any]:
    """A distiller that needs nothing but the data, the task and its configuration."""
    return {}


def no_stand_ins(data: Dataset, config: Any) -> dict[str, Any]:
    """A distiller that needs no stand-in inputs in the dry run."""
    return {}


def no_training(config: Any) -> tuple[TrainingRuns, ...]:
    """A method that trains nothing before it distils."""
    return ()


def timed_as_is(config: Any, ipc: int) -> tuple[TimedIteration, ...]:
    """An iteration timed as it runs."""
    return (TimedIteration(config),)


@dataclass(frozen=True)
class Method:
    """A distillation method: its key (the saved-set prefix), label, configuration dataclass, distiller class
    (`distiller(data, task, config, context, **inputs(data, config, context))`), the notebook that distils its
    sets (its name, which also prefixes its tables and figures), how that notebook evaluates them, and what the dry
    run needs to check and time it."""

    key: str
    label: str
    config: type
    distiller: Callable[..., Any]
    notebook: str                                 # e.g. "02_gradient_matching"
    variants: tuple[str, ...] | None = ("dsa",)   # evaluation variants of its study; None: the profile's
    check: Callable[[Any, int, nn.Module, int], None] = no_check   # raises what the real run would raise
    inputs: Callable[[Dataset, Any, RunContext], dict[str, Any]] = no_inputs   # extra distiller arguments
    stand_ins: Callable[[Dataset, Any], dict[str, Any]] = no_stand_ins   # the dry run's stand-ins for `inputs`
    training: Callable[[Any], tuple[TrainingRuns, ...]] = no_training   # trained before distilling
    # the table (per dataset, column `PREPARATION_SECONDS`) holding the compute time of what `training` trains
    preparation_table: str | None = None
    timing: Callable[[Any, int], tuple[TimedIteration, ...]] = timed_as_is   # how the dry run times an iteration

    @property
    def number(self) -> str:
        """The notebook's number, as `--only` and the dry run name it ("02")."""
        return self.notebook[:2]
