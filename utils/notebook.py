"""One call that sets a notebook up from its papermill parameters: profile, device, data, result writer."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from utility import (
    Augment,
    RunContext,
    SyntheticEvaluation,
    configure_reproducibility,
    evaluate_training_set,
    get_device,
    resolve_precision,
    set_seed,
)
from utils import compiled
from utils.data import Dataset, load_dataset, stratified_subset
from utils.executor import LOCAL, Executor, get_executor
from utils.ledger import Ledger, machine_label, open_ledger
from utils.parameters import check_parameters
from utils.paths import results_dir as resolve_results_dir
from utils.profiles import Profile, get_profile
from utils.recipe import DataRecipe, set_recipe
from utils.results import ResultWriter


@dataclass
class NotebookRun:
    """Everything a notebook needs after its parameters cell."""

    profile: Profile
    context: RunContext
    data_root: str | None
    writer: ResultWriter | None
    executor: Executor = LOCAL

    @property
    def seed(self) -> int:
        """The run's seed (`context.seed`)."""
        return self.context.seed

    @property
    def device(self) -> torch.device:
        """The run's device (`context.device`)."""
        return self.context.device

    @property
    def precision(self) -> str:
        """The run's resolved precision (`context.precision`)."""
        return self.context.precision

    def load(self, name: str, im_size: int | None = None) -> Dataset:
        """Load a dataset; the profile may cap the test set size (smoke)."""
        data = load_dataset(name, self.data_root, im_size)
        recipe = DataRecipe(name, None if self.data_root is None else str(self.data_root), im_size)
        limit = self.profile.evaluation.test_images
        if limit is not None and limit < len(data.x_test):
            data.x_test, data.y_test = stratified_subset(data.x_test, data.y_test, limit, self.seed)
            recipe = recipe.then("test", limit, self.seed)
        return set_recipe(data, recipe)

    def for_worker(self) -> NotebookRun:
        """What a unit on another process needs of this run: no result writer, the local executor."""
        return replace(self, writer=None, executor=LOCAL)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, data: Dataset, *, architecture: str | None = None,
                 augment: Augment | None = None, epochs: int | None = None, n_models: int | None = None,
                 lr: float | None = None, schedule: str = "step") -> SyntheticEvaluation:
        """The distilled-set evaluation protocol with this profile's budget (epochs: DSA or plain; network: the
        profile's unless `architecture` names one) and lr `schedule` (`utility.SCHEDULES`)."""
        settings = self.profile.evaluation
        default_epochs = settings.dsa_epochs if augment is not None else settings.epochs
        return evaluate_training_set(
            x, y, (data.x_test, data.y_test), channels=data.channels, num_classes=data.num_classes,
            im_size=data.im_size, architecture=architecture or settings.architecture,
            n_models=n_models or settings.n_models, epochs=epochs or default_epochs, lr=lr or settings.lr,
            batch_size=settings.batch_size, schedule=schedule, augment=augment,
            seed=self.seed, device=self.device, precision=self.precision)


def start(notebook: str, profile: str, data_root: str | None, results_dir: str | None, seed: int,
          device: str, executor: str | None = None) -> NotebookRun:
    """Resolve a notebook's parameters, checked and coerced first (`utils.parameters`); a smoke run never writes
    to the committed `results/`; the results folder's unit records (`utils.ledger`) are opened. `executor`: where
    independent units run ('local' or 'ray'; None: env `DD_EXECUTOR`, else 'local'; see `utils.executor`)."""
    checked = check_parameters(profile, data_root, results_dir, seed, device, executor)
    profile, data_root, results_dir, seed = checked.profile, checked.data_root, checked.results_dir, checked.seed
    device, executor = checked.device, checked.executor
    settings = get_profile(profile)
    compiled.follow_profile(settings.compile)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch_device = get_device(device)
    set_seed(seed)
    out = resolve_results_dir(profile, results_dir)
    precision = resolve_precision(settings.precision, torch_device)
    configure_reproducibility(torch_device, precision)
    writer = ResultWriter(out, notebook=notebook, profile=profile, seed=seed, device=str(torch_device),
                          details={"precision": precision, "hardware": machine_label(torch_device)})
    runner = get_executor(executor, torch_device)
    open_ledger(Ledger(out, notebook, profile, seed, machine_label(torch_device), precision))
    print(f"{notebook}: profile={profile} device={torch_device} precision={precision} seed={seed} results={out} "
          f"executor={runner.name}")
    return NotebookRun(settings, RunContext(seed, torch_device, precision), data_root, writer, runner)
