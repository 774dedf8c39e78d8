"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021).

Every transform is differentiable in the images. `sample` draws per-image parameters for one randomly
chosen transform ('color' applies brightness, saturation and contrast together); `apply` uses them, so
the real and the synthetic batch of a step can share the *same* parameters (siamese): image i of either
batch gets the parameters of row i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TRANSFORMS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """The transform chosen for a step and its per-image random parameters."""

    transform: str
    values: dict[str, torch.Tensor]


def strategy_for(dataset: str) -> str:
    """The DSA papers' strategy: all transforms, but no flip for digits."""
    return "color_crop_cutout_scale_rotate" if dataset == "MNIST" else DEFAULT_STRATEGY


class DSA:
    """Siamese differentiable augmentation with the DSA papers' magnitudes."""

    def __init__(self, strategy: str = DEFAULT_STRATEGY, *, brightness: float = 1.0, saturation: float = 2.0,
                 contrast: float = 0.5, crop_ratio: float = 0.125, cutout_ratio: float = 0.5,
                 scale_ratio: float = 1.2, rotate_degrees: float = 15.0, seed: int | None = None):
        self.transforms = [] if strategy in ("", "none") else strategy.split("_")
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"Unknown DSA transform(s) {unknown} in strategy {strategy!r}; "
                             f"allowed: {', '.join(TRANSFORMS)} joined by '_', or 'none'")
        self.strategy = strategy
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.crop_ratio, self.cutout_ratio = crop_ratio, cutout_ratio
        self.scale_ratio, self.rotate_degrees = scale_ratio, rotate_degrees
        self.generator = torch.Generator().manual_seed(seed if seed is not None else torch.initial_seed() % 2**62)

    @property
    def enabled(self) -> bool:
        return bool(self.transforms)

    def sample(self, n: int) -> DSAParams | None:
        """Draw one transform and parameters for `n` images (None when disabled)."""
        if not self.enabled:
            return None
        g = self.generator
        transform = self.transforms[int(torch.randint(len(self.transforms), (1,), generator=g))]

        def u(*shape: int) -> torch.Tensor:
            return torch.rand(n, *shape, generator=g)

        values = {
            "color": lambda: {"brightness": u(), "saturation": u(), "contrast": u()},
            "crop": lambda: {"shift": u(2)},
            "cutout": lambda: {"centre": u(2)},
            "flip": lambda: {"flip": u()},
            "scale": lambda: {"scale": u(2)},
            "rotate": lambda: {"angle": u()},
        }[transform]()
        return DSAParams(transform, values)

    def apply(self, x: torch.Tensor, params: DSAParams | None) -> torch.Tensor:
        """Augment `x` with `params` (row i of the parameters goes to image i)."""
        if params is None:
            return x
        v = {k: t[: len(x)].to(x.device, x.dtype) for k, t in params.values.items()}
        return getattr(self, f"_{params.transform}")(x, **v)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch with freshly drawn parameters (used when training on a synthetic set)."""
        return self.apply(x, self.sample(len(x)))

    def _color(self, x, brightness, saturation, contrast):
        x = x + (brightness - 0.5).view(-1, 1, 1, 1) * self.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (saturation * self.saturation).view(-1, 1, 1, 1) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (contrast + 1 - self.contrast).view(-1, 1, 1, 1) + mean

    def _affine(self, x, theta):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _crop(self, x, shift):
        size = torch.tensor(x.shape[-1:-3:-1], device=x.device, dtype=x.dtype)
        pixels = torch.round((shift * 2 - 1) * self.crop_ratio * size)
        theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, :, 2] = 2 * pixels / size
        return self._affine(x, theta)

    def _scale(self, x, scale):
        factors = scale * (self.scale_ratio - 1 / self.scale_ratio) + 1 / self.scale_ratio
        theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 1, 1] = factors[:, 0], factors[:, 1]
        return self._affine(x, theta)

    def _rotate(self, x, angle):
        radians = (angle - 0.5) * 2 * self.rotate_degrees * math.pi / 180
        cos, sin = torch.cos(radians), torch.sin(radians)
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
        return self._affine(x, theta)

    def _flip(self, x, flip):
        return torch.where((flip < 0.5).view(-1, 1, 1, 1), x.flip(3), x)

    def _cutout(self, x, centre):
        h, w = x.shape[-2:]
        half_h, half_w = int(h * self.cutout_ratio / 2), int(w * self.cutout_ratio / 2)
        cy = (centre[:, 0] * (h + 1 - 2 * half_h)).long() + half_h
        cx = (centre[:, 1] * (w + 1 - 2 * half_w)).long() + half_w
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((rows - cy.view(-1, 1, 1)).abs() < half_h) & ((cols - cx.view(-1, 1, 1)).abs() < half_w)
        return x * (~inside).unsqueeze(1).to(x.dtype)
