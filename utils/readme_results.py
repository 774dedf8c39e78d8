"""The README's results block, generated from `results/summary.md` (its run stamp and its targets table), so that
the README never states numbers the committed results do not hold: `python -m utils.readme_results`."""

from __future__ import annotations

import sys
from pathlib import Path

from utils.comparison import STAMP_PREFIX, TARGETS_TITLE
from utils.paths import PROJECT_ROOT, RESULTS_DIR
from utils.provenance import CHANGED_PREFIX, CODE_PREFIX, COMPUTE_PREFIX, PARTIAL_PREFIX
from utils.results import atomic_write

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def targets_lines(summary_text: str) -> list[str]:
    """The lines of the targets table under summary.md's targets heading (`TARGETS_TITLE`, or an earlier title
    starting with 'Targets' in a summary made before it changed); none if absent."""
    lines = summary_text.splitlines()
    heading = next((k for k, line in enumerate(lines) if line.startswith(f"## {TARGETS_TITLE.split()[0]}")), None)
    if heading is None:
        return []
    table = []
    for line in lines[heading + 1:]:
        if line.startswith("|"):
            table.append(line)
        elif table or line.startswith("#"):
            break
    return table


def render(summary_text: str) -> str:
    """The README block (without the markers) for a summary.md's text: its status line (partial results, changed
    code) first where it has one, its run stamp, code digest and targets table, or one line saying that the summary
    predates the targets table; its compute-time line (measured and projected) follows the code digest."""
    note = ("<!-- generated from results/summary.md by `python -m utils.readme_results` "
            "(and by `make results`); do not edit by hand -->")
    table = targets_lines(summary_text)
    if not table:
        return "\n".join([note, "", "The committed [`results/summary.md`](results/summary.md) predates the "
                          "targets table (issues 10 and 26); run `make results` to measure against the targets."])
    lines = summary_text.splitlines()
    stamp = next((line for line in lines if line.startswith(STAMP_PREFIX)),
                 f"{STAMP_PREFIX} wall time, machine and commit not recorded in results/summary.md.")
    status = [line for line in lines[:1] if line.startswith((PARTIAL_PREFIX, CHANGED_PREFIX))]
    firsts = (next((line for line in lines if line.startswith(prefix)), None)
              for prefix in (CODE_PREFIX, COMPUTE_PREFIX))
    code = [line for line in firsts if line]
    return "\n".join([*(f"{line}\n" for line in status), note, "",
                      f"{TARGETS_TITLE}, from [`results/summary.md`](results/summary.md):", "", stamp,
                      *("\n" + line for line in code), "", *table])


def block(readme_text: str) -> str:
    """The text between README's results markers (stripped)."""
    if START not in readme_text or END not in readme_text:
        raise ValueError(f"README has no {START} … {END} block")
    return readme_text.split(START, 1)[1].split(END, 1)[0].strip()


def update_readme(readme_path: str | Path = PROJECT_ROOT / "README.md",
                  summary_path: str | Path = RESULTS_DIR / "summary.md") -> Path:
    """Replace README's results block with `render(summary.md)`, atomically."""
    readme_path = Path(readme_path)
    text = readme_path.read_text()
    block(text)  # the markers must be there
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = f"{head}{START}\n{render(Path(summary_path).read_text())}\n\n{END}{tail}"
    return atomic_write(readme_path, lambda p: p.write_text(new))


def main() -> int:
    """Command-line entry point: regenerate the block of the repository's README from results/summary.md."""
    print(f"updated {update_readme()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
