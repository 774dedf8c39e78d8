"""A report built from a hostile or damaged results folder runs no script, links only inside the folder, reads
nothing outside it, and names every file it leaves out (issue 24, points 1, 2, 3 and 8)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest

from utils import report
from utils.report import ReportWarning
from utils.results import ResultsFileError, ResultWriter, read_sidecar, read_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HOSTILE_MARKDOWN = ("**Question.** <script>alert('md')</script> [click](javascript:alert(1)) "
                    "<a href=\"JaVaScRiPt:alert(2)\">mixed case</a> <img src=x onerror=\"alert(3)\"> "
                    "[data](data:text/html,<script>alert(4)</script>) [paper](https://arxiv.org/abs/2006.05929) "
                    "[table](tables/01_baseline.csv) [top](#setup)")
SECRET = "SECRET-OUTSIDE-THE-RESULTS-FOLDER"


def _figure(writer: ResultWriter, name: str) -> None:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2], [1, 2])
    writer.figure(fig, name)
    plt.close(fig)


@pytest.fixture
def hostile(tmp_path) -> tuple[Path, Path]:
    """A results folder as a stranger could hand it over, and a folder outside it holding a secret."""
    root, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    writer = ResultWriter(root, notebook="01_baseline", profile="smoke", seed=0, device="cpu")
    writer.table(pd.DataFrame({"dataset": ["MNIST"], "accuracy (%)": [97.5]}), "01_baseline", caption="Baseline")
    writer.table(pd.DataFrame({"<script>alert('th')</script>": ["<img src=x onerror=alert(6)>"]}), "01_cells",
                 caption="<script>alert('caption')</script>")
    _figure(writer, "01_baseline_curves")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# 01 · Baselines\n\n{HOSTILE_MARKDOWN}"),
                nbformat.v4.new_markdown_cell("## Interpretation\n\n<iframe src=\"https://evil.example\"></iframe>"
                                              "<svg onload=\"alert(5)\"></svg> fine")]
    (root / "notebooks").mkdir()
    nbformat.write(nb, root / "notebooks" / "01_baseline.ipynb")
    (root / "javascript:alert(document.domain)").write_text("a file with a hostile name")
    # symlinks leading out of the folder: a table, its sidecar, a figure, a notebook, a plain file
    elsewhere.mkdir()
    outside = ResultWriter(elsewhere, notebook="02_x", profile="smoke", seed=0, device="cpu")
    outside.table(pd.DataFrame({"secret": [SECRET]}), "02_secret", caption=SECRET)
    _figure(outside, "02_secret")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {SECRET}")]),
                   elsewhere / "02_secret.ipynb")
    (elsewhere / "secret.txt").write_text(SECRET)
    for link, target in {"tables/01_leak.csv": "tables/02_secret.csv", "figures/01_leak.png": "figures/02_secret.png",
                         "notebooks/02_leak.ipynb": "02_secret.ipynb", "leak.txt": "secret.txt"}.items():
        (root / link).symlink_to(elsewhere / target)
    (root / "tables" / "01_own.csv").write_text("a\n1\n")
    (root / "tables" / "01_own.json").symlink_to(elsewhere / "tables" / "02_secret.json")
    return root, elsewhere


def test_hostile_markdown_is_sanitised_and_file_names_are_quoted_relative_links(hostile):
    root, _ = hostile
    with pytest.warns(ReportWarning):
        html = report.build(root)["html"].read_text()
    for forbidden in ("<script", "<iframe", "<svg", "<img src=x", "data:text"):
        assert forbidden not in html, forbidden
    assert not re.search(r"<[^>]*\son\w+\s*=", html), "an event handler attribute survived"
    assert "&lt;img src=x onerror=alert(6)&gt;" in html   # table cells are shown as text
    assert not re.search(r"=\s*[\"']?\s*javascript:", html, re.IGNORECASE)
    for kept in ('href="https://arxiv.org/abs/2006.05929"', 'href="tables/01_baseline.csv"', 'href="#setup"',
                 "<strong>Question.</strong>", "fine"):
        assert kept in html, kept
    assert '<a href="javascript%3Aalert%28document.domain%29">javascript:alert(document.domain)</a>' in html
    hrefs = re.findall(r'<a href="([^"]*)"', html)
    assert all(not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", h) or h.startswith("https:") for h in hrefs), hrefs


def test_symlinks_out_of_the_results_folder_are_left_out_with_a_warning(hostile):
    root, elsewhere = hostile
    with pytest.warns(ReportWarning) as caught:
        paths = report.build(root)
    html, tex = paths["html"].read_text(), paths["tex"].read_text()
    assert SECRET not in html and SECRET not in tex
    assert html.count('<img src="data:image/png;base64,') == 1, "the symlinked PNG was embedded"
    assert "01_leak" not in tex and "01_own" not in tex
    warned = " ".join(str(w.message) for w in caught)
    for name in ("tables/01_leak.csv", "figures/01_leak.png", "notebooks/02_leak.ipynb", "leak.txt",
                 "tables/01_own.json"):
        assert f"{name} links to {elsewhere}" in warned, name
        assert f"{name} links to" in html, name   # listed in the report's 'left out' section


def test_damaged_tables_are_named_and_left_out_of_the_report(tmp_path):
    writer = ResultWriter(tmp_path, notebook="01_baseline", profile="smoke", seed=0, device="cpu")
    frame = pd.DataFrame({"dataset": ["MNIST", "CIFAR10"], "epochs": [1, 2]})
    for name in ("01_baseline", "01_truncated_json", "01_ragged", "01_not_an_object", "01_empty"):
        writer.table(frame, name, caption=f"caption of {name}")
    json_path = tmp_path / "tables" / "01_truncated_json.json"
    json_path.write_text(json_path.read_text()[:40])
    (tmp_path / "tables" / "01_ragged.csv").write_text("dataset,epochs\nMNIST,1\nCIFAR10,2,7,8\nSVHN\n")
    (tmp_path / "tables" / "01_not_an_object.json").write_text("[1, 2]")
    (tmp_path / "tables" / "01_empty.csv").write_text("")
    with pytest.warns(ReportWarning) as caught:
        assert report.main(["--results-dir", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "caption of 01_baseline" in html
    expected = {"01_truncated_json.json": "cannot be read as JSON", "01_ragged.csv": "record 3 has 4 fields",
                "01_not_an_object.json": "expected a JSON object", "01_empty.csv": "cannot be read as CSV"}
    for name, why in expected.items():
        assert any(name in str(w.message) and why in str(w.message) for w in caught), name
        assert re.search(rf"<li>[^<]*{re.escape(name)}[^<]*{why}", html), name
        assert f"caption of {name.split('.')[0]}" not in html


def test_table_readers_name_the_damaged_file(tmp_path):
    writer = ResultWriter(tmp_path, notebook="01_baseline", profile="smoke", seed=0, device="cpu")
    paths = writer.table(pd.DataFrame({"a": [1, 2]}), "01_t")
    paths["json"].write_text("{")
    with pytest.raises(ResultsFileError, match=re.escape(str(paths["json"])) + ".*--only 01"):
        read_sidecar(paths["csv"])
    writer.table(pd.DataFrame({"a": [1, 2]}), "01_t")
    paths["csv"].write_text("a\n1\nx\n")   # an integer column holding text
    with pytest.raises(ResultsFileError, match=re.escape(str(paths["csv"]))):
        read_table(paths["csv"])
