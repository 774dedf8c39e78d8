"""Distribution matching (Dataset Condensation with Distribution Matching, Zhao & Bilen, WACV 2023, Sec. 3)
with DSA.

Each step draws a freshly initialised network and uses its feature extractor (`embed`) as a fixed random
embedding. For every class, a real batch and the class's synthetic images go through the *same* DSA
transform (one siamese draw per class, as the official code); the loss is the sum over classes of the squared
L2 distance between the mean real and the mean synthetic embedding, and SGD moves the synthetic images.

Classes are independent, so the synthetic embeddings of all classes come from one batched forward; the real
ones (without a graph) come class by class through the compiled `embed`, which is as fast per image at a batch of
256 and keeps peak memory at the official code's level. The networks normalise per sample (instance norm), so this
is the same computation as the class-by-class loop of the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from networks import get_network
from utility import RunContext
from utils import compiled
from utils.data import Dataset
from utils.distill.base import DistillTask, SyntheticImages, check_positive_ints
from utils.distill.method import Method


@dataclass(frozen=True)
class DistributionMatchingConfig:
    """Hyperparameters of distribution matching (the DM paper's defaults)."""

    iterations: int = 20000
    real_batch: int = 256
    lr_img: float = 1.0
    momentum_img: float = 0.5
    dsa: bool = True
    architecture: str = "ConvNet"
    checkpoint_every: int = 50

    def __post_init__(self):
        check_positive_ints(self, "iterations", "real_batch")


def dm_loss(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over classes of ||mean real embedding - mean synthetic embedding||²; one (n_c x d) tensor per class."""
    if len(real) != len(syn) or not real:
        raise ValueError(f"real and syn must hold one embedding tensor per class (same non-zero count), "
                         f"got {len(real)} and {len(syn)}")
    distances = [((r.float().mean(0) - s.float().mean(0)) ** 2).sum() for r, s in zip(real, syn, strict=True)]
    return torch.stack(distances).sum()


def embedding_network(architecture: str, data: Dataset, device: torch.device) -> nn.Module:
    """A freshly initialised network with frozen parameters, used through its `embed` method (built directly on
    `device`, so a GPU step does not wait for a host-side initialisation and copy)."""
    with torch.device(device):
        net = get_network(architecture, data.channels, data.num_classes, data.im_size).train()
    if not hasattr(net, "embed"):
        raise ValueError(f"architecture={architecture!r} has no `embed` (features before the classifier); "
                         "distribution matching needs a ConvNet variant ('ConvNet', 'ConvNetD<depth>', "
                         "'ConvNetW<width>')")
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class DistributionMatching(SyntheticImages):
    """Distribution-matching distiller (see module docstring); one `step` is one outer iteration."""

    def __init__(self, data: Dataset, task: DistillTask, config: DistributionMatchingConfig, context: RunContext):
        embedding_network(config.architecture, data, torch.device("cpu"))  # fail early on a wrong architecture
        super().__init__(data, task, config, context, lr_img=config.lr_img, momentum=config.momentum_img)
        self.class_indices = [idx.to(self.device) for idx in data.class_indices()]
        self.x_train = data.x_train.to(self.device)

    def augmented_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per class, a real batch and the synthetic images, augmented with the same DSA parameters."""
        reals, syns = [], []
        ipc = self.task.ipc
        for c, idx in enumerate(self.class_indices):
            real = self.x_train[idx[self.permutation(len(idx))[: self.config.real_batch]]]
            syn = self.images[c * ipc:(c + 1) * ipc]
            params = self.dsa.sample_siamese()
            reals.append(self.dsa.apply(real, params))
            syns.append(self.dsa.apply(syn, params))
        return reals, syns

    def embeddings(self, net: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per class, the embeddings of a real batch (no graph) and of the synthetic images (with their graph)
        under `net`, after one siamese DSA draw per class."""
        reals, syns = self.augmented_pairs()
        with torch.no_grad():
            real_embed = [compiled.embed(net, real, precision=self.precision) for real in reals]
        syn_embed = compiled.embed(net, torch.cat(syns), precision=self.precision)
        return real_embed, list(syn_embed.split([len(s) for s in syns]))

    def step(self) -> float:
        """One iteration; returns the matching loss per class (the optimised sum divided by the class count)."""
        net = embedding_network(self.config.architecture, self.data, self.device)
        loss = dm_loss(*self.embeddings(net))
        self.update_images(loss)
        return loss.item() / self.data.num_classes


def _check(config: DistributionMatchingConfig, ipc: int, network: nn.Module, image_values: int) -> None:
    if not hasattr(network, "embed"):
        raise ValueError(f"architecture={config.architecture!r} has no `embed`; DM needs a ConvNet")


METHOD = Method(key="dm", label="Distribution matching", config=DistributionMatchingConfig,
                distiller=DistributionMatching, notebook="07_distribution_matching", check=_check)
