"""Where independent units of work run: in this process (`LocalExecutor`, the default) or on a Ray cluster
(`RayExecutor`).

A unit is one function call whose result depends only on its arguments (every unit seeds itself): one
distillation, one expert trajectory, one evaluation. Code that loops over units submits them to a pool, keeps
the handles, and reads their results in the order it needs them; the driver then writes `results/` and the
cache. Leaving the pool waits for every unit:

    with executor.pool("gm study", unit="unit") as pool:
        handles = [pool.submit(fn, item) for item in items]
        results = [handle.result() for handle in handles]

`LocalExecutor` runs each unit when it is submitted, exactly as a plain loop would. On Ray each unit is a task,
one GPU when the run's device is CUDA, else one CPU, and every submitted unit runs while the driver waits for the
first result; a unit whose worker or node is lost (or whose result was lost with its node) is submitted again by
the driver, up to `MAX_RETRIES` times, with one log line each time. A dataset argument loaded by
`NotebookRun.load` travels as its recipe (name, data root, subsets) and is loaded again from the data root on the
worker's node, so the data root must be visible to every node; any other dataset travels through Ray's object
store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from utils.data import Dataset
from utils.ledger import BudgetExhausted, check_budget
from utils.progress import progress
from utils.recipe import DataRecipe, recipe_of

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3
LOG = logging.getLogger(__name__)
# Driver environment a worker needs to find the same cache and behave the same way.
_FORWARDED_ENV = ("DD_CACHE_DIR", "DD_COMPILE", "DD_DATA_ROOT", "CUBLAS_WORKSPACE_CONFIG")


class Handle:
    """A submitted unit: `result()` waits for it (the first call counts it on its pool's progress bar)."""

    def __init__(self, pool: Pool, fetch: Callable[[], Any]):
        self.pool, self.fetch = pool, fetch
        self.finished, self.value = False, None
        self.on_result: list[Callable[[Any], None]] = []

    def result(self) -> Any:
        """The unit's return value (an exception raised by the unit is raised here)."""
        if not self.finished:
            self.value, self.finished = self.fetch(), True
            self.pool.bar.update(1)
            for write in self.on_result:
                write(self.value)
        return self.value

    def when_done(self, write: Callable[[Any], None]) -> Handle:
        """Call `write(value)` on the driver as soon as the unit's result is here (at once where it already is),
        so that a finished unit is recorded even if the run stops before its result is used."""
        if self.finished:
            write(self.value)
            return self
        self.on_result.append(write)
        if self.pool.eager:
            self.result()
        return self


class Pool:
    """Units submitted together; one progress bar counts them as they finish."""

    eager = False   # whether a unit's result is there as soon as it is submitted

    def __init__(self, desc: str, unit: str):
        self.bar = progress(desc=desc, total=0, unit=unit)
        self.handles: list[Handle] = []

    def submit(self, fn: Callable, *args, **kwargs) -> Handle:
        """Run `fn(*args, **kwargs)` as one unit; its handle gives the result. A unit that would start after the
        run's budget raises `BudgetExhausted` instead."""
        check_budget()
        handle = Handle(self, self._start(fn, *args, **kwargs))
        self.handles.append(handle)
        self.bar.total += 1
        self.bar.refresh()
        return handle

    def _start(self, fn: Callable, *args, **kwargs) -> Callable[[], Any]:
        """Start one unit; returns how to fetch its result."""
        raise NotImplementedError

    def join(self) -> None:
        """Wait for every submitted unit, in submission order."""
        for handle in self.handles:
            handle.result()

    def collect_finished(self) -> None:
        """Fetch (and so record) the result of every unit that has finished, without waiting for the others."""
        for handle in self.handles:
            if self._done(handle):
                handle.result()

    def _done(self, handle: Handle) -> bool:
        return handle.finished


class Executor:
    """Runs pools of units."""

    name = "local"

    @contextmanager
    def pool(self, desc: str, unit: str = "unit") -> Iterator[Pool]:
        """A pool whose units have all finished when the block ends."""
        pool = self._make_pool(desc, unit)
        try:
            yield pool
            pool.join()
        except BudgetExhausted:
            pool.collect_finished()
            raise
        finally:
            pool.bar.close()

    def _make_pool(self, desc: str, unit: str) -> Pool:
        raise NotImplementedError


class _LocalPool(Pool):
    """Each unit runs in this process as it is submitted."""

    eager = True

    def _done(self, handle: Handle) -> bool:
        return True

    def _start(self, fn, *args, **kwargs) -> Callable[[], Any]:
        value = fn(*args, **kwargs)
        return lambda: value


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
class _RayUnit:
    """One submitted Ray unit, as the driver keeps it until its result is fetched: what to run, its task's
    reference and how often it was launched."""

    number: int
    fn: Callable
    args: tuple
    kwargs: dict
    attempts: int = 0
    ref: Any = None


class _RayPool(Pool):
    def __init__(self, executor: RayExecutor, desc: str, unit: str):
        super().__init__(desc, unit)
        self.executor, self.desc, self.submitted = executor, desc, 0
        self._tasks: list[_RayUnit] = []

    def _start(self, fn, *args, **kwargs) -> Callable[[], Any]:
        shipped = self.executor.task_argument
        self.submitted += 1
        task = _RayUnit(self.submitted, fn, tuple(map(shipped, args)), {k: shipped(v) for k, v in kwargs.items()})
        self._launch(task)
        self._tasks.append(task)
        return lambda: self._fetch(task)

    def _done(self, handle: Handle) -> bool:
        import ray

        task = self._tasks[self.handles.index(handle)]
        return handle.finished or bool(ray.wait([task.ref], timeout=0)[0])

    def _launch(self, task: _RayUnit) -> None:
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        task.attempts += 1
        task.ref = self.executor.task.remote(env, task.fn, *task.args, **task.kwargs)

    def _fetch(self, task: _RayUnit) -> Any:
        import ray

        while True:
            try:
                return ray.get(task.ref)
            except _lost_unit_errors() as err:
                self._retry(task, err)

    def _retry(self, task: _RayUnit, err: Exception) -> None:
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

    def task_argument(self, value: Any) -> Any:
        """What a unit's argument travels as: a dataset as its recipe (else one object-store copy per dataset),
        an object with a `for_worker()` method as its result, anything else as it is."""
        if isinstance(value, Dataset):
            recipe = recipe_of(value)
            if recipe is not None:
                return recipe
            if id(value) not in self._shared:
                import ray

                self._shared[id(value)] = (value, ray.put(value))
            return self._shared[id(value)][1]
        if hasattr(value, "for_worker"):
            return value.for_worker()
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
