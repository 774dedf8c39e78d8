"""Time gradient-matching iterations with DSA on CIFAR-10, ipc 10, at the papers' settings (outer loop 10,
inner loop 50, real batch 256), and compare with the papers' own implementation on the same 2-core machine
(about 240 s per iteration, measured there and reported in the project's issue tracker).

    PYTHONPATH=. DD_DATA_ROOT=/path/to/datasets python benchmarks/gm_iteration.py [--precision fp32|bf16|auto]
"""

from __future__ import annotations

import argparse
import time

import torch

from utility import RunContext, get_device, resolve_precision
from utils.data import load_dataset
from utils.distill import DistillTask
from utils.distill.gradient_matching import GradientMatching, GradientMatchingConfig

REFERENCE_SECONDS = 240.0   # papers' implementation, CIFAR-10 ipc 10, one iteration, these 2 cores


def main() -> None:
    """Run `--iterations` iterations and print seconds per iteration and the ratio to the reference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--iterations", type=int, default=1)
    args = parser.parse_args()
    device = get_device(args.device)
    precision = resolve_precision(args.precision, device)
    data = load_dataset("CIFAR10")
    distiller = GradientMatching(data, DistillTask("CIFAR10", 10, "real"), GradientMatchingConfig(),
                                 RunContext(0, device, precision))
    print(f"CIFAR-10 ipc 10, outer 10, inner 50, real batch 256, DSA; {device} {precision}, "
          f"{torch.get_num_threads()} threads")
    for k in range(args.iterations):
        start = time.perf_counter()
        loss = distiller.step()
        seconds = time.perf_counter() - start
        print(f"iteration {k}: {seconds:.1f} s (loss {loss:.3f}); papers' implementation {REFERENCE_SECONDS:.0f} s "
              f"-> {REFERENCE_SECONDS / seconds:.2f}x faster", flush=True)


if __name__ == "__main__":
    main()
