"""Time one distribution-matching iteration on CIFAR-10: the project's step against an eager per-class loop.

Both do the same mathematics with the same random draws (checked before timing): the project's step embeds the
synthetic images of all classes in one forward and the real batches class by class, through the compiled `embed`
(`utils/compiled.py`, unless DD_COMPILE=0); the reference loop embeds class by class eagerly, as in the paper's code.

    PYTHONPATH=. DD_DATA_ROOT=/path/to/datasets python benchmarks/dm_iteration.py [--device cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from utility import RunContext, get_device, resolve_precision
from utils.compiled import autocast
from utils.data import load_dataset
from utils.distill import DistillTask, DistributionMatchingConfig
from utils.distill.distribution_matching import DistributionMatching, embedding_network


def per_class_step(distiller: DistributionMatching) -> float:
    """Reference: one DM iteration with one real and one synthetic forward per class."""
    device, precision = distiller.device, distiller.precision
    net = embedding_network(distiller.config.architecture, distiller.data, device)
    ipc, loss = distiller.task.ipc, torch.zeros((), device=device)
    for c, idx in enumerate(distiller.class_indices):
        pick = idx[torch.randperm(len(idx), generator=distiller.generator)[: distiller.config.real_batch]]
        real = distiller.x_train[pick.to(device)]
        syn = distiller.images[c * ipc:(c + 1) * ipc]
        params = distiller.dsa.sample(max(len(real), len(syn)))
        with torch.no_grad(), autocast(device, precision):
            real_mean = net.embed(distiller.dsa.apply(real, params)).float().mean(0)
        with autocast(device, precision):
            syn_mean = net.embed(distiller.dsa.apply(syn, params)).float().mean(0)
        loss = loss + ((real_mean - syn_mean) ** 2).sum()
    distiller.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distiller.optimizer.step()
    return loss.item() / distiller.data.num_classes


def seconds_per_iteration(step: Callable[[DistributionMatching], float], distiller: DistributionMatching,
                          repeats: int) -> float:
    """Mean wall time of `repeats` iterations (the agreement check before has warmed both up)."""
    if distiller.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step(distiller)
    if distiller.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    """Parse arguments, check that both implementations agree, then time them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--real-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = get_device(args.device)
    precision = resolve_precision(args.precision, device)
    data = load_dataset("CIFAR10")
    distiller = DistributionMatching(data, DistillTask("CIFAR10", args.ipc, "real"),
                                     DistributionMatchingConfig(real_batch=args.real_batch),
                                     RunContext(0, device, precision))
    state = distiller.state_dict()
    torch.manual_seed(0)
    batched_loss = distiller.step()
    distiller.load_state_dict(state)
    torch.manual_seed(0)
    looped_loss = per_class_step(distiller)
    print(f"CIFAR-10 ipc {args.ipc}, real batch {args.real_batch}, {device} {precision}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"same draws: batched loss {batched_loss:.6f}, per-class loss {looped_loss:.6f}")
    batched = seconds_per_iteration(DistributionMatching.step, distiller, args.repeats)
    looped = seconds_per_iteration(per_class_step, distiller, args.repeats)
    print(f"batched:   {batched:.4f} s/iteration")
    print(f"per-class: {looped:.4f} s/iteration")
    print(f"speed-up (per-class / batched): {looped / batched:.2f}x")


if __name__ == "__main__":
    main()
