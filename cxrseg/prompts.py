"""Box and point prompts: from a ground-truth mask, from the average training mask, from a
prediction.

Boxes are (x0, y0, x1, y1) in pixel indices of an image (x1, y1 = last column/row inside, as
MedSAM does); points are (x, y) pixel coordinates with label 1 (lung) or 0 (not lung).

The prior (`prior.json`) holds the average training mask's box and points, normalized to a *frame*:
either the whole image or its content box (the image without black letterbox borders), so that an
image fitted into a square with borders gets a box that follows its content. It prompts images that
have no mask at all (NIH).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from cxrstats.foundation.fileio import write_json

PROMPT_MODES = ("box", "points", "box+points")
FRAMES = ("image", "content")


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(4,) float64 box (x0, y0, x1, y1) around the mask's foreground; error if it is empty."""
    fg = np.asarray(mask).astype(bool)
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    if rows.size == 0:
        raise ValueError("cannot take the box of an empty mask")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def content_frame(image: np.ndarray, level: float = 0.1) -> np.ndarray:
    """(4,) int frame (x0, y0, x1, y1), end-exclusive, of the rows/columns whose maximum exceeds
    `level` x the image maximum: the picture without black borders. Whole image if none are
    found."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape[:2]
    gray = image if image.ndim == 2 else image.mean(axis=2)
    low = gray.min()
    cut = low + level * (gray.max() - low)
    rows = np.flatnonzero(gray.max(axis=1) > cut)
    cols = np.flatnonzero(gray.max(axis=0) > cut)
    if rows.size < 2 or cols.size < 2:
        return np.array([0, 0, w, h])
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])


def image_frame(image: np.ndarray, frame: str) -> np.ndarray:
    """The frame (x0, y0, x1, y1), end-exclusive, that prior coordinates are normalized to."""
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}; expected one of {FRAMES}")
    if frame == "content":
        return content_frame(image)
    h, w = np.asarray(image).shape[:2]
    return np.array([0, 0, w, h])


@dataclass
class Prior:
    """The average training mask's prompts, normalized to the frame ((0,0) top-left,
    (1,1) bottom-right)."""
    box: list[float]                       # x0, y0, x1, y1 covering the region (pixel extents)
    points: list[list[float]]              # [x, y, label] with label 1 positive, 0 negative
    frame: str = "content"
    level: float = 0.5                     # average-mask level whose region gives box and points
    n_masks: int = 0
    grid: int = 256
    notes: str = field(default="")

    def box_for(self, image: np.ndarray) -> np.ndarray:
        """(4,) box in the image's pixel indices."""
        fx0, fy0, fx1, fy1 = image_frame(image, self.frame).astype(np.float64)
        fw, fh = fx1 - fx0, fy1 - fy0
        u0, v0, u1, v1 = self.box
        h, w = np.asarray(image).shape[:2]
        box = np.array([fx0 + u0 * fw, fy0 + v0 * fh, fx0 + u1 * fw - 1, fy0 + v1 * fh - 1])
        return np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])

    def points_for(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((P, 2) float xy pixel coordinates, (P,) int labels) for one image."""
        fx0, fy0, fx1, fy1 = image_frame(image, self.frame).astype(np.float64)
        pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        xy = np.stack([fx0 + pts[:, 0] * (fx1 - fx0) - 0.5,
                       fy0 + pts[:, 1] * (fy1 - fy0) - 0.5], axis=1)
        return xy, pts[:, 2].astype(np.int64)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Prior":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: prior file not found "
                                    "(cxrseg.finetune writes prior.json)")
        try:
            data = json.loads(path.read_text())
            prior = cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path}: not a prior.json ({error})") from None
        if len(prior.box) != 4 or prior.frame not in FRAMES:
            raise ValueError(f"{path}: box must have 4 numbers and frame be one of {FRAMES}")
        return prior


def average_mask(images: list[np.ndarray], masks: list[np.ndarray], frame: str = "content",
                 grid: int = 256) -> np.ndarray:
    """(grid, grid) float32 in [0, 1]: the mean of the masks, each cropped to its image's frame."""
    total = np.zeros((grid, grid), np.float64)
    for image, mask in zip(images, masks):
        x0, y0, x1, y1 = image_frame(image, frame)
        crop = Image.fromarray((np.asarray(mask)[y0:y1, x0:x1] > 0).astype(np.uint8) * 255)
        total += np.asarray(crop.resize((grid, grid), Image.BILINEAR), np.float64) / 255.0
    return (total / max(len(masks), 1)).astype(np.float32)


def build_prior(images: list[np.ndarray], masks: list[np.ndarray], frame: str = "content",
                level: float = 0.5, grid: int = 256, n_positive: int = 2,
                n_negative: int = 1) -> Prior:
    """Prior prompts from training pairs.

    Box: the region where the average mask is >= `level`. Positive points: the most interior point
    (largest distance to the edge) of each of the `n_positive` largest parts of that region (the
    two lungs). Negative points: inside the box, the points farthest from the region (the
    mediastinum between the lungs), taken greedily `n_negative` times.
    """
    if not masks:
        raise ValueError("no training masks to build the prior from")
    average = average_mask(images, masks, frame, grid)
    region = average >= level
    if not region.any():
        raise ValueError(f"the average training mask never reaches level {level}")
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    box = [cols[0] / grid, rows[0] / grid, (cols[-1] + 1) / grid, (rows[-1] + 1) / grid]

    points = []
    labels, n = ndimage.label(region)
    sizes = np.bincount(labels.ravel())[1:]
    for part in np.argsort(-sizes)[:n_positive]:
        inside = ndimage.distance_transform_edt(np.pad(labels == part + 1, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(np.argmax(inside), inside.shape)
        points.append([(x + 0.5) / grid, (y + 0.5) / grid, 1])
    outside = ndimage.distance_transform_edt(~region)
    in_box = np.zeros_like(region)
    in_box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    outside = np.where(in_box, outside, 0)
    for _ in range(n_negative):
        if outside.max() <= 0:
            break
        y, x = np.unravel_index(np.argmax(outside), outside.shape)
        points.append([(x + 0.5) / grid, (y + 0.5) / grid, 0])
        yy, xx = np.ogrid[:grid, :grid]
        outside = np.where((yy - y) ** 2 + (xx - x) ** 2 <= (grid // 8) ** 2, 0, outside)
    return Prior(box=[float(v) for v in box],
                 points=[[float(a), float(b), int(c)] for a, b, c in points],
                 frame=frame, level=level, n_masks=len(masks), grid=grid,
                 notes="normalized to the frame; x right, y down")


def prediction_box(mask: np.ndarray, keep_fraction: float = 0.1) -> np.ndarray | None:
    """Box around a predicted mask's parts of at least `keep_fraction` x the largest part
    (drops specks), or None for an empty prediction. Used by the refining second pass."""
    fg = np.asarray(mask).astype(bool)
    labels, n = ndimage.label(fg)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= keep_fraction * sizes.max()) + 1
    return mask_box(np.isin(labels, keep))


def perturb_boxes(boxes: torch.Tensor, max_shift: float, side: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each box coordinate by a uniform random amount in [-max_shift, max_shift] model-input
    pixels, clipped to [0, side - 1] and kept at least one pixel wide. boxes: (B, 4) float."""
    if max_shift <= 0:
        return boxes
    noise = (torch.rand(boxes.shape, generator=generator) * 2 - 1) * max_shift
    out = (boxes + noise.to(boxes.device)).clamp(0, side - 1)
    x0 = torch.minimum(out[:, 0], out[:, 2] - 1).clamp(min=0)
    y0 = torch.minimum(out[:, 1], out[:, 3] - 1).clamp(min=0)
    x1 = torch.maximum(out[:, 2], x0 + 1)
    y1 = torch.maximum(out[:, 3], y0 + 1)
    return torch.stack([x0, y0, x1, y1], dim=1)
