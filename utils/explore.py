"""The "Inside one iteration" sections of notebooks 02, 06 and 07: a method's registered distiller built from the
profile, and its intermediate quantities (computed by the distiller's own methods) as small tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import torch
from torch import nn

from utility import set_seed
from utils.distill import METHODS, DistillTask, load_synthetic
from utils.distill.base import SyntheticImages
from utils.distill.distribution_matching import dm_loss
from utils.distill.gradient_matching import gradient_distance
from utils.distill.trajectory_matching import trajectory_loss
from utils.notebook import NotebookRun
from utils.synthetic import synthetic_path


def distiller_for(run: NotebookRun, method: str, dataset: str, ipc: int, init: str = "real") -> SyntheticImages:
    """The distiller `build_set` would run for this set: the method's registered class with the profile's
    configuration, the run's seed, device and precision, and the method's inputs (MTT: its expert buffer)."""
    record = METHODS[method]
    data = run.load(dataset)
    config = run.profile.method_config(method, dataset, ipc, init)
    set_seed(run.seed)
    return record.distiller(data, DistillTask(dataset, ipc, init), config, run.context,
                            **record.inputs(data, config, run.context))


def images(distiller: SyntheticImages) -> torch.Tensor:
    """A copy of the distiller's current synthetic images, on the CPU."""
    return distiller.images.detach().cpu().clone()


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """How far the images moved: rms of the change over rms of the images before."""
    return float((after - before).pow(2).mean().sqrt() / before.pow(2).mean().sqrt())


@contextmanager
def replayed_draws(distiller: SyntheticImages) -> Iterator[None]:
    """Run the block, then put the distiller's random generators (sampling and DSA) back where they were, so the
    next call draws the same real batches, augmentations and expert segment: a before/after comparison then differs
    only by what the block's caller changed."""
    generator, device_generator = distiller.generator.get_state(), distiller.device_generator.get_state()
    dsa = distiller.dsa.get_state()
    yield
    distiller.generator.set_state(generator)
    distiller.device_generator.set_state(device_generator)
    distiller.dsa.set_state(dsa)


def run_steps(distiller: SyntheticImages, steps: int) -> list[float]:
    """The losses of `steps` further iterations of the distiller (`distiller.step()`, as a distillation runs them)."""
    return [distiller.step() for _ in range(steps)]


def gradient_table(net: nn.Module, real: list[torch.Tensor], syn: list[torch.Tensor]) -> pd.DataFrame:
    """Per weight layer of `net`: the norms of one class's real and synthetic gradients, their mean cosine over
    output nodes and the layer's term of the layer-wise distance (`gradient_distance` on that layer alone; biases
    and norm parameters are not matched)."""
    rows = []
    for (name, _), gr, gs in zip(net.named_parameters(), real, syn):
        if gr.dim() == 1:
            continue
        flat_real, flat_syn = gr.detach().flatten(1), gs.detach().flatten(1)
        cosine = (flat_real * flat_syn).sum(-1) / (flat_real.norm(dim=-1) * flat_syn.norm(dim=-1) + 1e-6)
        rows.append({"layer": name, "output nodes": len(flat_real), "real gradient norm": gr.norm().item(),
                     "synthetic gradient norm": gs.norm().item(), "mean cosine": cosine.mean().item(),
                     "distance (sum of 1 - cosine)": gradient_distance([gr], [gs.detach()]).item()})
    return pd.DataFrame(rows)


def synthetic_loss(distiller: SyntheticImages, net: nn.Module) -> float:
    """Cross-entropy of `net` on the distiller's synthetic images (no augmentation)."""
    with torch.no_grad():
        return nn.functional.cross_entropy(net(distiller.images), distiller.labels).item()


def embedding_table(real: list[torch.Tensor], syn: list[torch.Tensor], classes: list[str]) -> pd.DataFrame:
    """Per class: batch sizes, embedding size and the squared distance between the mean real and the mean
    synthetic embedding (the class's term of `dm_loss`)."""
    return pd.DataFrame([{"class": name, "real images": len(r), "synthetic images": len(s),
                          "embedding size": r.shape[1], "mean gap": dm_loss([r], [s.detach()]).item()}
                         for name, r, s in zip(classes, real, syn)])


def student_table(steps: list[torch.Tensor], start: torch.Tensor, target: torch.Tensor) -> pd.DataFrame:
    """After each student step: the normalised distance to the expert's target, ||θ̂ − θ*_{t+M}||² /
    ||θ*_t − θ*_{t+M}||² (`trajectory_loss`; 1.0 is where the student started)."""
    return pd.DataFrame([{"student step": k, "normalised distance": trajectory_loss(p.detach(), start, target).item()}
                         for k, p in enumerate(steps, start=1)])


def learned_lr_table(run: NotebookRun) -> pd.DataFrame:
    """For each trajectory-matching set of the profile's study: the learning rate it started from and the one it
    learned (saved with the set and used to evaluate it)."""
    rows = []
    study = run.profile.study
    for dataset in study.datasets:
        for ipc in study.ipcs:
            for init in study.inits:
                saved = load_synthetic(synthetic_path(run.writer.root, "mtt", dataset, ipc, init))
                start = saved.config["method_config"]["lr_teacher"]
                rows.append({"dataset": dataset, "ipc": ipc, "init": init, "initial lr": start,
                             "learned lr": round(saved.lr, 6), "grew": "yes" if saved.lr > start else "no"})
    return pd.DataFrame(rows)
