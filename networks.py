"""Model zoo: every architecture the studies train, built by one `get_network` call.

All models take channels-first images of any size the studies use (1x28x28, 3x32x32, 3x64x64,
and larger for MHIST) and return class logits. "Instance norm" is GroupNorm with one group per
channel, as in the dataset-condensation papers.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("ConvNet", "ConvNetD<depth>", "ConvNetW<width>", "LeNet", "AlexNet", "VGG11", "ResNet18", "MLP")


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance normalisation with a learned per-channel affine, as GroupNorm(C, C)."""
    return nn.GroupNorm(channels, channels, affine=True)


def _first_padding(im_size: tuple[int, int], kernel: int) -> int:
    """Padding of the first conv that turns a 28x28 input into 32x32 maps (as in the DC code)."""
    return kernel // 2 + 2 if tuple(im_size) == (28, 28) else kernel // 2


class FirstConv(nn.Conv2d):
    """A conv with `padding` zeros around its input, applied as an explicit zero pad of `padding - kernel // 2`
    followed by the conv's own `kernel // 2`: the same function and parameters as `nn.Conv2d(..., padding)`, but
    the weight gradient of a 3x3 conv padded by 3 has no fast CPU kernel and took half of a MNIST training step."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, padding: int):
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        self.extra = padding - kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra:
            x = F.pad(x, (self.extra,) * 4)
        return super().forward(x)


def _flat_size(features: nn.Module, channels: int, im_size: tuple[int, int]) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, channels, *im_size)).flatten(1).shape[1]


class ConvNet(nn.Module):
    """The DC/DSA/DM/MTT ConvNet: `depth` x [conv3x3 -> instance norm -> ReLU -> avgpool2]."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int], width: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        size = im_size[0] + 2 * (_first_padding(im_size, 3) - 1)
        for d in range(depth):
            if size < 2:
                raise ValueError(f"depth={depth} is too deep for im_size={im_size}: maps shrink below 2x2")
            pad = _first_padding(im_size, 3) if d == 0 else 1
            conv = FirstConv(channels, width, 3, pad) if d == 0 else nn.Conv2d(width, width, 3, padding=pad)
            layers += [conv, instance_norm(width),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(_flat_size(self.features, channels, im_size), num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-extractor output before the classifier (used by distribution matching)."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class LeNet(nn.Module):
    """LeNet-5 with ReLU and max pooling."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int]):
        super().__init__()
        self.features = nn.Sequential(
            FirstConv(channels, 6, 5, _first_padding(im_size, 5)), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features, channels, im_size), 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AlexNet(nn.Module):
    """The small AlexNet of the DC papers (five convs, three max pools, one linear layer)."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int]):
        super().__init__()
        self.features = nn.Sequential(
            FirstConv(channels, 128, 5, _first_padding(im_size, 5)), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(_flat_size(self.features, channels, im_size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class VGG11(nn.Module):
    """VGG-11 with instance norm (the DC papers' choice for small synthetic sets)."""

    CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int]):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for i, v in enumerate(self.CONFIG):
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                pad = _first_padding(im_size, 3) if i == 0 else 1
                conv = FirstConv(in_ch, v, 3, pad) if i == 0 else nn.Conv2d(in_ch, v, 3, padding=pad)
                layers += [conv, instance_norm(v), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(_flat_size(self.features, channels, im_size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with instance norm and an identity/projection shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), instance_norm(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), instance_norm(out_ch),
        )
        self.shortcut = nn.Identity() if stride == 1 and in_ch == out_ch else nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), instance_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images (3x3 stem, no stem pooling), instance norm, global average pooling."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int]):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(channels, 64, 3, padding=1, bias=False), instance_norm(64),
                                   nn.ReLU(inplace=True)]
        in_ch = 64
        for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)]
            in_ch = out_ch
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    """Three-layer perceptron (width 128) on flattened pixels."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int], width: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * im_size[0] * im_size[1], width), nn.ReLU(inplace=True),
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_FIXED = {"LeNet": LeNet, "AlexNet": AlexNet, "VGG11": VGG11, "ResNet18": ResNet18, "MLP": MLP}
_CONVNET = re.compile(r"ConvNet(?:D(?P<depth>\d+))?(?:W(?P<width>\d+))?")


def convnet_shape(name: str) -> tuple[int, int] | None:
    """(depth, width) of a ConvNet name ('ConvNetD4' -> (4, 128), 'ConvNetD2W32' -> (2, 32)); None for another
    network."""
    match = _CONVNET.fullmatch(name)
    return None if match is None else (int(match["depth"] or 3), int(match["width"] or 128))


def get_network(name: str, channels: int, num_classes: int, im_size: tuple[int, int] | int) -> nn.Module:
    """Build architecture `name` (e.g. 'ConvNet', 'ConvNetD4', 'ConvNetW64', 'ResNet18') for these inputs."""
    size = (im_size, im_size) if isinstance(im_size, int) else tuple(im_size)
    if name in _FIXED:
        return _FIXED[name](channels, num_classes, size)
    shape = convnet_shape(name)
    if shape is None:
        raise ValueError(f"Unknown network {name!r}; allowed: {', '.join(ARCHITECTURES)}")
    return ConvNet(channels, num_classes, size, width=shape[1], depth=shape[0])
