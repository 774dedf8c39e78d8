"""The pipeline's own writes fail with the path and the remedy and leave no half-written file (a full or read-only
tmpfs where the test may mount one, else a simulated full disk); a relative DD_CACHE_DIR is the caller's; staging
folders of killed runs are cleared (issue 24, points 7, 10 and 11)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from utils import pipeline

MOUNT_HELP = "mounting a tmpfs needs root with CAP_SYS_ADMIN and mount(8)"


@pytest.fixture
def tmpfs(tmp_path):
    """`mount(size_kib, read_only)`: a fresh tmpfs under `tmp_path`; skips where this machine cannot mount one."""
    mounted = []

    def mount(size_kib: int, read_only: bool = False) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip(f"cannot make a full or read-only folder here: {MOUNT_HELP}")
        options = f"size={size_kib}k" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a full or read-only folder here ({done.stderr.strip()}): {MOUNT_HELP}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_disk_full_while_saving_an_executed_notebook_is_named_and_leaves_no_partial_file(tmpfs, tmp_path,
                                                                                         monkeypatch, data_root):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('x' * 400_000)")])   # an executed copy of 400 kB on a 128 kB disk
    nb.metadata.update(kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
                       language_info={"name": "python"})
    nbformat.write(nb, notebooks / "01_big.ipynb")
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", notebooks)
    results = tmpfs(128) / "results"
    with pytest.raises(SystemExit) as failed:
        pipeline.run("smoke", results_dir=results, data_root=data_root)
    message = str(failed.value)
    for text in (str(results / ".running-"), "01_big.ipynb", "No space left on device", "free space"):
        assert text in message, message
    assert _leftovers(results) == [], "a half-written executed notebook was left"


def test_a_read_only_results_folder_is_named_with_the_remedy(tmpfs):
    results = tmpfs(64, read_only=True)
    with pytest.raises(SystemExit, match=f"cannot write {results}.*read-only.*another --results-dir"):
        pipeline.run("smoke", results_dir=results)


def _fake_papermill(monkeypatch, seen: dict, fail: bool = False) -> None:
    """papermill replaced by a copy of the notebook (recording the environment the kernel would get), or by a
    write that fills the disk halfway."""
    import papermill

    def execute(source, output, **kwargs):
        seen["DD_CACHE_DIR"] = os.environ.get("DD_CACHE_DIR")
        if fail:
            Path(output).write_text('{"cells": [')
            raise OSError(errno.ENOSPC, "No space left on device")
        shutil.copy(source, output)

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def test_a_failed_save_is_named_and_cleaned_up_without_a_mount(tmp_path, monkeypatch):
    _fake_papermill(monkeypatch, {}, fail=True)
    with pytest.raises(SystemExit) as failed:
        pipeline.run("smoke", only=["01"], results_dir=tmp_path)
    assert "01_baseline.ipynb: No space left on device. free space" in str(failed.value)
    assert _leftovers(tmp_path) == [] and not list(tmp_path.glob(".running-*"))


def test_a_relative_cache_dir_is_taken_from_the_callers_folder(tmp_path, monkeypatch):
    seen: dict = {}
    _fake_papermill(monkeypatch, seen)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DD_CACHE_DIR", "my-cache")
    pipeline.run("smoke", only=["01"], results_dir="out")
    assert seen["DD_CACHE_DIR"] == str(tmp_path / "my-cache")   # the kernels run in the project root
    assert (tmp_path / "out" / "notebooks" / "01_baseline.ipynb").is_file()


def test_staging_folders_of_runs_that_did_not_finish_are_removed(tmp_path, monkeypatch, capsys):
    _fake_papermill(monkeypatch, {})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.05)
        stale = {".running-abc123": "an older run's format", ".running-999999999-x": "a process that is gone"}
        for name in stale:
            (tmp_path / name).mkdir()
            (tmp_path / name / "02_gradient_matching.ipynb").write_text("partial")
        live = tmp_path / f".running-{sleeper.pid}-y"   # a concurrent run, still going
        live.mkdir()
        pipeline.run("smoke", only=["01"], results_dir=tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in tmp_path.glob(".running-*")) == [live.name]
    assert "removed 2 staging folder(s) of earlier runs" in capsys.readouterr().out


def test_a_table_write_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    """Inside a notebook cell, the failure papermill reports names the table being written."""
    import pandas as pd

    from utils.results import ResultWriter

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = ResultWriter(tmp_path, notebook="01_baseline", profile="smoke", seed=0, device="cpu")
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*tables/01_t\.csv'"):
        writer.table(pd.DataFrame({"a": [1]}), "01_t")
    assert _leftovers(tmp_path) == []
