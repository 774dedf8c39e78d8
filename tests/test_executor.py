"""The Ray executor gives the in-process run's results (same seeds), also when a worker dies or a node is lost."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from utils import ledger, study
from utils.distill import find_synthetic
from utils.distill.experts import prepare_experts
from utils.distill.trajectory_matching import EXPERT_SEED
from utils.executor import LOCAL, RayExecutor, _RayPool, get_executor
from utils.notebook import start
from utils.results import read_table
from utils.synthetic import SyntheticSet

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
TIMING = ("time", "memory")   # columns that measure the machine, not the result


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on this machine (Ray's own `Cluster`), joined by this process: a head without CPUs, so
    that every unit runs on one of its two one-CPU worker nodes (either can be removed)."""
    from ray.cluster_utils import Cluster

    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    local.add_node(num_cpus=1)
    local.add_node(num_cpus=1)
    ray.init(address=local.address, include_dashboard=False, logging_level="warning", log_to_driver=False)
    local.wait_for_nodes()
    yield local
    ray.shutdown()
    local.shutdown()


@pytest.fixture(scope="module")
def ray_executor(cluster):
    return RayExecutor(torch.device("cpu"))


def _study(notebook: str, executor, out, data_root, fresh: bool = True) -> pd.DataFrame:
    """Notebook 02's or 06's study in the smoke profile on MNIST (one dataset is enough to compare executors, and
    halves the time); `fresh`: nothing cached but the data arrays."""
    if fresh:
        for entry in ("evaluations", "experts", "checkpoints"):
            shutil.rmtree(Path(os.environ["DD_CACHE_DIR"]) / entry, ignore_errors=True)
    run = start(notebook, "smoke", str(data_root), str(out), 0, "cpu")
    run.profile = replace(run.profile, study=replace(run.profile.study, datasets=("MNIST",)))
    run.executor = executor
    if notebook.startswith("06"):
        for name in run.profile.study.datasets:
            prepare_experts(run.load(name), run.profile.method_config("mtt", name, 1).expert_config(),
                            run.context.with_seed(EXPERT_SEED), executor)
        return study.distillation_study(run, "mtt", notebook)
    return study.distillation_study(run, "gm", notebook)


def _same_results(a: pd.DataFrame, b: pd.DataFrame, out_a: Path, out_b: Path) -> None:
    kept = [c for c in a.columns if not any(word in c for word in TIMING)]
    assert a[kept].equals(b[kept])
    sets_a, sets_b = find_synthetic(out_a), find_synthetic(out_b)
    assert [p.name for p in sets_a] == [p.name for p in sets_b] and sets_a
    for pa, pb in zip(sets_a, sets_b):
        sa, sb = SyntheticSet.load(pa), SyntheticSet.load(pb)
        assert torch.equal(sa.images, sb.images) and torch.equal(sa.labels, sb.labels) and sa.lr == sb.lr
        assert sa.config["losses"] == sb.config["losses"]


@pytest.fixture(scope="module")
def local_02(module_cache, tmp_path_factory, data_root):
    """Notebook 02's study in process: the table, its results folder and a copy of its evaluation cache."""
    out = tmp_path_factory.mktemp("local_02")
    table = _study("02_gradient_matching", LOCAL, out, data_root)
    evaluations = tmp_path_factory.mktemp("evaluations_02")
    shutil.copytree(module_cache / "evaluations", evaluations, dirs_exist_ok=True)
    return table, out, evaluations


def test_ray_study_equals_the_in_process_study_06(ray_executor, module_cache, tmp_path, data_root):
    local = _study("06_trajectory_matching", LOCAL, tmp_path / "local", data_root)
    distributed = _study("06_trajectory_matching", ray_executor, tmp_path / "ray", data_root)
    _same_results(local, distributed, tmp_path / "local", tmp_path / "ray")


def test_study_completes_when_a_worker_dies(local_02, ray_executor, tmp_path, data_root, monkeypatch, caplog):
    """The first evaluation kills its worker process; the driver retries it, says so, and nothing is lost."""
    table, out, _ = local_02
    marker = tmp_path / "killed-once"
    evaluate = study._evaluate

    def dies_once(*args, **kwargs):
        try:   # created atomically: of two units starting together, only the first dies
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return evaluate(*args, **kwargs)
        os._exit(1)

    monkeypatch.setattr(study, "_evaluate", dies_once)
    with caplog.at_level(logging.WARNING, logger="utils.executor"):
        distributed = _study("02_gradient_matching", ray_executor, tmp_path / "ray", data_root)
    assert marker.exists()
    [retried] = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert re.fullmatch(r"gm study: unit \d+ \(dies_once\) lost its worker or node \(WorkerCrashedError\); "
                        r"retrying it, attempt 2 of 4", retried), retried
    _same_results(table, distributed, out, tmp_path / "ray")


def test_a_restarted_study_submits_only_the_missing_units(local_02, ray_executor, module_cache, tmp_path, data_root,
                                                          monkeypatch):
    """After a crash that lost one set and one evaluation, only those two units are submitted again."""
    table, out, evaluations = local_02
    shutil.copytree(out, tmp_path / "out")
    shutil.rmtree(module_cache / "evaluations", ignore_errors=True)
    shutil.copytree(evaluations, module_cache / "evaluations")
    lost = sorted((module_cache / "evaluations").glob("*.json"))[0]
    lost_value = json.loads(lost.read_text())
    lost.unlink()
    for record in (tmp_path / "out" / ledger.UNITS / study.EVALUATION).glob("*.json"):   # lost with the results
        if json.loads(record.read_text())["value"] == lost_value:
            record.unlink()
    find_synthetic(tmp_path / "out")[0].unlink()
    submitted, submit = [], _RayPool.submit

    def counting(self, fn, *args, **kwargs):
        submitted.append(fn.__name__)
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(_RayPool, "submit", counting)
    again = _study("02_gradient_matching", ray_executor, tmp_path / "out", data_root, fresh=False)
    # the rebuilt set is bit for bit the lost one, so its evaluations are found in the cache
    assert sorted(submitted) == ["_evaluate", "build_set"]
    _same_results(table, again, out, tmp_path / "out")


@pytest.mark.slow
def test_ray_study_equals_the_in_process_study_02_when_a_node_is_lost(local_02, cluster, ray_executor, tmp_path,
                                                                      data_root, monkeypatch, caplog):
    """One node of the cluster is removed (its processes killed) while it runs an evaluation: the driver logs
    every unit it submits again, and the tables and sets equal the in-process run's. (The module's last Ray test:
    the cluster keeps one worker node.)"""
    table, out, _ = local_02
    busy, evaluate = tmp_path / "unit-running-on-the-doomed-node", study._evaluate
    node_file = tmp_path / "doomed-node-id"

    def stalls_on_the_doomed_node(*args, **kwargs):
        try:   # the first unit to start claims its node as the one to remove, wherever Ray placed it
            os.close(os.open(busy, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return evaluate(*args, **kwargs)
        written = busy.with_suffix(".tmp")
        written.write_text(ray.get_runtime_context().get_node_id())
        os.replace(written, node_file)   # whole, so the remover never reads half an id
        time.sleep(600)   # its node is removed before this returns
        return evaluate(*args, **kwargs)

    removed = []

    def remove_when_busy():
        while not node_file.exists():
            time.sleep(0.05)
        doomed = next(node for node in cluster.worker_nodes if node.node_id == node_file.read_text())
        cluster.remove_node(doomed, allow_graceful=False)
        removed.append(doomed)

    monkeypatch.setattr(study, "_evaluate", stalls_on_the_doomed_node)
    remover = threading.Thread(target=remove_when_busy, daemon=True)
    remover.start()
    with caplog.at_level(logging.WARNING, logger="utils.executor"):
        distributed = _study("02_gradient_matching", ray_executor, tmp_path, data_root)
    remover.join(timeout=60)
    assert removed and removed[0] not in cluster.worker_nodes, "no unit ran on the node that was to be removed"
    retried = [r.getMessage() for r in caplog.records if "retrying it" in r.getMessage()]
    assert retried and all(re.fullmatch(r"gm study: unit \d+ \(\w+\) lost its worker or node \(\w+\); retrying "
                                        r"it, attempt 2 of 4", m) for m in retried), caplog.text
    _same_results(table, distributed, out, tmp_path)
    assert read_table(tmp_path / "tables" / "02_gradient_matching.csv")["ipc"].tolist() == table["ipc"].tolist()


def test_a_unit_lost_more_often_than_allowed_is_named(caplog, monkeypatch):
    """After `max_retries` resubmissions the driver gives up, naming the unit (no cluster needed)."""
    launched = []
    executor = SimpleNamespace(max_retries=1, task_argument=lambda value: value,
                               task=SimpleNamespace(remote=lambda *args, **kwargs: launched.append(args) or object()))
    losses = iter([ray.exceptions.WorkerCrashedError(), ray.exceptions.NodeDiedError("node")])

    def lost(ref):
        raise next(losses)

    monkeypatch.setattr(ray, "get", lost)
    pool = _RayPool(executor, "gm study", "unit")
    handle = pool.submit(len, [1, 2])
    with caplog.at_level(logging.WARNING, logger="utils.executor"), \
            pytest.raises(RuntimeError, match=r"gm study: unit 1 \(len\) was lost 2 times \(NodeDiedError\)"):
        handle.result()
    assert "gm study: unit 1 (len) lost its worker or node (WorkerCrashedError); retrying it, attempt 2 of 2" \
        in caplog.text
    assert len(launched) == 2
    pool.bar.close()


def test_unknown_executor_is_named():
    with pytest.raises(ValueError, match="'spark'.*local, ray"):
        get_executor("spark", torch.device("cpu"))

