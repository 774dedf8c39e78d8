"""Progress bars leave one readable line: on stdout outside Jupyter, in place of the widget in a notebook."""

from __future__ import annotations

import nbclient
import nbformat

from utils.paths import PROJECT_ROOT
from utils.progress import progress, summary_line


def test_summary_line_counts_items_time_and_rate():
    assert summary_line("evaluate ConvNet", 3, 3, 45.0, "model") == "evaluate ConvNet: 3 model in 00:45 (15.00 s/model)"
    resumed = summary_line("distil", 7, 10, 2.0, "iteration", initial=3)
    assert resumed == "distil: 7/10 iteration in 00:02 (2.00 iteration/s)"


def test_text_bar_leaves_a_closing_line_on_stdout_unless_leave_is_false(capsys):
    for _ in progress(range(4), desc="outer", unit="model"):
        for _ in progress(range(2), desc="inner", leave=False):
            pass
    for _ in progress(range(2), desc="quiet", disable=True):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("outer: 4 model in 00:00 (")


def test_executed_notebook_keeps_a_readable_line_instead_of_a_stale_widget():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from utils.progress import progress\n"
        "for _ in progress(range(3), desc='evaluate ConvNet', unit='model'):\n"
        "    for _ in progress(range(2), desc='train', leave=False):\n"
        "        pass\n")]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=60,
                            resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
    texts = [o["data"].get("text/plain", "") for o in nb.cells[0].outputs if o["output_type"] == "display_data"]
    assert any(t.startswith("evaluate ConvNet: 3 model in ") for t in texts), texts
    assert not any("0%|" in t or "it/s]" in t for t in texts), texts
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in nb.cells[0].outputs)
