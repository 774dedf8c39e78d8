"""The report built from a (fake) results folder: self-contained HTML that a real browser shows with every figure,
a LaTeX file whose inputs exist (and compiles where pdflatex is installed); figures a reader expects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest
import torch

from utils import plots, report
from utils.paths import PROJECT_ROOT
from utils.results import ResultWriter

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900"]


def _executed_stub(path: Path, title: str, question: str, interpretation: str, seconds: float,
                   finding: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_code_cell("display(Markdown(sentences))")
    shown.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": finding, "text/plain": "<md>"})]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n{question}"),
                nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_markdown_cell("## A step\n\nNot part of the report."), shown,
                nbformat.v4.new_markdown_cell(f"## Interpretation\n\n{interpretation}")]
    nb.metadata["papermill"] = {"duration": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory) -> Path:
    """A small results folder: tables of 01 and 08, two figures, one executed notebook (01), one not (02)."""
    root = tmp_path_factory.mktemp("results")
    writer = ResultWriter(root, notebook="01_baseline", profile="smoke", seed=0, device="cpu",
                          details={"precision": "fp32", "hardware": "Fake CPU, 2 threads"})
    writer.table(pd.DataFrame({"dataset": ["MNIST", "CIFAR10"], "epochs": [1, 2], "test accuracy (%)": [97.5, 40.1]}),
                 "01_baseline", caption="ConvNet on the full training set")
    wide = {f"a rather long column name {k} (%)": [12.345, 67.891] for k in range(12)}
    wide.update({f"a rather long column name {k} std (%)": [0.5, 1.25] for k in range(12)})
    writer.table(pd.DataFrame({"training set": ["random real, MNIST, ipc 10", "DM, MNIST, ipc 10, real init"], **wide}),
                 "03_wide", caption="A table of twelve mean ± std columns")
    writer.table(pd.DataFrame({"dataset": ["MNIST"], "method": ["DM"], "accuracy (%)": [97.5],
                               "source": ["published & <papers>"]}), "08_published", caption="Published numbers")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [0.5, 0.7, 0.8])
    writer.figure(fig, "01_baseline_learning_curves")
    writer.figure(fig, "02_gradient_matching_MNIST_loss")
    plt.close(fig)
    _executed_stub(root / "notebooks" / "01_baseline.ipynb", "01 · Full-data baselines",
                   "**Question.** How accurate is the ConvNet on *all* the data?\n\n**Method.** A student starts at "
                   "θ*ₜ and ends near θ*ₜ₊ₘ, *unlike* θ̂.", "- MNIST is close to solved.", 61,
                   finding="- MNIST: 97.50 % test accuracy, generated from the table.")
    report.build(root)
    return root


def test_report_reads_like_the_course_report(fake_results):
    html = (fake_results / "report.html").read_text()
    assert "<title>Dataset distillation" in html and "ECE1512 2022F Project B report (Shi &amp; Chen)" in html
    assert html.index("01 · Full-data baselines") < html.index("02 · Gradient matching")  # 02: project notebook
    assert "<strong>Question.</strong> How accurate is the ConvNet on <em>all</em> the data?" in html
    assert "MNIST is close to solved." in html and "Not part of the report." not in html
    assert html.index("<h2>Abstract") < html.index("<h2>Setup") < html.index("<h2>01 · Full-data baselines") \
        < html.index("<h2>Conclusions") < html.index("<h2>References") < html.index("<h2>Appendix: every file")
    section = html[html.index('id="nb-01"'):html.index('id="nb-02"')]
    assert section.index("<strong>Question.</strong>") < section.index(">Method<") < section.index(">Setup<") \
        < section.index(">Results<") < section.index("generated from the table") \
        < section.index(">Course report vs this run<") < section.index(">Interpretation<")
    assert "<dt>epochs</dt><dd>2</dd>" in section   # the smoke profile's baseline card
    assert "starts at θ*ₜ and ends near θ*ₜ₊ₘ, <em>unlike</em> θ̂." in section   # the star inside θ*ₜ is no emphasis
    assert "MACs are multiply-accumulate operations of one forward pass" in html
    assert "MNIST, ConvNet on the full training set: 97.5 % in this run against 99.06 % in the course report " \
           "(-1.56)." in html
    for paper in ("ICLR 2021", "ICML 2021", "WACV 2023", "CVPR 2022", "Shi and H. Chen"):
        assert paper in html.split('id="references"')[1], paper
    assert "12.35 ± 0.50" in html and "std (%)" not in html    # mean and std columns shown as one cell
    assert "ConvNet on the full training set" in html and "published &amp; &lt;papers&gt;" in html
    assert "Fake CPU, 2 threads" in html and "smoke" in html and "61 s" in html
    assert html.count('<img src="data:image/png;base64,') == 2
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not load anything from the network"
    for name in ("tables/01_baseline.csv", "tables/01_baseline.json", "figures/02_gradient_matching_MNIST_loss.pdf",
                 "notebooks/01_baseline.ipynb", "report/report.tex"):
        assert f'<a href="{name}">{name}</a>' in html, name


def test_latex_report_inputs_every_table_and_pdf_figure_by_relative_path(fake_results):
    tex = (fake_results / "report" / "report.tex").read_text()
    inputs = re.findall(r"\\input\{([^}]+)\}", tex)
    graphics = re.findall(r"\\includegraphics\[[^]]*\]\{([^}]+)\}", tex)
    assert sorted(Path(p).name for p in inputs) == ["01_baseline.tex", "03_wide.tex", "08_published.tex"]
    assert sorted(Path(p).name for p in graphics) == ["01_baseline_learning_curves.pdf",
                                                      "02_gradient_matching_MNIST_loss.pdf"]
    for path in inputs + graphics:
        assert (fake_results / "report" / path).is_file(), path
    assert r"\textbf{Question.} How accurate is the ConvNet on \emph{all} the data?" in tex
    assert r"starts at $\theta$*$_t$ and ends near $\theta$*$_t$$_+$$_m$, \emph{unlike} $\hat{\theta}$." in tex
    assert r"\begin{abstract}" in tex and r"\section*{Conclusions}" in tex and r"\section*{References}" in tex
    assert "generated from the table" in tex and r"\subsection*{Course report vs this run}" in tex


def test_report_names_no_absolute_path_of_the_machine(fake_results):
    for text in ((fake_results / "report.html").read_text(), (fake_results / "report" / "report.tex").read_text()):
        assert str(fake_results) not in text and str(PROJECT_ROOT) not in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (Debian: texlive-latex-base "
                    "and texlive-latex-recommended; .ci/run installs them); the LaTeX report is checked by path only")
def test_latex_report_compiles_with_no_table_wider_than_the_text(fake_results, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(fake_results, work)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                          cwd=work / "report", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", (work / "report" / "report.log").read_text())
    assert not overfull, f"{len(overfull)} boxes wider than the text: {overfull}"
    assert report.build(work, pdf=True)["pdf"].read_bytes()[:4] == b"%PDF"
    assert not (work / "report" / "report.aux").exists() or (work / "report" / "report.aux").stat().st_size


def test_report_of_an_old_results_folder_with_hash_headers(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "03_cross_architecture.csv").write_text(
        "# notebook: 03_cross_architecture\n# profile: cpu\n# hardware: Old VM\n"
        "training set,ConvNet\nreal,26.5 ± 0.1\n")
    (tmp_path / "tables" / "03_cross_architecture.md").write_text("**Old caption**\n\n| a |\n")
    paths = report.build(tmp_path)
    html = paths["html"].read_text()
    assert "Old caption" in html and "Old VM" in html and "26.50 ± 0.10" in html and "not recorded" in html


def test_report_names_a_folder_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no tables, figures or executed notebooks"):
        report.build(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        report.build(tmp_path / "missing")


class DevTools:
    """The few Chrome DevTools Protocol calls the browser test needs, over websocket-client."""

    def __init__(self, url: str):
        import websocket

        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            assert time.monotonic() < end, f"no {event} within {timeout} s"
            self.events.append(json.loads(self.ws.recv()))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run "
                    "installs it), so the report cannot be checked in a browser")
def test_report_opens_in_chromium_with_every_figure_and_no_console_error(fake_results, tmp_path):
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, end = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert browser.poll() is None and time.monotonic() < end, "Chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        tools.call("Page.navigate", url=(fake_results / "report.html").as_uri())
        tools.wait_for("Page.loadEventFired")
        images = tools.call("Runtime.evaluate", returnByValue=True, expression=(
            "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"))
        text = tools.call("Runtime.evaluate", returnByValue=True, expression="document.documentElement.outerHTML")
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (tmp_path / "report.png").write_bytes(__import__("base64").b64decode(shot["data"]))
        errors = [e for e in tools.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
        tools.ws.close()
    finally:
        browser.terminate()
        browser.wait(timeout=30)
    assert not errors, errors
    shown = text["result"]["value"]
    assert "Abstract" in shown and str(fake_results) not in shown and str(PROJECT_ROOT) not in shown
    values = images["result"]["value"]
    assert len(values) == 2 and all(i["complete"] and i["width"] > 0 for i in values), values
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_image_grids_have_gaps_and_say_when_they_are_truncated():
    tiles = torch.zeros(4, 1, 3, 3)
    canvas = plots._grid(tiles, rows=2, gap=1)
    assert canvas.shape == (1, 7, 7)
    assert (canvas[:, 3, :] == 1).all() and (canvas[:, :, 3] == 1).all() and (canvas[:, :3, :3] == 0).all()

    class Data:
        num_classes, channels, im_size, classes = 2, 1, (8, 8), ["a", "b"]

        @staticmethod
        def denormalise(x):
            return x

    images = torch.rand(2 * 12, 1, 8, 8)
    fig = plots.synthetic_before_after(images, images, Data(), "GM")
    assert fig._suptitle.get_text() == "GM (first 10 of 12 images per class shown)"
    plt.close(fig)
    fig = plots.synthetic_before_after(images[:4], images[:4], Data(), "GM")
    assert fig._suptitle.get_text() == "GM"
    plt.close(fig)


def test_comparison_figures_draw_references_and_error_bars():
    transfer = pd.DataFrame({"training set": ["random real, MNIST, ipc 10", "DM, MNIST, ipc 10, real init"],
                             "ConvNet (%)": [80.0, 90.0], "ConvNet std (%)": [1.0, 2.0],
                             "MLP (%)": [70.0, 71.0], "MLP std (%)": [1.0, 0.5]})
    fig = plots.transfer_bars(transfer, "training set", "Transfer", chance=10.0)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert {"chance (10%)", "random real (± std)", "DM, real init"} <= set(labels)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ConvNet", "MLP"] and len(ax.containers) >= 1
    plt.close(fig)

    table = pd.DataFrame({"method": ["DM", "GM"], "dataset": ["MNIST", "MNIST"], "ipc": [10, 10],
                          "init": ["real", "noise"], "accuracy (%)": [90.0, 85.0], "accuracy std (%)": [2.0, 1.0],
                          "distillation time (s)": [10.0, 100.0]})
    floor = pd.DataFrame({"dataset": ["MNIST"], "ipc": [10], "accuracy (%)": [80.0], "accuracy std (%)": [1.0]})
    fig = plots.accuracy_vs_time(table, {"MNIST": "accuracy (%)"}, "Accuracy", floor=floor,
                                 preparation={(table["method"].iloc[-1], "MNIST"): 50.0})
    ax = fig.axes[0]
    assert len(ax.containers) == 2, "one ± std error bar per set"
    assert [list(line.get_xdata()) for line in ax.get_lines() if line.get_linewidth() == 4] == [[100.0, 150.0]], \
        "the last method's set sits at its distillation plus preparation time, the preparation drawn as a bar"
    assert any(list(line.get_ydata()) == [80.0, 80.0] for line in ax.get_lines()), "random-real reference line"
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and 10 <= t.get_position()[0] <= 100]
    assert len(labels) >= 2, f"a log axis over 10-100 s needs readable ticks, got {labels}"
    plt.close(fig)

    curve = pd.DataFrame({"method": ["GM", "GM", "DM", "DM"], "ipc": [10] * 4, "init": ["real"] * 4,
                          "iteration": [5, 10, 150, 300], "accuracy (%)": [60.0, 65.0, 61.0, 62.0],
                          "std (%)": [0.0, 1.0, 0.0, 1.0], "models": [1, 5, 1, 5]})
    fig = plots.accuracy_curves(curve, "accuracy (%)", {"random real, ipc 10": (58.0, 1.0),
                                                        "random real, ipc 50": (62.0, 1.0)})
    floors = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("random real")]
    assert len({(line.get_color(), line.get_linestyle()) for line in floors}) == 2, "floors must differ in style"
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert {"GM, ipc 10, real init", "DM, ipc 10, real init"} <= set(labels), "one line per method, not a zig-zag"
    assert [t.get_text() for t in fig.axes[0].texts] == ["1", "5", "1", "5"], "each point names its networks"
    plt.close(fig)


def test_learning_curves_use_whole_epochs():
    from utility import TrainHistory

    fig = plots.learning_curves({"MNIST": TrainHistory([1.0, 0.5, 0.4], [0.9, 0.95, 0.97], 1.0)})
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_tables_and_figures_keep_the_order_their_notebook_wrote_them(tmp_path):
    writer = ResultWriter(tmp_path, notebook="05_mhist", profile="smoke", seed=0, device="cpu")
    fig, ax = plt.subplots(figsize=(2, 2))
    for name in ("05_mhist_zz_images", "05_mhist_aa_curve"):
        writer.figure(fig, name)
        time.sleep(0.15)
    plt.close(fig)
    for name in ("05_mhist", "05_mhist_curves", "05_mhist_best"):
        writer.table(pd.DataFrame({"x": [1]}), name)
        time.sleep(0.15)
    (section,) = report.sections(tmp_path)
    assert [f.name for f in section.figures] == ["05_mhist_zz_images", "05_mhist_aa_curve"]
    assert [t.name for t in section.tables] == ["05_mhist", "05_mhist_curves", "05_mhist_best"]
