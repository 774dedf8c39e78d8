"""Re-execute the numbered notebooks in order with papermill: `python -m utils.pipeline --profile cpu`."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import nbformat
import psutil
from tqdm.auto import tqdm

from utils import provenance
from utils.executor import EXECUTORS
from utils.ledger import DEADLINE_ENV, BudgetExhausted, check_budget
from utils.paths import NOTEBOOKS_DIR, PROJECT_ROOT, RESULTS_DIR, cache_dir
from utils.paths import data_root as resolve_data_root
from utils.profiles import PROFILES

# Cross-architecture transfer (03) trains on the sets of every method, so it runs after the methods' notebooks
# (06, 07); every other notebook runs in its number's order.
RUN_LAST = ("03", "08")
# What a notebook reads from others (it starts once those of the run have finished): 03 and 04 train on saved sets,
# 08 gathers every table. Independent notebooks run side by side where the profile computes on one thread.
NEEDS = {"03": ("02", "06", "07"), "04": ("02",), "08": ("01", "02", "03", "04", "05", "06", "07")}


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in run order (number order, then `RUN_LAST`), optionally only those whose number
    prefix is in `only`."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"),
                   key=lambda p: (p.name[:2] in RUN_LAST, RUN_LAST.index(p.name[:2]) if p.name[:2] in RUN_LAST
                                  else 0, p.name))
    if only:
        unknown = set(only) - {p.name[:2] for p in found}
        if unknown:
            raise ValueError(f"--only names unknown notebook numbers {sorted(unknown)}; "
                             f"allowed: {', '.join(p.name[:2] for p in found)}")
        found = [p for p in found if p.name[:2] in only]
    return found


def run(profile: str, only: list[str] | None = None, results_dir: str | os.PathLike | None = None,
        data_root: str | os.PathLike | None = None, seed: int = 0, device: str = "auto",
        executor: str | None = None, budget_minutes: float | None = None) -> Path:
    """Execute the notebooks; executed copies go to `<results>/notebooks/` only once a notebook has finished.

    `executor` ('local' or 'ray'; None: env `DD_EXECUTOR`, else 'local') is where the notebooks' independent units
    run; with 'ray' and no `DD_RAY_ADDRESS`, one local Ray instance serves every notebook of the run.

    Relative `results_dir`, `data_root` (argument or env `DD_DATA_ROOT`) and env `DD_CACHE_DIR` (made absolute in
    this process's environment, which the kernels inherit) are taken relative to the caller's working directory.
    A notebook runs into `<results>/.running-<pid>-*/` (the same filesystem, so the final rename cannot cross
    devices; a failed one stays there until the next run removes it). A write that fails (disk full, read-only
    folder) stops the run naming the path and the remedy, without a half-written file.

    Every finished unit is recorded under `<results>/units/` (`utils.ledger`), and one recorded at the current code
    digest is never recomputed, so a run resumes where an earlier one stopped, on any machine. With
    `budget_minutes`, the run stops at the first unit boundary after that many minutes (env `DD_DEADLINE` reaches
    the kernels): the notebook in progress is dropped (its finished units stay recorded), and summary.md and the
    report say on their first line that the results are partial and what is missing. Returns the results
    folder."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if budget_minutes is not None and not budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be a positive number of minutes, got {budget_minutes!r}")
    selected = notebooks(only)
    if results_dir is None:
        results_dir = tempfile.mkdtemp(prefix="dd-smoke-") if profile == "smoke" else RESULTS_DIR
    results_dir = Path(results_dir).resolve()
    if profile == "smoke" and results_dir == RESULTS_DIR.resolve():
        raise ValueError("smoke runs never write to the committed results/ folder; choose another --results-dir")
    if os.environ.get("DD_CACHE_DIR"):   # the kernels run in the project root
        os.environ["DD_CACHE_DIR"] = str(Path(os.environ["DD_CACHE_DIR"]).expanduser().resolve())
    started, fresh = time.time(), not any(results_dir.glob("*")) and not any(cache_dir().glob("*"))
    executed = results_dir / "notebooks"
    with writing(results_dir):
        executed.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(results_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".running-{os.getpid()}-", dir=results_dir))
    parameters = {"profile": profile, "data_root": str(resolve_data_root(data_root).resolve()),
                  "results_dir": str(results_dir), "seed": seed, "device": device, "executor": executor}
    with ray_cluster(executor), deadline(budget_minutes):
        finished = _execute(selected, staging, executed, parameters, notebook_jobs(profile))
    with writing(staging):
        staging.rmdir()
    with writing(results_dir / provenance.FILE):
        recorded = provenance.update(results_dir, finished, [p.stem for p in notebooks()])
    from utils import comparison, readme_results
    from utils.report import build as build_report  # the report of whatever the folder now holds (issue 11)

    summary = results_dir / "summary.md"
    if summary.exists() and summary.stat().st_mtime >= started:  # written by this run's notebook 08: stamp it
        with writing(summary):
            comparison.stamp_summary(results_dir, profile=profile, wall_seconds=time.time() - started, fresh=fresh,
                                     executor=executor or os.environ.get("DD_EXECUTOR") or "local",
                                     command="make results" + (f" ONLY={','.join(only)}" if only else ""))
    if summary.exists() or recorded["missing"]:
        with writing(summary):
            provenance.annotate_summary(results_dir)
    with writing(results_dir / "report.html"):
        try:
            print(f"report: {build_report(results_dir)['html']}")
        except FileNotFoundError as err:
            if len(finished) == len(selected):
                raise
            print(f"no report: {err}")   # a run stopped before its first table
    if profile == "cpu" and results_dir == RESULTS_DIR.resolve() and summary.exists():
        readme_results.update_readme(PROJECT_ROOT / "README.md", summary)
    return results_dir


@contextmanager
def ray_cluster(executor: str | None):
    """For the Ray executor without `DD_RAY_ADDRESS`: a local Ray instance that the notebooks' kernels join."""
    if (executor or os.environ.get("DD_EXECUTOR")) != "ray" or os.environ.get("DD_RAY_ADDRESS"):
        yield
        return
    import ray

    ray.init(include_dashboard=False, logging_level="warning")
    os.environ["DD_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    try:
        yield
    finally:
        del os.environ["DD_RAY_ADDRESS"]
        ray.shutdown()


@contextmanager
def deadline(budget_minutes: float | None) -> Iterator[None]:
    """Within the block, env `DD_DEADLINE` (inherited by the kernels) ends the run's budget `budget_minutes`
    from now (no budget: none)."""
    if budget_minutes is None:
        yield
        return
    os.environ[DEADLINE_ENV] = str(time.time() + 60 * budget_minutes)
    try:
        yield
    finally:
        del os.environ[DEADLINE_ENV]


def notebook_jobs(profile: str) -> int:
    """How many notebooks run at once: one per core where the profile computes on `threads` threads per notebook
    (smoke: one), else one (a notebook's own units use every core)."""
    threads = PROFILES[profile].threads
    return max(1, (os.cpu_count() or 1) // threads) if threads else 1


def _execute(selected: list[Path], staging: Path, executed: Path, parameters: dict, jobs: int = 1) -> list[str]:
    """Execute the notebooks, up to `jobs` at once, each once those it `NEEDS` have finished (with one job: in
    order); returns the names of those finished (all of them, unless the budget ran out: then a notebook in
    progress is dropped, with a line saying so, and the rest are not started)."""
    numbers = {nb.name[:2] for nb in selected}
    pending, running, finished, stopped = list(selected), {}, [], []
    with ThreadPoolExecutor(jobs) as pool, tqdm(total=len(selected), desc=f"notebooks ({parameters['profile']})",
                                                unit="nb") as bar:
        while pending or running:
            done_numbers = {name[:2] for name in finished}
            ready = [nb for nb in pending if set(NEEDS.get(nb.name[:2], ())) & numbers <= done_numbers]
            for nb in ready[:jobs - len(running)] if not stopped else []:
                pending.remove(nb)
                running[pool.submit(_execute_one, nb, staging, executed, parameters)] = nb
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                nb = running.pop(future)
                (finished if future.result() else stopped).append(nb.stem)
                bar.update()
    if stopped:
        unfinished = [nb.stem for nb in selected if nb.stem not in finished]
        print(f"budget spent in {', '.join(stopped)}; its finished units are recorded under units/, the notebooks "
              f"{', '.join(unfinished)} are not finished")
    return finished


def _execute_one(nb: Path, staging: Path, executed: Path, parameters: dict) -> bool:
    """Execute one notebook into `staging`, then move it to `executed`; False (nothing kept) if the budget ran out
    before or during it."""
    import papermill as pm

    tmp = staging / nb.name
    try:
        check_budget()
        with writing(tmp, partial=tmp):
            pm.execute_notebook(nb, tmp, parameters=parameters, cwd=str(PROJECT_ROOT), progress_bar=False,
                                log_output=True, kernel_name="python3")
    except (BudgetExhausted, pm.PapermillExecutionError) as err:
        if isinstance(err, pm.PapermillExecutionError) and err.ename != BudgetExhausted.__name__:
            raise SystemExit(f"FAILED: {nb.name}, {failed_cell(nb, err.source)}: {err.ename}: {err.evalue}\n"
                             f"partial output kept in {tmp}") from None
        tmp.unlink(missing_ok=True)
        return False
    with writing(executed / nb.name, partial=tmp):
        os.replace(tmp, executed / nb.name)
    return True


REMEDIES = {errno.ENOSPC: "free space on that filesystem", errno.EDQUOT: "free space within your disk quota",
            errno.EROFS: "the filesystem is read-only", errno.EACCES: "make the folder writable for you",
            errno.EPERM: "make the folder writable for you"}


@contextmanager
def writing(path: Path, partial: Path | None = None) -> Iterator[None]:
    """An `OSError` in the block becomes a `SystemExit` naming the path written (the error's own, else `path`)
    and the remedy; `partial`, a file the block may have half-written, is removed first."""
    try:
        yield
    except OSError as err:
        if err.errno is None:   # raised by our code with its own message (e.g. a folder without results)
            raise
        if partial is not None:
            partial.unlink(missing_ok=True)
            if partial.parent.name.startswith(".running-") and not any(partial.parent.iterdir()):
                partial.parent.rmdir()
        remedy = REMEDIES.get(err.errno, "check the path")
        raise SystemExit(f"FAILED: cannot write {err.filename or path}: {err.strerror or err}. {remedy}, or "
                         "choose another --results-dir") from None


def remove_stale_staging(results_dir: Path) -> None:
    """Remove the `.running-<pid>-*` folders of earlier runs (their process is gone, or its pid now belongs to a
    process started after the folder last changed), with a line saying so."""
    removed = []
    for folder in sorted(results_dir.glob(".running-*")):
        pid = folder.name.split("-")[1]
        try:
            alive = pid.isdigit() and psutil.Process(int(pid)).create_time() <= folder.stat().st_mtime
        except psutil.NoSuchProcess:
            alive = False
        if folder.is_dir() and not alive:
            shutil.rmtree(folder)
            removed.append(folder.name)
    if removed:
        print(f"removed {len(removed)} staging folder(s) of earlier runs that did not finish: {', '.join(removed)}")


def failed_cell(notebook: Path, source: str) -> str:
    """'cell N (`first line`)': the failing cell's number in the notebook as written (counting every cell from
    1, without the parameters cell papermill injects) and the first line of its source."""
    cells = nbformat.read(notebook, as_version=4).cells
    number = next((k for k, cell in enumerate(cells, 1) if cell.source == source), None)
    first = next((line for line in source.splitlines() if line.strip()), "")
    return f"cell {number if number is not None else '?'} (`{first}`)"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,02")
    parser.add_argument("--results-dir", default=None, help="default: results/ (smoke: a temporary folder)")
    parser.add_argument("--data-root", default=None, help="default: env DD_DATA_ROOT, else ./data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--executor", default=None, choices=EXECUTORS,
                        help="where independent units run (default: env DD_EXECUTOR, else local); ray: on the "
                             "cluster at DD_RAY_ADDRESS, else on a local Ray instance")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every unit of the profile instead of running it (utils.dry_run); with "
                             "--measure, time one step of each at full shapes and project the total")
    parser.add_argument("--measure", action="store_true", help="with --dry-run: measure and project")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop at the first unit boundary after this many minutes; what finished stays "
                             "recorded under <results>/units/ and the next run resumes from it")
    args = parser.parse_args(argv)
    if args.dry_run:
        from utils import dry_run

        return dry_run.main(["--profile", args.profile, "--device", args.device]
                            + (["--measure"] if args.measure else []) + (["--only", args.only] if args.only else []))
    only = args.only.split(",") if args.only else None
    try:
        out = run(args.profile, only, args.results_dir, args.data_root, args.seed, args.device, args.executor,
                  args.budget_minutes)
    except ValueError as err:
        parser.error(str(err))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
