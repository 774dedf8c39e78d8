"""The pipeline's schedule: a notebook starts only after those it reads from, independent ones run side by side."""

import threading
import time
from pathlib import Path

from utils import pipeline


def fake_execute(log: list[str], lock: threading.Lock, budget_stops: str = ""):
    """An `_execute_one` that logs start and end of each notebook and runs out of budget in `budget_stops`."""
    def execute(nb: Path, *_):
        with lock:
            log.append(f"start {nb.name[:2]}")
        time.sleep(0.05)
        with lock:
            log.append(f"end {nb.name[:2]}")
        return nb.name[:2] != budget_stops
    return execute


def test_notebooks_start_after_what_they_need_and_independent_ones_overlap(monkeypatch, tmp_path):
    log, lock = [], threading.Lock()
    monkeypatch.setattr(pipeline, "_execute_one", fake_execute(log, lock))
    finished = pipeline._execute(pipeline.notebooks(), tmp_path, tmp_path, {"profile": "smoke"}, jobs=2)
    assert len(finished) == 8
    for number, needs in pipeline.NEEDS.items():
        for need in needs:
            assert log.index(f"end {need}") < log.index(f"start {number}"), f"{number} started before {need} ended"
    running, most = 0, 0
    for event in log:
        running += 1 if event.startswith("start") else -1
        most = max(most, running)
    assert most == 2, "two independent notebooks never ran at once"


def test_one_job_keeps_the_run_order_and_a_spent_budget_starts_nothing_more(monkeypatch, tmp_path, capsys):
    log, lock = [], threading.Lock()
    monkeypatch.setattr(pipeline, "_execute_one", fake_execute(log, lock, budget_stops="05"))
    finished = pipeline._execute(pipeline.notebooks(), tmp_path, tmp_path, {"profile": "cpu"}, jobs=1)
    order = [p.name[:2] for p in pipeline.notebooks()]
    assert [e.split()[1] for e in log if e.startswith("start")] == order[:order.index("05") + 1]
    assert [name[:2] for name in finished] == order[:order.index("05")]
    assert "budget spent in 05_mhist" in capsys.readouterr().out


def test_only_a_profile_on_one_thread_runs_notebooks_side_by_side(monkeypatch):
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    assert pipeline.notebook_jobs("smoke") == 2
    assert pipeline.notebook_jobs("cpu") == pipeline.notebook_jobs("paper") == 1
