"""Result files: tables, figures, atomic writes, and where smoke runs write."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from unittest import mock

import matplotlib
import pandas as pd
import pytest
import torch
from PIL import Image

from utils.paths import RESULTS_DIR, results_dir
from utils.results import ResultWriter, atomic_write, display_frame, mean_std, read_metadata, read_sidecar, read_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture
def writer(tmp_path) -> ResultWriter:
    return ResultWriter(tmp_path / "results", notebook="01_test", profile="smoke", seed=7, device="cpu")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_table_writes_plain_csv_sidecar_md_tex_with_metadata(writer):
    df = pd.DataFrame({"method": ["gm", "dm", "random"], "ipc": [1, 10, 50],
                       "accuracy": [0.2812, 0.49, 0.7125], "note": ["a, b", 'quote "x"', ""]})
    paths = writer.table(df, "accuracy", caption="Test accuracy")
    assert set(paths) == {"csv", "json", "md", "tex"}
    assert all(p.is_file() and p.parent == writer.tables for p in paths.values())
    assert {p.name for p in paths.values()} == {"accuracy.csv", "accuracy.json", "accuracy.md", "accuracy.tex"}

    plain = pd.read_csv(paths["csv"])  # no options: opens anywhere
    pd.testing.assert_frame_equal(plain.fillna(""), df)
    assert paths["csv"].read_text().splitlines()[0] == "method,ipc,accuracy,note"
    side = json.loads(paths["json"].read_text())
    assert side["caption"] == "Test accuracy" and side["integer_columns"] == ["ipc"]
    meta = read_metadata(paths["csv"])
    assert meta == side["metadata"]
    assert meta["profile"] == "smoke" and meta["seed"] == 7 and meta["device"] == "cpu"
    assert meta["torch"] == torch.__version__ and meta["notebook"] == "01_test"
    assert isinstance(meta["wall_seconds_since_start"], float)
    back = read_table(paths["csv"])
    pd.testing.assert_frame_equal(back.fillna(""), df)

    md = paths["md"].read_text()
    assert md.startswith("**Test accuracy**") and "| gm" in md
    assert "profile: smoke" in md and f"torch: {torch.__version__}" in md and "seed: 7" in md
    tex = paths["tex"].read_text()
    assert "% profile: smoke\n" in tex and "% device: cpu\n" in tex and f"% torch: {torch.__version__}\n" in tex
    assert "\\caption{Test accuracy}" in tex and "\\begin{tabular}" in tex
    assert _leftovers(writer.tables) == []


def test_rewriting_a_table_replaces_it(writer):
    writer.table(pd.DataFrame({"x": [1]}), "t")
    writer.table(pd.DataFrame({"x": [2, 3]}), "t")
    assert read_table(writer.tables / "t.csv")["x"].tolist() == [2, 3]
    assert sorted(p.name for p in writer.tables.iterdir()) == ["t.csv", "t.json", "t.md", "t.tex"]


def test_figure_writes_png_and_pdf_with_metadata(writer):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    try:
        paths = writer.figure(fig, "curve")
    finally:
        plt.close(fig)
    assert {p.name for p in paths.values()} == {"curve.png", "curve.pdf"}
    png, pdf = paths["png"].read_bytes(), paths["pdf"].read_bytes()
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF")
    with Image.open(paths["png"]) as image:
        assert "profile: smoke" in image.info["Description"] and "seed: 7" in image.info["Description"]
    assert b"profile: smoke" in pdf
    assert _leftovers(writer.figures) == []


def test_integer_columns_stay_integers_even_where_pandas_would_guess_otherwise(writer):
    df = pd.DataFrame({"ipc": [1, 10], "epochs": [3, 4], "score": [1.0, 2.0], "label": ["0", "1"]})
    path = writer.table(df, "ints")["csv"]
    back = read_table(path)
    assert back["ipc"].dtype == "int64" and back["epochs"].dtype == "int64" and back["score"].dtype == "float64"
    assert read_sidecar(path)["integer_columns"] == ["ipc", "epochs"]


def test_mean_and_std_columns_load_as_numbers_and_show_as_mean_plus_minus_std(writer):
    df = pd.DataFrame({"method": ["gm", "majority"], "models": [5.0, None], "accuracy (%)": [93.756, 63.2],
                       "accuracy std (%)": [1.14, None], "AUC (%)": [None, 50.0]})
    paths = writer.table(df, "scores")
    plain = pd.read_csv(paths["csv"])   # no options
    assert plain["accuracy (%)"].dtype == "float64" and plain["accuracy std (%)"].dtype == "float64"
    assert paths["csv"].read_text().splitlines()[1] == "gm,5,93.756,1.14,"   # an integer as an integer, gaps empty
    assert read_table(paths["csv"])["models"].dtype == "Int64"
    shown = display_frame(read_table(paths["csv"]))
    assert list(shown.columns) == ["method", "models", "accuracy (%)", "AUC (%)"]
    assert shown["accuracy (%)"].tolist() == ["93.76 ± 1.14", "63.20"]   # no std: the mean alone
    assert shown["models"].tolist() == [5, "-"]
    assert "93.76 ± 1.14" in paths["md"].read_text() and "93.76 ± 1.14" in paths["tex"].read_text()
    assert mean_std(plain.iloc[0], "accuracy (%)") == (93.756, 1.14) and mean_std(plain.iloc[0], "AUC (%)") is None


def test_old_tables_with_a_hash_header_still_read(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("# profile: cpu\n# seed: 0\nmodel,accuracy\nConvNet #2,0.5\n")
    assert read_metadata(path) == {"profile": "cpu", "seed": "0"}
    pd.testing.assert_frame_equal(read_table(path), pd.DataFrame({"model": ["ConvNet #2"], "accuracy": [0.5]}))
    assert read_sidecar(path)["caption"] == ""


def test_result_files_respect_the_umask(writer):
    old = os.umask(0o022)
    try:
        paths = {**writer.table(pd.DataFrame({"x": [1]}), "perm"), "standalone": atomic_write(
            writer.root / "summary.md", lambda p: p.write_text("x"))}
        os.umask(0o027)
        paths["strict"] = atomic_write(writer.root / "strict.md", lambda p: p.write_text("x"))
    finally:
        os.umask(old)
    for key, path in paths.items():
        expected = 0o640 if key == "strict" else 0o644
        assert path.stat().st_mode & 0o777 == expected, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"


def test_a_full_disk_leaves_the_previous_table_generation_whole(writer):
    writer.table(pd.DataFrame({"x": [1]}), "t", caption="old")
    before = {p.name: p.read_bytes() for p in writer.tables.iterdir()}
    real_write_text = Path.write_text

    def full_on_tex(self, text, *args, **kwargs):
        if self.suffix == ".tex":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, text, *args, **kwargs)

    with mock.patch.object(Path, "write_text", full_on_tex), pytest.raises(OSError, match="No space left"):
        writer.table(pd.DataFrame({"x": [2, 3]}), "t", caption="new")
    after = {p.name: p.read_bytes() for p in writer.tables.iterdir()}
    assert after == before, "every format must keep the previous generation and no temporary file may remain"


def test_atomic_write_cleans_up_when_the_writer_raises(tmp_path):
    target = tmp_path / "out" / "table.csv"
    atomic_write(target, lambda p: p.write_text("old"))

    def broken(p: Path) -> None:
        p.write_text("half-written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old", "a failed write must leave the previous file untouched"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"], "no temporary file may remain"

    fresh = tmp_path / "out" / "new.csv"
    with pytest.raises(RuntimeError):
        atomic_write(fresh, broken)
    assert not fresh.exists()
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_smoke_runs_never_write_to_committed_results(tmp_path):
    created = []
    try:
        for path in (None, RESULTS_DIR, str(RESULTS_DIR)):
            chosen = results_dir("smoke", path)
            created.append(chosen)
            assert chosen.resolve() != RESULTS_DIR.resolve()
            assert RESULTS_DIR.resolve() not in chosen.resolve().parents
            assert chosen.is_dir()
        assert len(set(created)) == 3, "each smoke run gets its own folder"
    finally:
        for folder in created:
            if folder.resolve() != RESULTS_DIR.resolve():
                shutil.rmtree(folder, ignore_errors=True)
    # an explicit folder is used as given, by every profile
    explicit = tmp_path / "mine"
    assert results_dir("smoke", explicit) == explicit.resolve() and explicit.is_dir()
    assert results_dir("full", explicit) == explicit.resolve()


def test_read_table_keeps_hash_in_cells(writer):
    df = pd.DataFrame({"model": ["ConvNet #2", "VGG11"], "accuracy": [0.5, 0.6]})
    path = writer.table(df, "hash")["csv"]
    pd.testing.assert_frame_equal(read_table(path), df)


def test_latex_caption_is_escaped(writer):
    path = writer.table(pd.DataFrame({"x": [1]}), "caption", caption="Accuracy (%) of #2 & more_x")["tex"]
    assert "\\caption{Accuracy (\\%) of \\#2 \\& more\\_x}" in path.read_text()
