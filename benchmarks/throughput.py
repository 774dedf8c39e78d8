"""ConvNet training/evaluation throughput (images/s) through the harness vs a bare PyTorch loop.

Run: `python benchmarks/throughput.py [--images 5120] [--epochs 2]` on a quiet machine. Compares fp32 and bf16
autocast (where the CPU has native bf16), contiguous and channels_last memory formats; the harness row uses
`utility.train` / `utility.predict` exactly as the notebooks do. Measured numbers: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from networks import get_network
from utility import get_device, predict, resolve_precision, set_seed, train
from utils.compiled import autocast


def bare_train(model, x, y, epochs: int, precision: str, device) -> None:
    """The minimal SGD loop the harness is compared with."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(256):
            with autocast(device, precision):
                loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def bare_eval(model, x, precision: str, device) -> None:
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        for start in range(0, len(x), 1024):
            model(x[start:start + 1024])


def measure(fn, device: torch.device) -> float:
    """Wall seconds of `fn`; on a GPU, after the queued kernels have finished (CUDA calls return early)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = get_device("auto")
    x = torch.randn(args.images, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.images,), device=device)
    print(f"device {device}, threads {torch.get_num_threads()}, {args.images} CIFAR-sized images, "
          f"{args.epochs} epochs")
    print(f"{'variant':34s} {'train img/s':>12s} {'eval img/s':>12s}")
    native = resolve_precision("auto", device) == "bf16"
    if not native:
        print("bf16 skipped: this CPU has no native bf16 (autocast would emulate it, about 9x slower here)")
    for precision in ("fp32", "bf16") if native else ("fp32",):
        for memory_format in (torch.contiguous_format, torch.channels_last):
            xs = x.contiguous(memory_format=memory_format)
            fmt = "channels_last" if memory_format == torch.channels_last else "contiguous"
            for runner in ("bare", "harness"):
                t_train, t_eval = time_runner(runner, xs, y, args.epochs, precision, device, memory_format)
                name = f"{runner} {precision} {fmt}"
                print(f"{name:34s} {args.images * args.epochs / t_train:12.0f} {args.images / t_eval:12.0f}",
                      flush=True)


def time_runner(runner: str, x, y, epochs: int, precision: str, device, memory_format) -> tuple[float, float]:
    """Seconds to train `epochs` epochs and to evaluate once, with the bare loop or the harness."""
    set_seed(0)
    model = get_network("ConvNet", 3, 10, 32).to(device, memory_format=memory_format)
    bare_train(model, x[:512], y[:512], 1, precision, device)   # warm-up
    if runner == "bare":
        return (measure(lambda: bare_train(model, x, y, epochs, precision, device), device),
                measure(lambda: bare_eval(model, x, precision, device), device))
    return (measure(lambda: train(model, x, y, epochs=epochs, precision=precision), device),
            measure(lambda: predict(model, x, precision=precision), device))


if __name__ == "__main__":
    main()
