"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021, Sec. 3 and Appendix; magnitudes of
the official `ParamDiffAug`).

Every transform is differentiable in the images. Each call picks one transform of the strategy at random
('color' applies brightness, saturation and contrast together) and draws its parameters, in one of two modes:

- **siamese** (`sample_siamese`, used while distilling: GM and DM): *one* parameter set applied to every image of
  the real batch and of the synthetic images of a class, so gradients or embeddings are matched under the same
  transform, as the official code does with `theta[:] = theta[0]`;
- **per image** (`sample(n)` / `__call__`, used when training a network on a set: evaluation, GM's inner loop,
  MTT's student and experts): each image gets its own draw.

Parameters are kept as uniform [0, 1) numbers and mapped to each transform's range when applied, so one draw
serves batches of any size. Ranges, as in the official `rand_*` functions: brightness ±0.5, saturation ×[0, 2),
contrast ×[0.5, 1.5), crop shift a uniform integer in [−s, s] with s = int(size · 0.125 + 0.5) (4 at 32 px) and
zero fill, cutout a box of int(size · 0.5 + 0.5) pixels (16 at 32 px) whose centre is a uniform integer over the
whole image (33 positions at 32 px for an even box) and which is clipped at the border, scale ×[1/1.2, 1.2] per
axis, rotation ±15°, flip with probability 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TRANSFORMS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
# Uniform numbers each transform draws per image (or once, siamese).
_DRAWS = {"color": {"brightness": 1, "saturation": 1, "contrast": 1}, "crop": {"shift": 2}, "cutout": {"centre": 2},
          "flip": {"flip": 1}, "scale": {"scale": 2}, "rotate": {"angle": 1}}


@dataclass(frozen=True)
class DSAParams:
    """The transform chosen for a step and its uniform draws: one row per image, or one row for all (siamese)."""

    transform: str
    values: dict[str, torch.Tensor]

    @property
    def siamese(self) -> bool:
        return all(len(v) == 1 for v in self.values.values())


def strategy_for(dataset: str) -> str:
    """The DSA papers' strategy: all transforms, but no flip for digits."""
    return "color_crop_cutout_scale_rotate" if dataset == "MNIST" else DEFAULT_STRATEGY


class DSA:
    """Differentiable augmentation with the DSA papers' magnitudes, siamese or per image.

    The transform choice is drawn on the CPU (it selects Python code); the parameters are drawn on `device`,
    so a GPU run never waits for a host-to-device copy."""

    def __init__(self, strategy: str = DEFAULT_STRATEGY, *, brightness: float = 1.0, saturation: float = 2.0,
                 contrast: float = 0.5, crop_ratio: float = 0.125, cutout_ratio: float = 0.5,
                 scale_ratio: float = 1.2, rotate_degrees: float = 15.0, seed: int | None = None,
                 device: torch.device | str = "cpu"):
        self.transforms = [] if strategy in ("", "none") else strategy.split("_")
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"Unknown DSA transform(s) {unknown} in strategy {strategy!r}; "
                             f"allowed: {', '.join(TRANSFORMS)} joined by '_', or 'none'")
        self.strategy = strategy
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.crop_ratio, self.cutout_ratio = crop_ratio, cutout_ratio
        self.scale_ratio, self.rotate_degrees = scale_ratio, rotate_degrees
        seed = seed if seed is not None else torch.initial_seed() % 2**62
        self.choice_generator = torch.Generator().manual_seed(seed)
        self.generator = torch.Generator(device=torch.device(device)).manual_seed(seed)

    @property
    def enabled(self) -> bool:
        return bool(self.transforms)

    def get_state(self) -> dict[str, torch.Tensor]:
        """Both generators' states (for checkpoints)."""
        return {"choice": self.choice_generator.get_state(), "values": self.generator.get_state()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `get_state`."""
        self.choice_generator.set_state(state["choice"])
        self.generator.set_state(state["values"])

    def sample(self, n: int) -> DSAParams | None:
        """Draw one transform and per-image parameters for `n` images (None when disabled)."""
        if not self.enabled:
            return None
        transform = self.transforms[int(torch.randint(len(self.transforms), (1,), generator=self.choice_generator))]
        g = self.generator
        values = {name: torch.rand(n, k, generator=g, device=g.device) for name, k in _DRAWS[transform].items()}
        return DSAParams(transform, values)

    def sample_siamese(self) -> DSAParams | None:
        """Draw one transform and one parameter set shared by every image it is applied to."""
        return self.sample(1)

    def apply(self, x: torch.Tensor, params: DSAParams | None) -> torch.Tensor:
        """Augment `x` with `params` (a siamese draw goes to every image; else row i goes to image i)."""
        if params is None:
            return x
        rows = {len(v) for v in params.values.values()}
        if rows not in ({1}, {len(x)}):
            raise ValueError(f"DSA parameters hold {rows.pop()} rows; a batch of {len(x)} images needs 1 (siamese) "
                             f"or {len(x)} (per image)")
        values = {k: v.to(x.device, x.dtype).expand(len(x), -1) for k, v in params.values.items()}
        return getattr(self, f"_{params.transform}")(x, **values)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch with fresh per-image parameters (training a network on a set)."""
        return self.apply(x, self.sample(len(x)))

    def _color(self, x, brightness, saturation, contrast):
        x = x + (brightness - 0.5).view(-1, 1, 1, 1) * self.brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (saturation * self.saturation).view(-1, 1, 1, 1) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (contrast + self.contrast).view(-1, 1, 1, 1) + mean

    def _affine(self, x, theta):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def _uniform_int(u: torch.Tensor, count: int) -> torch.Tensor:
        """Map uniform [0, 1) numbers to uniform integers 0 .. count − 1."""
        return (u * count).floor().long().clamp_(max=count - 1)

    def _crop(self, x, shift):
        n, _, h, w = x.shape
        sh, sw = int(h * self.crop_ratio + 0.5), int(w * self.crop_ratio + 0.5)
        dy = self._uniform_int(shift[:, 0], 2 * sh + 1) - sh
        dx = self._uniform_int(shift[:, 1], 2 * sw + 1) - sw
        padded = F.pad(x, (sw, sw, sh, sh))
        rows = torch.arange(h, device=x.device) + (dy + sh).view(-1, 1)
        cols = torch.arange(w, device=x.device) + (dx + sw).view(-1, 1)
        batch = torch.arange(n, device=x.device).view(-1, 1, 1)
        return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _scale(self, x, scale):
        factors = scale * (self.scale_ratio - 1 / self.scale_ratio) + 1 / self.scale_ratio
        theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 1, 1] = factors[:, 0], factors[:, 1]
        return self._affine(x, theta)

    def _rotate(self, x, angle):
        radians = (angle[:, 0] - 0.5) * 2 * self.rotate_degrees * math.pi / 180
        cos, sin = torch.cos(radians), torch.sin(radians)
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
        return self._affine(x, theta)

    def _flip(self, x, flip):
        return torch.where((flip < 0.5).view(-1, 1, 1, 1), x.flip(3), x)

    def _cutout(self, x, centre):
        h, w = x.shape[-2:]
        size_h, size_w = int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)
        top = self._uniform_int(centre[:, 0], h + 1 - size_h % 2) - size_h // 2
        left = self._uniform_int(centre[:, 1], w + 1 - size_w % 2) - size_w // 2
        rows = torch.arange(h, device=x.device) - top.view(-1, 1)
        cols = torch.arange(w, device=x.device) - left.view(-1, 1)
        inside = ((rows >= 0) & (rows < size_h))[:, :, None] & ((cols >= 0) & (cols < size_w))[:, None, :]
        return x * (~inside).unsqueeze(1).to(x.dtype)
