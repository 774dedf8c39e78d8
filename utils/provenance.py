"""What a results folder holds and where it came from: `<results>/provenance.json` (the code digest with its
per-file hashes, the commit, the notebooks finished at that digest, what is missing), the status line that opens
summary.md, the report and the README block (partial, or made by other code than the checkout's), and the
per-notebook machine, precision and compute time summed from the unit records (`utils.ledger`), and that time
measured and projected for other machines (`<results>/projections/`, written by `benchmarks/avx2_projection.py`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from utils.digest import changed_files, code_digest, code_hashes
from utils.ledger import records
from utils.results import atomic_write, code_commit

FILE = "provenance.json"
PARTIAL_PREFIX = "**Partial results:**"
CHANGED_PREFIX = "**Code changed since these results:**"
CODE_PREFIX = "**Code:**"
COMPUTE_PREFIX = "**Compute time:**"
PROJECTIONS = "projections"
SECTION = "## Provenance per notebook"


def read(results_dir: str | Path) -> dict:
    """`<results>/provenance.json` (empty for a folder written before it existed or an unreadable one)."""
    try:
        found = json.loads(Path(results_dir, FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def update(results_dir: str | Path, finished: list[str], all_notebooks: list[str]) -> dict:
    """Record the notebooks `finished` by this run at the checkout's code digest (keeping those an earlier run
    finished at the same digest), what of `all_notebooks` is still missing, and write it atomically."""
    before = read(results_dir)
    digest = code_digest()
    done = {name: entry for name, entry in before.get("notebooks", {}).items() if entry.get("code") == digest}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    done.update({name: {"code": digest, "finished": now} for name in finished})
    stale = sum(1 for r in records(results_dir) if r["stamp"].get("code") != digest)
    result = {"code": digest, "files": code_hashes(), "commit": code_commit(), "notebooks": dict(sorted(done.items())),
              "missing": [name for name in all_notebooks if name not in done], "stale units": stale}
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    atomic_write(Path(results_dir, FILE), lambda p: p.write_text(text))
    return result


def status_line(results_dir: str | Path) -> str:
    """The line that opens summary.md, the report and the README block: partial (naming what is missing) and/or
    made by code other than the checkout's (naming the changed files); empty when neither."""
    found = read(results_dir)
    if not found:
        return ""
    parts = []
    if found.get("missing"):
        stale = found.get("stale units", 0)
        parts.append(f"{PARTIAL_PREFIX} not finished at code digest `{found['code']}`: "
                     f"{', '.join(found['missing'])}" + (f" ({stale} unit records of older code)" if stale else "")
                     + ".")
    if found.get("code") != code_digest():
        changed = changed_files(found.get("files", {}))
        parts.append(f"{CHANGED_PREFIX} they are at digest `{found.get('code')}` (commit {found.get('commit')}), "
                     f"the checkout at `{code_digest()}`; changed: {', '.join(changed) or 'unknown'}.")
    return " ".join(parts)


def code_line(results_dir: str | Path) -> str:
    """'**Code:** digest …, commit …' of the results (empty without provenance.json)."""
    found = read(results_dir)
    return f"{CODE_PREFIX} digest `{found['code']}`, commit {found.get('commit')}." if found.get("code") else ""


def per_notebook(results_dir: str | Path) -> pd.DataFrame:
    """Per notebook, from its unit records at the results' code digest: machine(s), precision(s), units and
    compute time (the sum of the units' wall seconds), then a total row."""
    digest = read(results_dir).get("code")
    groups: dict[str, list[dict]] = {}
    for r in records(results_dir):
        if r["stamp"].get("code") == digest:
            groups.setdefault(str(r["stamp"].get("notebook", "?")), []).append(r["stamp"])
    rows = [{"notebook": name,
             "machine": "; ".join(sorted({s.get("machine", "?") for s in stamps})),
             "precision": "/".join(sorted({s.get("precision", "?") for s in stamps})),
             "units": len(stamps), "compute time (s)": round(sum(s.get("seconds", 0.0) for s in stamps), 1)}
            for name, stamps in sorted(groups.items())]
    if rows:
        rows.append({"notebook": "total", "machine": "", "precision": "", "units": sum(r["units"] for r in rows),
                     "compute time (s)": round(sum(r["compute time (s)"] for r in rows), 1)})
    return pd.DataFrame(rows, columns=["notebook", "machine", "precision", "units", "compute time (s)"])


def write_projection(results_dir: str | Path, name: str, projection: dict) -> Path:
    """Record a dry-run projection of these results' compute time on another machine as
    `<results>/projections/<name>.json`, stamped with the checkout's code digest (it is shown only beside results
    at that digest); `projection` holds at least `hours` (total) and `machine` (what it projects for)."""
    record = {**projection, "code": code_digest(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    return atomic_write(Path(results_dir, PROJECTIONS, f"{name}.json"), lambda p: p.write_text(text))


def projections(results_dir: str | Path) -> list[dict]:
    """The projections recorded at the results' code digest, by file name (unreadable ones left out)."""
    digest, found = read(results_dir).get("code"), []
    for path in sorted(Path(results_dir, PROJECTIONS).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("code") == digest and "hours" in record:
            found.append(record)
    return found


def compute_line(results_dir: str | Path, table: pd.DataFrame) -> str:
    """'**Compute time:** … h measured …; … h projected …': the sum of the unit times of `table` (`per_notebook`)
    with their machines and precisions, then each projection at the same digest (empty without unit records)."""
    if table.empty:
        return ""
    units = table[table["notebook"] != "total"]
    machines = "; ".join(sorted({m for cell in units["machine"] for m in cell.split("; ")}))
    precisions = "/".join(sorted({p for cell in units["precision"] for p in cell.split("/")}))
    parts = [f"{table['compute time (s)'].iloc[-1] / 3600:.2f} h measured (the sum of the unit times) on {machines}, "
             f"precision {precisions}"]
    parts += [f"{p['hours']:.2f} h projected for {p['machine']} ({p.get('how', 'dry run')}, {p['date'][:10]})"
              for p in projections(results_dir)]
    return f"{COMPUTE_PREFIX} " + "; ".join(parts) + "."


def annotate_summary(results_dir: str | Path) -> Path:
    """Open `<results>/summary.md` with the `status_line` and end it with the code line and the per-notebook
    provenance (replacing earlier ones); a folder without summary.md (a run stopped before 08) gets one holding
    just these."""
    path = Path(results_dir) / "summary.md"
    text = path.read_text() if path.exists() else "# Dataset distillation: results summary\n"
    lines = [line for line in text.split("\n") if not line.startswith((PARTIAL_PREFIX, CHANGED_PREFIX))]
    if SECTION in lines:
        lines = lines[:lines.index(SECTION)]
    while lines and lines[0] == "":
        lines.pop(0)
    while lines and lines[-1] == "":
        lines.pop()
    status, table = status_line(results_dir), per_notebook(results_dir)
    compute = compute_line(results_dir, table)
    body = [*([status, ""] if status else []), *lines, "", SECTION, "", code_line(results_dir), "",
            *([compute, ""] if compute else []),
            "Each notebook's machine(s), precision(s) and compute time: the sum of the wall seconds of its units "
            "(evaluations, trainings, expert buffers, distillations) recorded under `units/`.", "",
            table.to_markdown(index=False) if len(table) else "No unit records yet.", ""]
    return atomic_write(path, lambda p: p.write_text("\n".join(body)))
