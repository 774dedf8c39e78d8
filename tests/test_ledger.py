"""Results accumulate unit by unit (issue 26): every finished unit is recorded under `<results>/units/` with its
stamp, reused from any machine at the same code digest and recomputed at another; a run stopped by its budget
and resumed elsewhere gives the same tables and sets; a partial summary names what is missing."""

from __future__ import annotations

import json
from dataclasses import replace

import nbformat
import pandas as pd
import pytest
import torch
from fakes import fake_dataset

from utils import executor, ledger, pipeline, provenance, readme_results, study
from utils.digest import _file_text, changed_files, code_digest, code_hashes
from utils.distill import find_synthetic
from utils.executor import LOCAL
from utils.full_training import FullTrainingConfig, train_full, training_machine
from utils.notebook import start
from utils.profiles import SMOKE
from utils.synthetic import SyntheticSet


def test_the_code_digest_covers_code_not_prose_and_names_changed_files(tmp_path):
    hashes = code_hashes()
    assert "utils/study.py" in hashes and "notebooks/02_gradient_matching.ipynb" in hashes
    assert "utils/plots.py" not in hashes and "utils/report.py" not in hashes
    assert code_digest() == code_digest(dict(hashes))
    assert changed_files({**hashes, "utils/study.py": "0"}) == ["utils/study.py"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("prose"),
                                               nbformat.v4.new_code_cell("x = 1\r\n")])
    nbformat.write(notebook, tmp_path / "a.ipynb")
    notebook.cells[0].source = "other prose"
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    nbformat.write(notebook, tmp_path / "b.ipynb")
    assert _file_text(tmp_path / "a.ipynb") == _file_text(tmp_path / "b.ipynb") == "x = 1\n"


def _run(results, data_root, label, cache, monkeypatch, profile=SMOKE, notebook="02_gradient_matching"):
    """A notebook's run on `results` under machine label `label` with an empty cache `cache`."""
    monkeypatch.setenv(ledger.MACHINE_ENV, label)
    monkeypatch.setenv("DD_CACHE_DIR", str(cache))
    monkeypatch.setattr("utils.notebook.get_profile", lambda name: profile)
    return start(notebook, profile.name, str(data_root), str(results), 0, "cpu")


def _counting(monkeypatch) -> list[str]:
    """Count the evaluations actually computed."""
    computed, evaluate = [], study._evaluate
    monkeypatch.setattr(study, "_evaluate", lambda *a, **k: computed.append("e") or evaluate(*a, **k))
    return computed


def test_a_unit_at_the_current_digest_is_reused_from_another_machine_and_a_stale_one_is_recomputed(
        tmp_path, data_root, monkeypatch):
    data = fake_dataset("MNIST", 2, (1, 28, 28), 3)
    computed = _counting(monkeypatch)
    run = _run(tmp_path / "results", data_root, "machine A", tmp_path / "cache1", monkeypatch)
    first = study.evaluate_cached(run, data.x_train, data.y_train, data, dsa=False, n_models=1, epochs=1)
    [path] = (tmp_path / "results" / ledger.UNITS / study.EVALUATION).glob("*.json")
    saved = json.loads(path.read_text())
    assert saved["stamp"]["machine"] == "machine A" and saved["stamp"]["code"] == code_digest()
    assert saved["stamp"]["precision"] == run.precision and saved["stamp"]["notebook"] == "02_gradient_matching"
    assert "precision" not in saved["key"] and "device_class" not in saved["key"]

    run = _run(tmp_path / "results", data_root, "machine B", tmp_path / "cache2", monkeypatch)
    again = study.evaluate_cached(run, data.x_train, data.y_train, data, dsa=False, n_models=1, epochs=1)
    assert len(computed) == 1 and again == first, "a unit recorded at this digest is not recomputed"

    path.write_text(path.read_text().replace(code_digest(), "0ld0ld0ld0ld0ld0"))
    run = _run(tmp_path / "results", data_root, "machine B", tmp_path / "cache3", monkeypatch)
    study.evaluate_cached(run, data.x_train, data.y_train, data, dsa=False, n_models=1, epochs=1)
    assert len(computed) == 2, "a unit of older code is recomputed"
    assert json.loads(path.read_text())["stamp"]["machine"] == "machine B"


def test_a_pool_stops_at_the_first_unit_after_the_deadline_and_records_what_finished(monkeypatch):
    written = []
    with pytest.raises(ledger.BudgetExhausted):
        with LOCAL.pool("budget") as pool:
            pool.submit(lambda: 1).when_done(written.append)
            monkeypatch.setenv(ledger.DEADLINE_ENV, "0")
            pool.submit(lambda: 2).when_done(written.append)
    assert written == [1]


TINY = replace(SMOKE, study=replace(SMOKE.study, datasets=("MNIST",), inits=("real",)))


def _study(run) -> pd.DataFrame:
    table = study.distillation_study(run, "gm", prefix="02_gradient_matching")
    return table.drop(columns=[c for c in table.columns if "time" in c or "memory" in c]).set_index("method")


def test_a_run_stopped_by_its_budget_and_resumed_on_another_machine_matches_an_uninterrupted_one(
        tmp_path, data_root, monkeypatch):
    computed = _counting(monkeypatch)
    whole = _study(_run(tmp_path / "whole", data_root, "machine A", tmp_path / "c1", monkeypatch, TINY))
    total = len(computed)

    # the budget ends once the floor's units (each subset under each protocol) and the distillation have started
    evaluation = TINY.evaluation
    started = evaluation.floor_subsets * len(evaluation.protocols(TINY.study.variants)) + 1
    calls = []
    monkeypatch.setattr(executor, "check_budget",
                        lambda: calls.append(1) if len(calls) < started else ledger.check_budget())
    monkeypatch.setenv(ledger.DEADLINE_ENV, "0")
    with pytest.raises(ledger.BudgetExhausted):
        _study(_run(tmp_path / "parts", data_root, "machine A", tmp_path / "c2", monkeypatch, TINY))
    interrupted = len(computed) - total
    kinds = sorted(r["kind"] for r in ledger.records(tmp_path / "parts"))
    assert kinds == [study.EVALUATION] * interrupted + ["synthetic"], "what finished before the budget is recorded"
    monkeypatch.delenv(ledger.DEADLINE_ENV)

    before = len(computed)
    resumed = _study(_run(tmp_path / "parts", data_root, "machine B", tmp_path / "c3", monkeypatch, TINY))
    pd.testing.assert_frame_equal(resumed.drop(columns="machine"), whole.drop(columns="machine"))
    machines = {"random real": "machine A", "Gradient matching + DSA": "machine A; machine B"}
    assert resumed["machine"].to_dict() == machines, "a row names its units' machines, the distillation's first"
    evaluations_recorded = len(list((tmp_path / "parts" / ledger.UNITS / study.EVALUATION).glob("*.json")))
    assert len(computed) - before == total - interrupted and evaluations_recorded == total
    [a], [b] = find_synthetic(tmp_path / "whole"), find_synthetic(tmp_path / "parts")
    assert torch.equal(SyntheticSet.load(a).images, SyntheticSet.load(b).images)
    assert {r["stamp"]["machine"] for r in ledger.records(tmp_path / "parts")} == {"machine A", "machine B"}


def test_a_run_stopped_by_its_budget_writes_a_partial_summary_naming_what_is_missing(tmp_path, tmp_cache, capsys):
    out = pipeline.run("smoke", only=["01"], results_dir=tmp_path / "results", budget_minutes=1e-9)
    first = (out / "summary.md").read_text().splitlines()[0]
    assert first.startswith(provenance.PARTIAL_PREFIX)
    assert all(p.stem in first for p in pipeline.notebooks())
    assert "budget spent in 01_baseline" in capsys.readouterr().out
    assert not list((out / "notebooks").glob("*.ipynb"))


def test_results_of_other_code_say_so_first_and_name_the_changed_files(tmp_path):
    provenance.update(tmp_path, [p.stem for p in pipeline.notebooks()], [p.stem for p in pipeline.notebooks()])
    assert provenance.status_line(tmp_path) == ""
    found = json.loads((tmp_path / provenance.FILE).read_text())
    found["files"]["utils/study.py"] = "0"
    found["code"] = "0ld0ld0ld0ld0ld0"
    (tmp_path / provenance.FILE).write_text(json.dumps(found))
    provenance.annotate_summary(tmp_path)
    first = (tmp_path / "summary.md").read_text().splitlines()[0]
    assert first.startswith(provenance.CHANGED_PREFIX) and "utils/study.py" in first and "0ld0ld0ld0ld0ld0" in first


@pytest.mark.parametrize("budget", [0, -5.0])
def test_a_budget_that_is_not_a_positive_number_of_minutes_is_refused(budget, tmp_path):
    with pytest.raises(ValueError, match="--budget-minutes must be a positive number of minutes"):
        pipeline.run("smoke", results_dir=tmp_path, budget_minutes=budget)


def test_a_full_data_training_names_the_machine_it_ran_on_where_it_is_reused(tmp_path, data_root, monkeypatch):
    data = fake_dataset("MNIST", 2, (1, 28, 28), 4)
    first, second = (FullTrainingConfig("MNIST", architecture="ConvNetW8", epochs=1, seed=s) for s in (0, 1))
    _run(tmp_path / "results", data_root, "machine A", tmp_path / "cache1", monkeypatch)
    a = train_full(data, first, torch.device("cpu"), progress=False)
    _run(tmp_path / "results", data_root, "machine B", tmp_path / "cache2", monkeypatch)
    reused, b = (train_full(data, config, torch.device("cpu"), progress=False) for config in (first, second))
    assert json.dumps(reused, sort_keys=True) == json.dumps(a, sort_keys=True), "machine A's unit is reused on B"
    assert [training_machine(r) for r in (reused, b)] == ["machine A", "machine B"]
    assert study.join_machines(["machine A", "", "machine B", "machine A"]) == "machine A; machine B"


def test_the_summary_states_the_measured_compute_time_and_projections_at_its_digest_only(tmp_path):
    for k, (machine, seconds) in enumerate([("machine A", 3600.0), ("machine B", 1800.0)]):
        stamp = {"code": code_digest(), "notebook": "02_gradient_matching", "machine": machine,
                 "precision": "bf16", "seconds": seconds}
        (tmp_path / ledger.UNITS / "evaluation").mkdir(parents=True, exist_ok=True)
        (tmp_path / ledger.UNITS / "evaluation" / f"{k}.json").write_text(json.dumps({"stamp": stamp}))
    provenance.update(tmp_path, ["02_gradient_matching"], ["02_gradient_matching"])
    provenance.write_projection(tmp_path, "cpu_avx2", {"hours": 4.25, "machine": "an AVX2-only CPU"})
    (tmp_path / provenance.PROJECTIONS / "old.json").write_text(json.dumps({"hours": 9.0, "machine": "old code",
                                                                         "code": "0ld0ld0ld0ld0ld0", "date": "x"}))
    provenance.annotate_summary(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    [line] = [line for line in summary.splitlines() if line.startswith(provenance.COMPUTE_PREFIX)]
    assert "1.50 h measured" in line and "machine A; machine B" in line and "precision bf16" in line
    assert "4.25 h projected for an AVX2-only CPU" in line and "old code" not in line
    assert line in readme_results.render(summary.replace("## Provenance", "## Targets\n\n| a |\n\n## Provenance"))
