"""Time the official implementations and this project side by side, interleaved, on the same data and machine.

The official code is not part of this project: clone (or export) VICO-UoE/DatasetCondensation and
GeorgeCazenavette/mtt-distillation yourself and pass their folders. The script imports their functions
(`get_network`, `match_loss`, `DiffAugment`, `ParamDiffAug`, `evaluate_synset`, `epoch`, `ReparamModule`) and runs
one iteration the way their `main.py` (DSA), `main_DM.py` and `distill.py` do; our side runs the project's own
distillers and harness with its defaults (compiled, `precision='auto'`).

    PYTHONPATH=. DD_DATA_ROOT=/path/to/datasets python benchmarks/compare_official.py \\
        --official /tmp/official_dc --official-mtt /tmp/official_mtt [--quick] [--cases dm,gm-quick] [--device cuda]

Per case: warm-up iterations of both sides, then `--repeats` rounds of (official, ours), each timed and its peak
memory measured (`PeakMemory`: resident memory above the level before the call on a CPU, the allocator's peak on a
GPU); the table shows the median seconds, the ratio official/ours, and the largest peak of each side.

What is worked around in the official code (nothing in it is edited):
- Their `utils.py`/`networks.py` share names with this project's modules; they are imported under their own
  names and this project's modules are restored afterwards.
- MTT's `utils.py` imports `kornia` (for ZCA only, which is not timed here); a stub module stands in if kornia is
  missing. `distill.py` itself is not imported (it starts wandb at import); its iteration is re-stated below.
- Both pick `cuda` whenever a GPU is visible; `--device` sets `args.device` and moves their networks explicitly.
- MTT experts: both sides get the same random trajectories (a freshly initialised network plus noise per
  epoch), since only the time of an iteration is measured; ZCA is off on both sides (it does not change the cost).
- Evaluation and full-data training are timed over a fraction of the work and extrapolated, as printed.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import utility
from utils.augment import DSA
from utils.data import Dataset, load_dataset
from utils.distill import DistillTask
from utils.distill import trajectory_matching as tm
from utils.distill.base import PeakMemory
from utils.distill.distribution_matching import DistributionMatching, DistributionMatchingConfig
from utils.distill.gradient_matching import GradientMatching, GradientMatchingConfig

IPC, CLASSES, REAL_BATCH = 10, 10, 256
STRATEGY = "color_crop_cutout_flip_scale_rotate"


def load_official(folder: Path, modules: tuple[str, ...]) -> dict[str, types.ModuleType]:
    """Import `modules` from `folder` under their own names, then restore this project's modules of those names."""
    if not folder.is_dir():
        raise SystemExit(f"official code folder {folder} does not exist; clone the repository there first")
    names = dict.fromkeys((*modules, "networks", "utils"))
    saved = {m: sys.modules.pop(m) for m in names if m in sys.modules}
    stub = "kornia" not in sys.modules and importlib.util.find_spec("kornia") is None
    if stub:
        sys.modules["kornia"] = types.ModuleType("kornia")
    sys.path.insert(0, str(folder))
    try:
        return {m: importlib.import_module(m) for m in modules}
    finally:
        sys.path.remove(str(folder))
        for m in names:
            sys.modules.pop(m, None)
        if stub:
            del sys.modules["kornia"]
        sys.modules.update(saved)


@dataclass
class Case:
    """One row of the table: a name, the two iterations, and how to scale one timed call to the reported unit."""

    name: str
    official: Callable[[], object]
    ours: Callable[[], object]
    unit: str = "s / iteration"
    scale: float = 1.0


def official_args(off, device: torch.device, **extra) -> types.SimpleNamespace:
    """The `args` namespace their functions read."""
    return types.SimpleNamespace(device=str(device), dsa=True, dsa_strategy=STRATEGY, dsa_param=off.ParamDiffAug(),
                                 dis_metric="ours", dc_aug_param=None, lr_net=0.01, batch_train=256, **extra)


def class_images(data: Dataset, device: torch.device) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The training images on `device` and each class's indices, as their `main*.py` keep them."""
    return data.x_train.to(device), [np.flatnonzero(data.y_train.numpy() == c) for c in range(CLASSES)]


def initial_syn(images: torch.Tensor, indices: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    syn = torch.cat([images[np.random.permutation(idx)[:IPC]] for idx in indices]).detach().requires_grad_(True)
    return syn, torch.arange(CLASSES, device=images.device).repeat_interleave(IPC)


def official_dm(off, data: Dataset, device: torch.device) -> Callable[[], float]:
    """One iteration of `main_DM.py` (ConvNet branch), CIFAR-10 ipc 10, DSA."""
    args = official_args(off, device)
    images, indices = class_images(data, device)
    syn, _ = initial_syn(images, indices)
    optimizer = torch.optim.SGD([syn], lr=1.0, momentum=0.5)

    def iteration() -> float:
        net = off.get_network("ConvNet", 3, CLASSES, (32, 32)).to(device)
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        loss = torch.tensor(0.0).to(device)
        for c in range(CLASSES):
            img_real = images[np.random.permutation(indices[c])[:REAL_BATCH]]
            img_syn = syn[c * IPC:(c + 1) * IPC]
            seed = int(time.time() * 1000) % 100000
            img_real = off.DiffAugment(img_real, args.dsa_strategy, seed=seed, param=args.dsa_param)
            img_syn = off.DiffAugment(img_syn, args.dsa_strategy, seed=seed, param=args.dsa_param)
            output_real = net.embed(img_real).detach()
            output_syn = net.embed(img_syn)
            loss += torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item() / CLASSES

    return iteration


def official_gm(off, data: Dataset, device: torch.device, outer_loop: int, inner_loop: int) -> Callable[[], float]:
    """One iteration of `main.py --method DSA` (ConvNet, no BatchNorm), CIFAR-10 ipc 10."""
    args = official_args(off, device)
    images, indices = class_images(data, device)
    syn, labels = initial_syn(images, indices)
    optimizer_img = torch.optim.SGD([syn], lr=0.1, momentum=0.5)
    criterion = nn.CrossEntropyLoss().to(device)

    def iteration() -> float:
        net = off.get_network("ConvNet", 3, CLASSES, (32, 32)).to(device)
        net.train()
        net_parameters = list(net.parameters())
        optimizer_net = torch.optim.SGD(net.parameters(), lr=args.lr_net)
        optimizer_net.zero_grad()
        loss_avg = 0.0
        for ol in range(outer_loop):
            loss = torch.tensor(0.0).to(device)
            for c in range(CLASSES):
                img_real = images[np.random.permutation(indices[c])[:REAL_BATCH]]
                lab_real = torch.ones((img_real.shape[0],), device=device, dtype=torch.long) * c
                img_syn = syn[c * IPC:(c + 1) * IPC]
                lab_syn = torch.ones((IPC,), device=device, dtype=torch.long) * c
                seed = int(time.time() * 1000) % 100000
                img_real = off.DiffAugment(img_real, args.dsa_strategy, seed=seed, param=args.dsa_param)
                img_syn = off.DiffAugment(img_syn, args.dsa_strategy, seed=seed, param=args.dsa_param)
                gw_real = torch.autograd.grad(criterion(net(img_real), lab_real), net_parameters)
                gw_real = [g.detach().clone() for g in gw_real]
                gw_syn = torch.autograd.grad(criterion(net(img_syn), lab_syn), net_parameters, create_graph=True)
                loss += off.match_loss(gw_syn, gw_real, args)
            optimizer_img.zero_grad()
            loss.backward()
            optimizer_img.step()
            loss_avg += loss.item()
            if ol == outer_loop - 1:
                break
            train_set = off.TensorDataset(copy.deepcopy(syn.detach()), copy.deepcopy(labels.detach()))
            loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_train, shuffle=True, num_workers=0)
            for _ in range(inner_loop):
                off.epoch("train", loader, net, optimizer_net, criterion, args, aug=True)
        return loss_avg / (CLASSES * outer_loop)

    return iteration


def random_trajectory(net: nn.Module, epochs: int, seed: int) -> list[torch.Tensor]:
    """A stand-in expert: the network's flat parameters plus a little noise per epoch."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.cat([p.detach().flatten() for p in net.parameters()]).cpu()
    return [flat + 0.01 * e * torch.randn(flat.shape, generator=g) for e in range(epochs + 1)]


def official_mtt(off, reparam, data: Dataset, device: torch.device, trajectory: list[torch.Tensor],
                 settings: dict) -> Callable[[], float]:
    """One iteration of `distill.py` (ipc 10 settings, batch_syn = all images, DSA, no ZCA, one device)."""
    args = official_args(off, device)
    images, indices = class_images(data, device)
    syn, labels = initial_syn(images, indices)
    syn_lr = torch.tensor(settings["lr_teacher"]).to(device).requires_grad_(True)
    optimizer_img = torch.optim.SGD([syn], lr=settings["lr_img"], momentum=0.5)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=settings["lr_lr"], momentum=0.5)
    criterion = nn.CrossEntropyLoss().to(device)
    student_net = reparam.ReparamModule(off.get_network("ConvNet", 3, CLASSES, (32, 32), dist=False).to(device))
    num_params = sum(np.prod(p.size()) for p in student_net.parameters())

    def iteration() -> float:
        start_epoch = np.random.randint(0, settings["max_start_epoch"])
        target_params = trajectory[start_epoch + settings["expert_epochs"]].to(device)
        student_params = [trajectory[start_epoch].to(device).clone().requires_grad_(True)]
        starting_params = trajectory[start_epoch].to(device)
        indices_chunks: list[torch.Tensor] = []
        for _ in range(settings["syn_steps"]):
            if not indices_chunks:
                indices_chunks = list(torch.split(torch.randperm(len(syn)), len(syn)))
            these = indices_chunks.pop()
            x = off.DiffAugment(syn[these], args.dsa_strategy, param=args.dsa_param)
            ce_loss = criterion(student_net(x, flat_param=student_params[-1]), labels[these])
            grad = torch.autograd.grad(ce_loss, student_params[-1], create_graph=True)[0]
            student_params.append(student_params[-1] - syn_lr * grad)
        param_loss = torch.nn.functional.mse_loss(student_params[-1], target_params, reduction="sum") / num_params
        param_dist = torch.nn.functional.mse_loss(starting_params, target_params, reduction="sum") / num_params
        grand_loss = param_loss / param_dist
        optimizer_img.zero_grad()
        optimizer_lr.zero_grad()
        grand_loss.backward()
        optimizer_img.step()
        optimizer_lr.step()
        return grand_loss.item()

    return iteration


def ours_mtt(data: Dataset, device: torch.device, precision: str, trajectory: list[torch.Tensor],
             settings: dict) -> Callable[[], float]:
    """`TrajectoryMatching.step` with the same stand-in expert."""
    config = tm.TrajectoryMatchingConfig(**{**settings, "zca": False, "num_experts": 1})
    distiller = tm.TrajectoryMatching(data, DistillTask("CIFAR10", IPC, "real"), config,
                                      utility.RunContext(0, device, precision), experts=[trajectory])
    return distiller.step


def official_eval(off, data: Dataset, device: torch.device, epochs: int, test_images: int) -> Callable[[], object]:
    """`evaluate_synset` (SGD momentum 0.9, DSA) of one fresh ConvNet on 100 images for `epochs` epochs."""
    args = official_args(off, device, epoch_eval_train=epochs - 1)   # it trains epoch_eval_train + 1 epochs
    x, y = data.x_train[:IPC * CLASSES], data.y_train[:IPC * CLASSES]
    test = off.TensorDataset(data.x_test[:test_images], data.y_test[:test_images])
    loader = torch.utils.data.DataLoader(test, batch_size=256, shuffle=False, num_workers=0)
    return lambda: off.evaluate_synset(0, off.get_network("ConvNet", 3, CLASSES, (32, 32)).to(device), x, y, loader,
                                       args)


def ours_eval(data: Dataset, device: torch.device, precision: str, epochs: int, test_images: int) -> Callable:
    x, y = data.x_train[:IPC * CLASSES], data.y_train[:IPC * CLASSES]
    test = (data.x_test[:test_images], data.y_test[:test_images])
    return lambda: utility.evaluate_training_set(x, y, test, channels=3, num_classes=CLASSES, im_size=(32, 32),
                                                 n_models=1, epochs=epochs, augment=DSA(STRATEGY, seed=0),
                                                 device=device, precision=precision, progress=False)


def official_epoch(off, data: Dataset, device: torch.device, images: int) -> Callable[[], object]:
    """Their `epoch('train', ...)` over `images` training images in DataLoader batches of 256, no augmentation."""
    args = official_args(off, device)
    loader = torch.utils.data.DataLoader(off.TensorDataset(data.x_train[:images], data.y_train[:images]),
                                         batch_size=256, shuffle=True, num_workers=0)
    net = off.get_network("ConvNet", 3, CLASSES, (32, 32)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    criterion = nn.CrossEntropyLoss().to(device)
    return lambda: off.epoch("train", loader, net, optimizer, criterion, args, aug=False)


def ours_epoch(data: Dataset, device: torch.device, precision: str, images: int) -> Callable[[], object]:
    model = utility.get_network("ConvNet", 3, CLASSES, (32, 32)).to(device)
    return lambda: utility.train(model, data.x_train[:images], data.y_train[:images], epochs=1, batch_size=256,
                                 precision=precision)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Seconds and peak memory (MiB) of one call."""
    with PeakMemory(device) as memory:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, memory.peak_mib


def run_case(case: Case, device: torch.device, warmup: int, repeats: int) -> dict:
    """Warm up both sides, then `repeats` interleaved (official, ours) rounds; medians and peaks."""
    for _ in range(warmup):
        case.official()
        case.ours()
    times: dict[str, list[float]] = {"official": [], "ours": []}
    peaks: dict[str, list[float]] = {"official": [], "ours": []}
    for _ in range(repeats):
        for side, fn in (("official", case.official), ("ours", case.ours)):
            seconds, peak = timed(fn, device)
            times[side].append(seconds * case.scale)
            peaks[side].append(peak)
            print(f"  {case.name} {side}: {seconds * case.scale:.2f} {case.unit} ({peak:.0f} MiB)", flush=True)
    official, ours = statistics.median(times["official"]), statistics.median(times["ours"])
    return {"case": case.name, "unit": case.unit, "official": official, "ours": ours, "ratio": official / ours,
            "official_mib": max(peaks["official"]), "ours_mib": max(peaks["ours"]), "repeats": repeats}


def build_cases(names: list[str], args: argparse.Namespace, data: Dataset, device: torch.device,
                precision: str) -> list[Case]:
    """The requested cases, each with its official and our iteration set up on the same data."""
    dc = load_official(Path(args.official), ("utils",))["utils"] if set(names) - {"mtt"} else None
    cases = []
    for name in names:
        if name == "dm":
            ours = DistributionMatching(data, DistillTask("CIFAR10", IPC, "real"), DistributionMatchingConfig(),
                                        utility.RunContext(0, device, precision))
            cases.append(Case("DM iteration", official_dm(dc, data, device), ours.step))
        elif name in ("gm", "gm-quick"):
            loops = (10, 50) if name == "gm" else (2, 5)
            ours = GradientMatching(data, DistillTask("CIFAR10", IPC, "real"),
                                    GradientMatchingConfig(loops=((IPC, *loops),)),
                                    utility.RunContext(0, device, precision))
            cases.append(Case(f"DSA-GM iteration, loops {loops}", official_gm(dc, data, device, *loops), ours.step))
        elif name == "mtt":
            mods = load_official(Path(args.official_mtt), ("utils", "reparam_module"))
            settings = {k: v for k, v in tm.PAPER_SETTINGS[IPC].items() if k != "zca"}
            settings["syn_steps"] = args.mtt_steps or settings["syn_steps"]
            torch.manual_seed(0)
            trajectory = random_trajectory(mods["utils"].get_network("ConvNet", 3, CLASSES, (32, 32), dist=False),
                                           settings["max_start_epoch"] + settings["expert_epochs"], seed=0)
            cases.append(Case(f"MTT iteration (ipc 10: {settings['syn_steps']} steps)",
                              official_mtt(mods["utils"], mods["reparam_module"], data, device, trajectory, settings),
                              ours_mtt(data, device, precision, trajectory, settings)))
        elif name == "eval":
            epochs = args.eval_epochs
            cases.append(Case(f"evaluation, 300 epochs x 5 models (timed: {epochs} epochs x 1 model)",
                              official_eval(dc, data, device, epochs, args.test_images),
                              ours_eval(data, device, precision, epochs, args.test_images),
                              unit="s / evaluation", scale=5 * 300 / epochs))
        elif name == "epoch":
            images = args.epoch_images
            cases.append(Case(f"full-data epoch, 50,000 images (timed: {images})",
                              official_epoch(dc, data, device, images), ours_epoch(data, device, precision, images),
                              unit="s / epoch", scale=len(data.x_train) / images))
        else:
            raise SystemExit(f"unknown case {name!r}; allowed: dm, gm, gm-quick, mtt, eval, epoch")
    return cases


def main() -> None:
    """Parse arguments, build the cases, time them interleaved and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="folder of VICO-UoE/DatasetCondensation")
    parser.add_argument("--official-mtt", help="folder of GeorgeCazenavette/mtt-distillation (for the mtt case)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=utility.PRECISIONS, help="ours (theirs is fp32)")
    parser.add_argument("--quick", action="store_true", help="dm, gm-quick, mtt, eval, epoch at reduced sizes")
    parser.add_argument("--cases", help="comma-separated subset of dm, gm, gm-quick, mtt, eval, epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--eval-epochs", type=int, default=None, help="epochs timed per evaluation model")
    parser.add_argument("--epoch-images", type=int, default=None, help="training images timed per epoch")
    parser.add_argument("--test-images", type=int, default=256, help="test images of each evaluation")
    parser.add_argument("--mtt-steps", type=int, default=None,
                        help="student steps of the mtt case (default: the paper's 30; a shorter unroll times faster)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of both sides (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    default = "dm,gm-quick,mtt,eval,epoch" if args.quick else "dm,gm-quick,gm,mtt,eval,epoch"
    names = (args.cases or default).split(",")
    if "mtt" in names and not args.official_mtt:
        raise SystemExit("the mtt case needs --official-mtt (a folder of GeorgeCazenavette/mtt-distillation)")
    args.eval_epochs = args.eval_epochs or (10 if args.quick else 30)
    args.epoch_images = args.epoch_images or (1280 if args.quick else 5120)
    device = utility.get_device(args.device)
    precision = utility.resolve_precision(args.precision, device)
    np.random.seed(0)
    torch.manual_seed(0)
    data = load_dataset("CIFAR10")
    print(f"{utility.hardware_name(device)}; ours: {precision}, compiled unless DD_COMPILE=0; official: fp32 eager")
    rows = []
    for case in build_cases(names, args, data, device, precision):
        rows.append(run_case(case, device, args.warmup, args.repeats))
    print("\n| case | unit | official | ours | official / ours | peak MiB official | peak MiB ours |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['case']} | {r['unit']} | {r['official']:.2f} | {r['ours']:.2f} | **{r['ratio']:.2f}x** | "
              f"{r['official_mib']:.0f} | {r['ours_mib']:.0f} |")


if __name__ == "__main__":
    main()
