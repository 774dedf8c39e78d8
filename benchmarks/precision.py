"""fp32 against bf16 autocast for one evaluation network (100 CIFAR-10-sized images, DSA), interleaved rounds.

Run: `PYTHONPATH=. python benchmarks/precision.py --epochs 20 --rounds 4` (DD_COMPILE=0 for eager). The first round
is a warm-up; the medians of the others are printed. Measured numbers: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from utility import evaluate_training_set
from utils.augment import DSA, strategy_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    x, y = torch.randn(100, 3, 32, 32), torch.arange(10).repeat_interleave(10)
    test = (torch.randn(500, 3, 32, 32), torch.randint(0, 10, (500,)))
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for round_ in range(args.rounds):
        for precision in seconds:
            start = time.perf_counter()
            evaluate_training_set(x, y, test, channels=3, num_classes=10, im_size=(32, 32), n_models=1,
                                  epochs=args.epochs, augment=DSA(strategy_for("CIFAR10"), seed=0,
                                                                  device=torch.device("cpu")),
                                  precision=precision, device="cpu", progress=False)
            seconds[precision].append(time.perf_counter() - start)
            print(f"round {round_} {precision}: {seconds[precision][-1]:.2f} s", flush=True)
    medians = {p: statistics.median(s[1:]) for p, s in seconds.items()}
    print(f"median after the warm-up round: {medians}, bf16 / fp32 = {medians['bf16'] / medians['fp32']:.2f}, "
          f"{torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
