"""Result files: tables, figures, atomic writes, and where smoke runs write."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch
from PIL import Image

from utils.paths import RESULTS_DIR, results_dir
from utils.results import ResultWriter, atomic_write, read_metadata, read_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture
def writer(tmp_path) -> ResultWriter:
    return ResultWriter(tmp_path / "results", notebook="01_test", profile="smoke", seed=7, device="cpu")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_table_writes_csv_md_tex_with_metadata(writer):
    df = pd.DataFrame({"method": ["gm", "dm", "random"], "ipc": [1, 10, 50],
                       "accuracy": [0.2812, 0.49, 0.7125], "note": ["a, b", 'quote "x"', ""]})
    paths = writer.table(df, "accuracy", caption="Test accuracy")
    assert set(paths) == {"csv", "md", "tex"}
    assert all(p.is_file() and p.parent == writer.tables for p in paths.values())
    assert {p.name for p in paths.values()} == {"accuracy.csv", "accuracy.md", "accuracy.tex"}

    meta = read_metadata(paths["csv"])
    assert meta["profile"] == "smoke" and meta["seed"] == "7" and meta["device"] == "cpu"
    assert meta["torch"] == torch.__version__ and meta["notebook"] == "01_test"
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
    assert sorted(p.name for p in writer.tables.iterdir()) == ["t.csv", "t.md", "t.tex"]


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


def test_json_has_metadata(writer):
    import json

    path = writer.json({"score": 1.5}, "summary")
    body = json.loads(path.read_text())
    assert body["score"] == 1.5 and body["metadata"]["profile"] == "smoke"


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
