"""Project a profile's compute time on an AVX2-only CPU from a CPU with AVX-512: the dry run with AVX-512 masked.

`python benchmarks/avx2_projection.py [--profile cpu] [--results-dir results]` runs the measured dry run
(`utils.dry_run`, one step of every distinct unit) with ATen's kernels and Inductor's generated code held to AVX2
(`ATEN_CPU_CAPABILITY=avx2`), oneDNN's convolutions held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`) and the precision an
AVX2-only CPU resolves to (fp32: it has no native bf16). The clock, caches and core count stay those of the machine
it runs on, so this is a projection, not a measurement. It prints the table and records the total in
`<results>/projections/<profile>_avx2.json` at the checkout's code digest, which summary.md and the README block
quote beside the measured compute time after the next `make results`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import utility  # noqa: E402
from utils.dry_run import dry_run, hours_per_notebook  # noqa: E402
from utils.paths import RESULTS_DIR  # noqa: E402
from utils.profiles import PROFILES  # noqa: E402
from utils.provenance import write_projection  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Mask AVX-512 and native bf16, run the measured dry run of the profile and record its projected hours."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    utility._bf16_native = lambda device: False
    cpu = torch.device("cpu")
    precision = utility.resolve_precision(PROFILES[args.profile].precision, cpu)
    how = (f"measured dry run on {utility.hardware_name(cpu)} with ATen capability "
           f"{torch.backends.cpu.get_cpu_capability()}, oneDNN capped at AVX2, precision {precision}, "
           f"torch {torch.__version__}")
    print(how, flush=True)
    table = dry_run(PROFILES[args.profile], cpu, measure=True)
    print(table.to_markdown(index=False))
    per_notebook = hours_per_notebook(table).round(3)
    hours = float(per_notebook.sum())
    print(f"\nprojected hours per notebook: {per_notebook.to_dict()}, total {hours:.2f} h")
    path = write_projection(args.results_dir, f"{args.profile}_avx2", {
        "machine": f"an AVX2-only CPU with {os.cpu_count()} cores, no native bf16", "how": how, "hours": hours,
        "profile": args.profile, "hours per notebook": per_notebook.to_dict(),
        "command": "python benchmarks/avx2_projection.py --profile " + args.profile})
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
