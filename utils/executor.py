"""Where independent units of work run: in this process (`LocalExecutor`, the default) or on a Ray cluster
(`RayExecutor`).

A unit is one function call whose result depends only on its arguments (every unit seeds itself): one
distillation, one expert trajectory, one evaluation. Code that loops over units submits them to a pool and
handles each result on the driver in a `done` callback (which writes `results/` and the cache, and may submit
follow-up units); leaving the pool waits for every unit:

    with executor.pool("gm study", unit="unit") as pool:
        pool.submit(fn, *args, done=callback, **kwargs)

`LocalExecutor` runs the units one after the other in submission order, exactly as a plain loop would. On Ray
each unit is a task, one GPU when the run's device is CUDA, else one CPU; a unit whose worker or node is lost
(or whose result was lost with its node) is submitted again by the driver, up to `MAX_RETRIES` times, with one
log line each time. A dataset argument loaded by `NotebookRun.load` travels as its recipe (name, data root,
subsets) and is loaded again from the data root on the worker's node, so the data root must be visible to
every node; any other dataset travels through Ray's object store.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from utils.data import Dataset, load_dataset, stratified_subset
from utils.progress import progress

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3
LOG = logging.getLogger(__name__)
# Driver environment a worker needs to find the same cache and behave the same way.
_FORWARDED_ENV = ("DD_CACHE_DIR", "DD_COMPILE", "DD_DATA_ROOT", "CUBLAS_WORKSPACE_CONFIG")


@dataclass(frozen=True)
class DataRecipe:
    """How to rebuild a dataset on any node: load `name` from `root`, then apply `steps` in order
    (`("test", n, seed)`: a stratified test subset of n images; `("zca",)`: ZCA whitening)."""

    name: str
    root: str | None
    im_size: int | None = None
    steps: tuple[tuple, ...] = ()

    def then(self, *step) -> DataRecipe:
        """This recipe followed by one more step."""
        return DataRecipe(self.name, self.root, self.im_size, (*self.steps, tuple(step)))

    def build(self) -> Dataset:
        """Load and transform the dataset (memoised per process: a worker loads each dataset once)."""
        if self not in _LOADED:
            data = load_dataset(self.name, self.root, self.im_size)
            for step in self.steps:
                if step[0] == "test":
                    data.x_test, data.y_test = stratified_subset(data.x_test, data.y_test, step[1], step[2])
                elif step[0] == "zca":
                    from utils.distill.experts import zca_whiten

                    data = zca_whiten(data)
                else:
                    raise ValueError(f"unknown data recipe step {step!r}; allowed: ('test', n, seed), ('zca',)")
            if len(_LOADED) >= 2:
                _LOADED.popitem(last=False)
            _LOADED[self] = data
        return _LOADED[self]


_LOADED: OrderedDict[DataRecipe, Dataset] = OrderedDict()


def set_recipe(data: Dataset, recipe: DataRecipe) -> Dataset:
    """Record how `data` can be rebuilt from the data root; returns `data`."""
    data._recipe = recipe
    return data


def derive(derived: Dataset, source: Dataset, *step) -> Dataset:
    """Record that `derived` is `source` followed by `step` (when `source` has a recipe); returns `derived`."""
    recipe = recipe_of(source)
    return derived if recipe is None else set_recipe(derived, recipe.then(*step))


def recipe_of(data: Dataset) -> DataRecipe | None:
    """The recipe recorded for `data` (None for a dataset built in memory)."""
    return getattr(data, "_recipe", None)


class Pool:
    """Units submitted together; one progress bar counts them as they finish."""

    def __init__(self, desc: str, unit: str):
        self.bar = progress(desc=desc, total=0, unit=unit)

    def submit(self, fn: Callable, *args, done: Callable[[Any], None] | None = None, **kwargs) -> None:
        """Run `fn(*args, **kwargs)` as one unit; `done(result)` is called on the driver when it finishes."""
        raise NotImplementedError

    def join(self) -> None:
        """Wait for every submitted unit (including those submitted by `done` callbacks)."""
        raise NotImplementedError

    def _count(self) -> None:
        self.bar.total += 1
        self.bar.refresh()

    def _finished(self, result: Any, done: Callable[[Any], None] | None) -> None:
        if done is not None:
            done(result)
        self.bar.update(1)


class Executor:
    """Runs pools of units."""

    name = "local"

    @contextmanager
    def pool(self, desc: str, unit: str = "unit") -> Iterator[Pool]:
        """A pool whose units have all finished (and been handled) when the block ends."""
        pool = self._make_pool(desc, unit)
        try:
            yield pool
            pool.join()
        finally:
            pool.bar.close()

    def _make_pool(self, desc: str, unit: str) -> Pool:
        raise NotImplementedError


class _LocalPool(Pool):
    """Units run in submission order, except that units submitted by a `done` callback run next (depth first:
    a set is evaluated right after it is distilled, as a plain loop would)."""

    def __init__(self, desc: str, unit: str):
        super().__init__(desc, unit)
        self.queue: deque = deque()
        self.follow_ups: list | None = None

    def submit(self, fn, *args, done=None, **kwargs) -> None:
        (self.queue if self.follow_ups is None else self.follow_ups).append((fn, args, kwargs, done))
        self._count()

    def join(self) -> None:
        while self.queue:
            fn, args, kwargs, done = self.queue.popleft()
            result = fn(*args, **kwargs)
            self.follow_ups = []
            try:
                self._finished(result, done)
                self.queue.extendleft(reversed(self.follow_ups))
            finally:
                self.follow_ups = None


class LocalExecutor(Executor):
    """Every unit in this process, one after the other, in submission order."""

    def _make_pool(self, desc: str, unit: str) -> Pool:
        return _LocalPool(desc, unit)


def _run_unit(env: dict[str, str], fn: Callable, *args, **kwargs) -> Any:
    """A unit on a Ray worker: the driver's environment, datasets rebuilt from their recipes, then `fn`."""
    os.environ.update(env)
    args = [a.build() if isinstance(a, DataRecipe) else a for a in args]
    kwargs = {k: v.build() if isinstance(v, DataRecipe) else v for k, v in kwargs.items()}
    return fn(*args, **kwargs)


@dataclass
class _Task:
    """One submitted unit, as the driver keeps it until its result is handled: what to run and how often it ran."""

    number: int
    fn: Callable
    args: tuple
    kwargs: dict
    done: Callable[[Any], None] | None
    attempts: int = 0


class _RayPool(Pool):
    def __init__(self, executor: RayExecutor, desc: str, unit: str):
        super().__init__(desc, unit)
        self.executor, self.desc, self.pending, self.submitted = executor, desc, {}, 0

    def submit(self, fn, *args, done=None, **kwargs) -> None:
        portable = self.executor.portable
        self.submitted += 1
        self._launch(_Task(self.submitted, fn, tuple(map(portable, args)),
                           {k: portable(v) for k, v in kwargs.items()}, done))
        self._count()

    def _launch(self, task: _Task) -> None:
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        task.attempts += 1
        self.pending[self.executor.task.remote(env, task.fn, *task.args, **task.kwargs)] = task

    def join(self) -> None:
        import ray

        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            for ref in ready:
                task = self.pending.pop(ref)
                try:
                    result = ray.get(ref)
                except _lost_unit_errors() as err:
                    self._retry(task, err)
                    continue
                self._finished(result, task.done)

    def _retry(self, task: _Task, err: Exception) -> None:
        """Submit a unit whose worker, node or result was lost again, saying so; after `max_retries`, raise."""
        what = f"{self.desc}: unit {task.number} ({task.fn.__name__})"
        if task.attempts > self.executor.max_retries:
            raise RuntimeError(f"{what} was lost {task.attempts} times ({type(err).__name__}); giving up") from err
        LOG.warning("%s lost its worker or node (%s); retrying it, attempt %d of %d", what, type(err).__name__,
                    task.attempts + 1, self.executor.max_retries + 1)
        self._launch(task)


def _lost_unit_errors() -> tuple[type[Exception], ...]:
    """Ray's errors for a unit that did not fail itself but lost its worker, its node or its result."""
    from ray import exceptions

    return exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError


class RayExecutor(Executor):
    """Every unit a Ray task: on the cluster at `address` (env `DD_RAY_ADDRESS`), else on a local Ray instance."""

    name = "ray"

    def __init__(self, device: torch.device, address: str | None = None, max_retries: int = MAX_RETRIES):
        try:
            import ray
        except ImportError as err:
            raise ImportError("executor='ray' needs Ray: pip install -r requirements-ray.txt") from err
        if not ray.is_initialized():
            address = address or os.environ.get("DD_RAY_ADDRESS") or None
            ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=False)
        resources = {"num_gpus": 1} if torch.device(device).type == "cuda" else {"num_cpus": 1}
        self.task = ray.remote(max_retries=0, **resources)(_run_unit)   # the pool retries, and logs it
        self.max_retries = max_retries
        self._shared: dict[int, tuple[Dataset, Any]] = {}

    def portable(self, value: Any) -> Any:
        """What a unit's argument travels as: a dataset as its recipe (else one object-store copy per dataset),
        an object with a `portable()` method as its result, anything else as it is."""
        if isinstance(value, Dataset):
            recipe = recipe_of(value)
            if recipe is not None:
                return recipe
            if id(value) not in self._shared:
                import ray

                self._shared[id(value)] = (value, ray.put(value))
            return self._shared[id(value)][1]
        if hasattr(value, "portable"):
            return value.portable()
        return value

    def _make_pool(self, desc: str, unit: str) -> Pool:
        return _RayPool(self, desc, unit)


LOCAL = LocalExecutor()


def get_executor(name: str | None, device: torch.device) -> Executor:
    """The executor called `name` ('local' or 'ray'; None: env `DD_EXECUTOR`, else 'local')."""
    name = name or os.environ.get("DD_EXECUTOR") or "local"
    if name not in EXECUTORS:
        raise ValueError(f"Unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
    return LOCAL if name == "local" else RayExecutor(device)
