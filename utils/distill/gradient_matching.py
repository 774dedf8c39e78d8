"""Gradient matching (Dataset Condensation, Zhao, Mopuri & Bilen, ICLR 2021, Algorithm 1) with optional
DSA (Zhao & Bilen, ICML 2021).

Each outer iteration draws a fresh network; `outer_loop` times it matches, class by class, the gradient of
the loss on a real batch with the gradient on the synthetic images (both augmented by one siamese DSA draw),
sums the layer-wise distances over classes and takes one SGD step on the images; then, except after the last
outer loop, it trains the network `inner_loop` epochs over the synthetic set (shuffled, batches of `batch_train`,
per-image DSA) with plain SGD (lr_net, no momentum), as the official code does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from networks import get_network
from utility import RunContext
from utils import compiled
from utils.data import Dataset
from utils.distill.base import DistillTask, SyntheticImages, check_positive_ints
from utils.distill.method import Method, TimedIteration

DISTANCES = ("layerwise", "mse", "cos")
# images per class -> (outer_loop, inner_loop), from the DC paper.
PAPER_LOOPS = ((1, 1, 1), (10, 10, 50), (20, 20, 25), (50, 50, 10))


@dataclass(frozen=True)
class GradientMatchingConfig:
    """Hyperparameters of gradient matching; `loops` rows are (ipc, outer_loop, inner_loop)."""

    iterations: int = 1000
    real_batch: int = 256
    lr_img: float = 0.1
    momentum_img: float = 0.5
    lr_net: float = 0.01
    momentum_net: float = 0.0
    batch_train: int = 256
    distance: str = "layerwise"
    loops: tuple[tuple[int, int, int], ...] = PAPER_LOOPS
    dsa: bool = True
    architecture: str = "ConvNet"
    checkpoint_every: int = 10

    def __post_init__(self):
        check_positive_ints(self, "iterations", "real_batch", "batch_train")

    def loops_for(self, ipc: int) -> tuple[int, int]:
        """(outer_loop, inner_loop) for `ipc`; an ipc missing from the table is an error."""
        table = {row[0]: row[1:] for row in self.loops}
        if ipc not in table:
            raise ValueError(f"No gradient-matching loops for ipc={ipc}; the `loops` table has ipc "
                             f"{sorted(table)}. Add a row (ipc, outer_loop, inner_loop) to choose them.")
        return table[ipc]


def gradient_distance(real: list[torch.Tensor], syn: list[torch.Tensor], kind: str = "layerwise") -> torch.Tensor:
    """Distance between two lists of parameter gradients.

    'layerwise' (the papers'): for every weight tensor, sum over output nodes of 1 - cosine; biases and
    norm parameters (1-D) are ignored. 'mse': summed squared difference. 'cos': 1 - cosine of the
    concatenated gradients.
    """
    if kind == "layerwise":
        total = syn[0].new_zeros(())
        for gr, gs in zip(real, syn):
            if gr.dim() == 1:
                continue
            gr, gs = gr.flatten(1), gs.flatten(1)
            cosine = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
            total = total + (1 - cosine).sum()
        return total
    if kind == "mse":
        return sum(((gs - gr) ** 2).sum() for gr, gs in zip(real, syn))
    if kind == "cos":
        gr = torch.cat([g.flatten() for g in real])
        gs = torch.cat([g.flatten() for g in syn])
        return 1 - (gr * gs).sum() / (gr.norm() * gs.norm() + 1e-6)
    raise ValueError(f"Unknown distance {kind!r}; allowed: {', '.join(DISTANCES)}")


class GradientMatching(SyntheticImages):
    """Gradient-matching distiller (see module docstring); one `step` is one outer iteration."""

    def __init__(self, data: Dataset, task: DistillTask, config: GradientMatchingConfig, context: RunContext):
        if config.distance not in DISTANCES:
            raise ValueError(f"Unknown distance {config.distance!r}; allowed: {', '.join(DISTANCES)}")
        super().__init__(data, task, config, context, lr_img=config.lr_img, momentum=config.momentum_img)
        self.outer_loop, self.inner_loop = config.loops_for(task.ipc)
        self.class_indices = [idx.to(self.device) for idx in data.class_indices()]
        self.x_train = data.x_train.to(self.device)

    def _real_batch(self, c: int) -> torch.Tensor:
        idx = self.class_indices[c]
        return self.x_train[idx[self.permutation(len(idx))[: self.config.real_batch]]]

    def new_network(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        """A freshly initialised network (global torch RNG) and its plain-SGD optimiser for the inner steps."""
        cfg = self.config
        net = get_network(cfg.architecture, self.data.channels, self.data.num_classes, self.data.im_size)
        net = net.to(self.device).train()
        return net, torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=cfg.momentum_net)

    def class_gradients(self, net: nn.Module, params: list[torch.Tensor],
                        c: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-parameter gradients of the loss on a real batch of class `c` and on the class's synthetic images,
        both augmented by one siamese DSA draw; the synthetic ones keep their graph back to the images."""
        ipc = self.task.ipc
        real = self._real_batch(c)
        syn = self.images[c * ipc:(c + 1) * ipc]
        aug = self.dsa.sample_siamese()
        target_real = torch.full((len(real),), c, device=self.device)
        g_real = compiled.gradients(net, self.dsa.apply(real, aug), target_real, precision=self.precision)
        # double backward does not compile, and in bf16 it was slower than in fp32 on an AMX CPU
        # (benchmarks/README.md): the synthetic gradient stays eager fp32
        syn_loss = F.cross_entropy(net(self.dsa.apply(syn, aug)), self.labels[c * ipc:(c + 1) * ipc])
        return g_real, list(torch.autograd.grad(syn_loss, params, create_graph=True))

    def matching_loss(self, net: nn.Module, params: list[torch.Tensor]) -> torch.Tensor:
        """The gradient distance summed over classes (differentiable with respect to the images)."""
        loss = self.images.new_zeros(())
        for c in range(self.data.num_classes):
            g_real, g_syn = self.class_gradients(net, params, c)
            loss = loss + gradient_distance(g_real, g_syn, self.config.distance)
        return loss

    def train_network(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """`inner_loop` epochs over the synthetic set in shuffled batches of `batch_train`."""
        images = self.images.detach()
        rows = min(self.config.batch_train, len(images))
        for _ in range(self.inner_loop):
            for idx in self.permutation(len(images)).split(self.config.batch_train):
                optimizer.zero_grad(set_to_none=True)
                compiled.train_step(net, self.dsa(images[idx]), self.labels[idx], precision=self.precision,
                                    batch_rows=rows)
                optimizer.step()

    def step(self) -> float:
        """One outer iteration; returns the matching loss averaged over outer loops and classes (`outer_losses`
        keeps each outer loop's, per class)."""
        net, net_opt = self.new_network()
        params = list(net.parameters())
        total = 0.0
        self.outer_losses: list[float] = []
        for outer in range(self.outer_loop):
            loss = self.matching_loss(net, params)
            self.update_images(loss)
            total += loss.item()
            self.outer_losses.append(loss.item() / self.data.num_classes)
            if outer == self.outer_loop - 1:
                break
            self.train_network(net, net_opt)
        return total / (self.outer_loop * self.data.num_classes)


def _check(config: GradientMatchingConfig, ipc: int, network: nn.Module, image_values: int) -> None:
    config.loops_for(ipc)


def _timing(config: GradientMatchingConfig, ipc: int) -> tuple[TimedIteration, ...]:
    """One outer loop (its memory does not grow with the loops), its time scaled by `outer_loop`."""
    outer, inner = config.loops_for(ipc)
    return (TimedIteration(replace(config, loops=((ipc, 1, inner),)), time_weight=outer),)


METHOD = Method(key="gm", label="Gradient matching + DSA", config=GradientMatchingConfig, distiller=GradientMatching,
                notebook="02_gradient_matching", variants=None, check=_check, timing=_timing)
