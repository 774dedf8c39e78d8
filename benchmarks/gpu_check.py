"""One short GPU check: the `paper` profile's dry run measured on CUDA, and one notebook run end to end on CUDA.

Run on a GPU machine (`results/` need not be there; MHIST is read from `--data-root`):

    python benchmarks/gpu_check.py --out OUT --data-root DATA

Writes to OUT: `versions.txt`; `paper_eager.md` (`utils.dry_run --profile paper --measure --device cuda` with
`DD_COMPILE=0`, every notebook); `paper_compiled_01.md` (the same for notebook 01 with compilation on, to
compare a compiled training step with the eager one); `notebook_05_smoke.log`, `notebook_05_smoke_files.txt` and
`notebook_05_smoke_table.md` (notebook 05 in the `smoke` profile on CUDA with compilation on, the files it wrote
and its table, in a fresh temporary folder unless `--results-dir` names one). Each part runs in its own process
under its own time limit, so a part that runs over loses only its own output. The notebook's code cells run in
order in one namespace with the parameters cell replaced, as papermill would run them, so the check needs neither
papermill nor a Jupyter kernel (the GPU image has neither); `display(Markdown(...))` prints where IPython is
absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = (  # (output file, seconds allowed, extra environment, arguments after `python`)
    ("paper_eager.md", 200, {"DD_COMPILE": "0"}, ["-m", "utils.dry_run", "--profile", "paper", "--measure",
                                                  "--device", "cuda"]),
    ("notebook_05_smoke.log", 130, {}, [__file__, "--execute", "05_mhist"]),
    ("paper_compiled_01.md", 80, {}, ["-m", "utils.dry_run", "--profile", "paper", "--measure", "--device", "cuda",
                                      "--only", "01"]),
)


IPYTHON_IMPORT = "from IPython.display import Markdown, display"


def _without_ipython(source: str, namespace: dict) -> str:
    """Where IPython is absent, `display(Markdown(text))` prints the text (a stub module would break matplotlib)."""
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        namespace.update(display=print, Markdown=str)
        return source.replace(IPYTHON_IMPORT, "")
    return source


def execute(notebook: str, data_root: str, results_dir: str, device: str = "cuda") -> None:
    """Run a notebook's code cells in order, its `parameters` cell replaced by smoke parameters on `device`."""
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    namespace: dict = {"__name__": "__main__"}
    for number, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = (f"profile = 'smoke'\ndata_root = {data_root!r}\nresults_dir = {results_dir!r}\nseed = 0\n"
                      f"device = {device!r}\nexecutor = 'local'\n")
        source = _without_ipython(source, namespace)
        print(f"--- cell {number}", flush=True)
        exec(compile(source, f"{notebook} cell {number}", "exec"), namespace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--data-root", default=os.environ.get("DD_DATA_ROOT", "data"))
    parser.add_argument("--results-dir", default=None, help="where notebook 05 writes (default: a new temporary dir)")
    parser.add_argument("--execute", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.results_dir = args.results_dir or tempfile.mkdtemp(prefix="gpu_check_")
    if args.execute:
        execute(args.execute, args.data_root, args.results_dir, args.device)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    (args.out / "versions.txt").write_text(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}, "
        f"{torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB\n")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "DD_DATA_ROOT": args.data_root}
    failed = 0
    for name, seconds, extra, command in PARTS:
        if "--execute" in command:
            command = [*command, "--data-root", args.data_root, "--results-dir", args.results_dir]
        with open(args.out / name, "w") as log:
            try:
                code = subprocess.run([sys.executable, *command], cwd=ROOT, env={**env, **extra}, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=seconds).returncode
            except subprocess.TimeoutExpired:
                code = f"timed out after {seconds} s"
        print(f"{name}: exit {code}", flush=True)
        failed += code != 0
    results = Path(args.results_dir)
    files = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    (args.out / "notebook_05_smoke_files.txt").write_text("\n".join(files) + "\n")
    table = results / "tables" / "05_mhist.md"
    if table.is_file():
        (args.out / "notebook_05_smoke_table.md").write_text(table.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
