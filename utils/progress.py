"""Progress bars that are live while a loop runs and leave one readable line once it ends.

In a Jupyter kernel the live bar is tqdm's widget; when the loop ends the widget's output is replaced in place by
a plain-text line (items, time, rate), so an executed notebook shows that line wherever widgets do not render
(GitHub, nbviewer, `jupyter nbconvert`). Elsewhere (a terminal, a log) the bar is tqdm's text bar on stderr and
the closing line goes to stdout. A bar made with `leave=False` disappears without a line, as in tqdm.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import std


def summary_line(desc: str, n: int, total: int | None, elapsed: float, unit: str = "it", initial: int = 0) -> str:
    """'<desc>: <n>[/<total>] <unit> in <time> (<rate>)', e.g. 'evaluate ConvNet: 3 model in 00:45 (15.00 s/model)';
    the rate counts only the items done since `initial` (a resumed loop)."""
    count = f"{n}/{total}" if total is not None and total != n else f"{n}"
    rate = (n - initial) / elapsed if elapsed > 0 else 0.0
    speed = f"{rate:.2f} {unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.2f} s/{unit}"
    return f"{desc}: {count} {unit} in {std.tqdm.format_interval(elapsed)} ({speed})"


class _ClosingLine:
    """Mixin: the first close of a visible bar reports `summary_line` (None for a bar made with `leave=False`)."""

    def _setup(self, keep_line: bool) -> None:
        self._keep_line, self._reported = keep_line, self.disable

    def close(self) -> None:
        line, report = None, not getattr(self, "_reported", True)
        if report:
            self._reported = True
            fmt = self.format_dict
            if self._keep_line:
                line = summary_line(self.desc.rstrip(": ") or "progress", fmt["n"], fmt["total"], fmt["elapsed"],
                                    fmt["unit"], fmt["initial"])
        super().close()
        if report:
            self._report(line)


class TextProgress(_ClosingLine, std.tqdm):
    """tqdm's text bar on stderr, cleared when done and followed by the closing line on stdout."""

    def __init__(self, *args, leave: bool = True, **kwargs):
        super().__init__(*args, leave=False, **kwargs)
        self._setup(leave)

    def _report(self, line: str | None) -> None:
        if line is not None:
            print(line, file=sys.stdout, flush=True)


def _in_kernel() -> bool:
    """Whether this code runs in a Jupyter (IPython) kernel."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def _notebook_progress() -> type | None:
    """The widget bar class for a Jupyter kernel (None when ipywidgets is missing)."""
    try:
        from IPython.display import Pretty, display
        from tqdm import notebook
    except ImportError:
        return None
    if notebook.IProgress is None:
        return None

    class NotebookProgress(_ClosingLine, notebook.tqdm):
        """tqdm's widget, replaced by the closing line (in the live page and in the saved notebook)."""

        def __init__(self, *args, leave: bool = True, **kwargs):
            super().__init__(*args, display=False, leave=leave, **kwargs)
            self._setup(leave)
            self._handle = None if self.disable else display(self.container, display_id=True)

        def _report(self, line: str | None) -> None:
            if self._handle is not None:
                self._handle.update(Pretty(line or ""))

    return NotebookProgress


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, initial: int = 0,
             unit: str = "it", leave: bool = True, disable: bool = False) -> std.tqdm:
    """A tqdm bar over `iterable` (widget in Jupyter, text elsewhere) that leaves `summary_line` when done."""
    cls = (_notebook_progress() if _in_kernel() else None) or TextProgress
    return cls(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=leave, disable=disable)
