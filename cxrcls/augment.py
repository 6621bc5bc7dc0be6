"""The study's augmentation, on whole batches on the device: horizontal flip, rotation within
+-7 degrees and intensity scaling within +-10%.

Random parameters are drawn on a CPU torch.Generator for the whole global batch (so the numbers do
not depend on the device, the generator state can be checkpointed, and data-parallel ranks that
share the generator agree), then each rank applies its slice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentParams:
    flip: torch.Tensor       # (B,) bool
    radians: torch.Tensor    # (B,) float
    intensity: torch.Tensor  # (B,) float, multiplicative

    def slice(self, start: int, stop: int) -> "AugmentParams":
        return AugmentParams(self.flip[start:stop], self.radians[start:stop],
                             self.intensity[start:stop])


def draw_params(generator: torch.Generator, batch: int, max_degrees: float = 7.0,
                intensity: float = 0.1, flip_probability: float = 0.5) -> AugmentParams:
    """Random flips, angles uniform in [-max_degrees, max_degrees], factors uniform in
    1 +- intensity."""
    u = torch.rand((batch, 3), generator=generator, dtype=torch.float64)
    return AugmentParams(flip=u[:, 0] < flip_probability,
                         radians=(2 * u[:, 1] - 1) * math.radians(max_degrees),
                         intensity=1 + (2 * u[:, 2] - 1) * intensity)


def augment(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """images (B, 1, H, W) float in [0, 1] -> augmented, same shape; corners rotated in are
    black."""
    b = images.shape[0]
    device, dtype = images.device, images.dtype
    flip = params.flip.to(device).view(b, 1, 1, 1)
    images = torch.where(flip, images.flip(-1), images)
    cos, sin = params.radians.cos(), params.radians.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(device=device, dtype=dtype), list(images.shape),
                         align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    factor = params.intensity.to(device=device, dtype=dtype).view(b, 1, 1, 1)
    return (images * factor).clamp_(0, 1)
