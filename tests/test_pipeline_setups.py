"""The pipeline in common setups, with papermill replaced by a fake (no kernel starts): results on another
filesystem than /tmp, bad `--only`, relative paths, and failure messages that point at the notebook's own cell."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from utils import pipeline


@pytest.fixture
def executed(monkeypatch) -> list[dict]:
    """Replace papermill's execution by a copy of the notebook; collects the parameters of each call."""
    calls = []

    def execute(notebook, output, parameters, **kwargs):
        calls.append(parameters)
        nbformat.write(nbformat.read(notebook, as_version=4), output)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return calls


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A private system temporary folder, to see what a run leaves there."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_results_on_another_filesystem_than_the_staging_folder(tmp_path, executed, private_tmp, monkeypatch):
    results = tmp_path / "results"
    real_replace = os.replace

    def replace(src, dst):  # a rename between folders of different devices fails as on a real mount
        if Path(src).resolve().is_relative_to(results) != Path(dst).resolve().is_relative_to(results):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    pipeline.run("smoke", only=["01", "02"], results_dir=results, data_root=tmp_path)
    assert sorted(p.name for p in (results / "notebooks").iterdir()) == [p.name for p in pipeline.notebooks(
        ["01", "02"])]
    assert list(private_tmp.iterdir()) == [], "a run left folders in the system temporary folder"
    assert not list(results.glob(".running-*")), "the staging folder is removed after a successful run"


def test_unknown_notebook_number_is_a_clean_error_that_creates_nothing(tmp_path, executed, capsys):
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(["--profile", "smoke", "--only", "99", "--results-dir", str(results)])
    assert exit_.value.code == 2
    assert "--only names unknown notebook numbers ['99']" in capsys.readouterr().err
    assert not results.exists() and executed == []


def test_relative_paths_are_resolved_against_the_callers_directory(tmp_path, executed, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DD_DATA_ROOT", raising=False)
    pipeline.main(["--profile", "smoke", "--only", "01", "--results-dir", "out", "--data-root", "datasets"])
    assert executed[0]["data_root"] == str(tmp_path / "datasets")
    assert executed[0]["results_dir"] == str(tmp_path / "out")
    monkeypatch.setenv("DD_DATA_ROOT", "env_datasets")
    pipeline.main(["--profile", "smoke", "--only", "01", "--results-dir", "out"])
    assert executed[1]["data_root"] == str(tmp_path / "env_datasets")


def test_failure_names_the_notebooks_own_cell_and_its_first_line(tmp_path, monkeypatch):
    notebook = pipeline.notebooks(["01"])[0]
    cells = nbformat.read(notebook, as_version=4).cells
    number, cell = next((k, c) for k, c in enumerate(cells, 1) if c.cell_type == "code" and k > 3)

    def fail(notebook, output, parameters, **kwargs):
        Path(output).write_text("partial")
        # papermill counts its injected parameters cell: the executed copy has one cell more before this one
        raise PapermillExecutionError(number, number + 1, cell.source, "ValueError", "boom", [])

    monkeypatch.setattr(papermill, "execute_notebook", fail)
    with pytest.raises(SystemExit) as exit_:
        pipeline.run("smoke", only=["01"], results_dir=tmp_path / "results", data_root=tmp_path)
    first_line = next(line for line in cell.source.splitlines() if line.strip())
    message = str(exit_.value.code)
    assert f"{notebook.name}, cell {number} (`{first_line}`): ValueError: boom" in message
    [kept] = (tmp_path / "results").glob(".running-*/01_*.ipynb")
    assert str(kept) in message and not list((tmp_path / "results" / "notebooks").iterdir())
