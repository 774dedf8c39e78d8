"""Trajectory-matching settings side by side on one dataset: distil with each variant, evaluate under the headline
protocol (ConvNet, DSA, 300 epochs, the learned lr, the whole test set) with a few networks.

Run: `PYTHONPATH=. python benchmarks/mtt_variants.py --dataset MNIST --init real --models 2 \
      base: lr_teacher=0.03 expert_epochs=1,max_start_epoch=3`
Each variant is `name:key=value,...` (or just `key=value,...`) on top of the `cpu` profile's MTT configuration for
the dataset and init; `base:` (no keys) is that configuration itself. Iteration counts are variant keys too. Prints
one row per variant: accuracy mean ± std, the learned lr, how far the images moved (rms of the change over rms of the
start) and the distillation seconds. Measured numbers: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace

import torch

from utility import RunContext, evaluate_training_set, resolve_precision, set_seed
from utils.augment import DSA, strategy_for
from utils.data import load_dataset
from utils.distill.base import DistillTask
from utils.distill.trajectory_matching import TrajectoryMatching, TrajectoryMatchingConfig, _experts
from utils.profiles import get_profile
from utils.zca import zca_whiten


def parse_variant(text: str, base: TrajectoryMatchingConfig) -> tuple[str, TrajectoryMatchingConfig]:
    """`name:key=value,...` -> (name, config); values are cast to the type of the base's field."""
    name, _, assignments = text.rpartition(":")
    types = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    changes = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        if key not in types:
            raise ValueError(f"Unknown TrajectoryMatchingConfig field {key!r}; allowed: {', '.join(types)}")
        if types[key] is bool:
            changes[key] = value.lower() == "true"
        elif types[key] is type(None):   # an optional field: an int where the text is one, else a float
            changes[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        else:
            changes[key] = types[key](value)
    return name or assignments, replace(base, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--dataset", default="MNIST")
    parser.add_argument("--init", default="real", choices=("real", "noise"))
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    device = torch.device("cpu")
    context = RunContext(seed=0, device=device, precision=resolve_precision(args.precision, device))
    data = load_dataset(args.dataset)
    base = get_profile("cpu").method_config("mtt", args.dataset, 10, args.init)
    task = DistillTask(args.dataset, 10, args.init)
    for text in args.variants:
        name, config = parse_variant(text, base)
        set_seed(context.seed)
        distiller = TrajectoryMatching(data, task, config, context, **_experts(data, config, context))
        start_images = distiller.images.detach().clone()
        start = time.perf_counter()
        losses = [distiller.step() for _ in range(config.iterations)]
        seconds = time.perf_counter() - start
        images, labels, lr = distiller.synthetic()
        moved = ((images - start_images).pow(2).mean() / start_images.pow(2).mean()).sqrt().item()
        test = zca_whiten(data) if config.zca else data   # a ZCA set is tested on whitened images
        result = evaluate_training_set(images, labels, (test.x_test, test.y_test), channels=data.channels,
                                       num_classes=data.num_classes,
                                       im_size=data.im_size, n_models=args.models, lr=lr,
                                       augment=DSA(strategy_for(data.name), seed=context.seed, device=device),
                                       precision=context.precision, device=device, progress=False)
        print(f"{name}: {result.summary()} ({args.models} nets), lr {lr:.4f}, moved {100 * moved:.1f} %, "
              f"loss {losses[0]:.3f} -> {sum(losses[-5:]) / len(losses[-5:]):.3f}, {seconds:.0f} s distilling",
              flush=True)


if __name__ == "__main__":
    main()
