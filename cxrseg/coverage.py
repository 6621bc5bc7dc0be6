"""How much of the true lung the study's masks keep: the share of ground-truth lung pixels inside
M-15 / M-50 built from a predicted mask exactly as cxrseg.postprocess builds them.

Dice treats a missed opacity at the lung edge like any other error; for the study what matters is
whether the dilated mask (raw mask eroded r=5, dilated r=15 or r=50) still shows that lung. Radii
are in the pipeline's pixel units: masks are first scaled (nearest neighbour) so that their longer
side is `size` pixels (the classifier cache's side, 512), then processed with
`postprocess.process_mask` (same erosion, dilation and empty-mask fallback).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .postprocess import process_mask
from .study_masks import DILATE_RADII, ERODE_RADIUS, PIPELINE_SIZE


def to_pipeline_size(mask: np.ndarray, size: int | None) -> np.ndarray:
    """(H, W) 0/1 mask scaled so that max(H, W) == size (nearest neighbour), uint8 0/1.
    `size` None keeps the mask as it is."""
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    if size is None or max(mask.shape) == size:
        return mask
    h, w = mask.shape
    scale = size / max(h, w)
    new = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return np.asarray(Image.fromarray(mask * 255).resize(new, Image.NEAREST)) > 127


def lung_kept(pred: np.ndarray, truth: np.ndarray, erode: int = ERODE_RADIUS, radii=DILATE_RADII,
              size: int | None = PIPELINE_SIZE) -> list[float]:
    """Share of the true lung (0..1) inside M-r of the predicted mask, one per radius in `radii`.

    pred, truth: (H, W) 0/1 of the same shape. An empty true lung keeps everything (1.0).
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"predicted mask {pred.shape} and true mask {truth.shape} differ in shape")
    p = to_pipeline_size(pred, size)
    t = to_pipeline_size(truth, size).astype(bool)
    total = int(t.sum())
    if total == 0:
        return [1.0 for _ in radii]
    _, dilated, _ = process_mask(p.astype(np.uint8), erode, list(radii))
    return [float((d.astype(bool) & t).sum() / total) for d in dilated]
