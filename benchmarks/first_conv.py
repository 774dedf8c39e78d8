"""MNIST's first ConvNet layer: `nn.Conv2d(1, 128, 3, padding=3)` against `networks.FirstConv` (an explicit zero
pad of 2, then the conv's own padding of 1; the same function and parameters), inside the whole ConvNet.

Run: `python benchmarks/first_conv.py [--steps 20] [--rounds 3]` on a quiet machine. One compiled training step on
100 MNIST-shaped images (the size of an ipc-10 set), interleaved A B A B, median ms per step of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from networks import ConvNet
from utility import get_device, hardware_name, resolve_precision
from utils import compiled


def with_plain_first_conv(model: ConvNet) -> ConvNet:
    """The same network with its first layer as the plain padded `nn.Conv2d` the DC code uses."""
    first = model.features[0]
    plain = nn.Conv2d(first.in_channels, first.out_channels, first.kernel_size, padding=first.padding[0] + first.extra)
    plain.load_state_dict(first.state_dict())
    model.features[0] = plain
    return model


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, precision: str) -> float:
    """Milliseconds per compiled SGD step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        compiled.train_step(model, x, y, precision=precision, batch_rows=len(x))
        optimizer.step()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    device = get_device("cpu")
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    models = {"nn.Conv2d(padding=3)": with_plain_first_conv(ConvNet(1, 10, (28, 28))),
              "FirstConv": ConvNet(1, 10, (28, 28))}
    for model in models.values():
        time_steps(model, x, y, 3, precision)   # compile and warm up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(time_steps(model, x, y, args.steps, precision))
    print(f"{hardware_name(device)}, precision {precision}")
    for name, values in times.items():
        print(f"{name:>22}: {statistics.median(values):7.1f} ms/step")
    plain, ours = (statistics.median(v) for v in times.values())
    print(f"speed-up: {plain / ours:.2f}x")


if __name__ == "__main__":
    main()
