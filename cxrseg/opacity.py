"""Synthetic lung opacities pasted inside a known lung mask (the mask stays the true answer).

A proxy for diseased films without new data: each kind whitens part of the lung towards the density
of soft tissue, the way consolidation, fluid or a mass hides the lung on a radiograph, so a
segmenter that follows brightness instead of anatomy cuts it away. Kinds:

- `consolidation`: a lobar-like band in the lower or middle zone of one lung, textured.
- `effusion`: fluid at the base of one or both lungs, its top a meniscus rising towards the
  lateral wall; its height grows with strength.
- `haze`: a diffuse bilateral veil, denser low and centrally.
- `mass`: a round, dense lesion touching the lateral edge of one lung.
- `whiteout`: both lungs whitened from the base up to 30-65% of their height, the upper edge
  diffuse, as in ARDS or bilateral lower-lobe consolidation: the lung bases and the diaphragm's
  edge vanish into soft-tissue density. Not among the kinds `opacity` copies draw from (KINDS);
  its own augmentation (cxrseg.augmented_copies `whiteout`).

`strength` in [0, 1]: 0 leaves the image unchanged; the opacity map is pointwise non-decreasing in
strength for a fixed seed, and it is zero outside the lung mask. Images (H, W) uint8; masks (H, W)
0/1.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

KINDS = ("consolidation", "effusion", "haze", "mass")   # drawn at random by `opacity` copies
ALL_KINDS = (*KINDS, "whiteout")


def lungs(mask: np.ndarray) -> list[np.ndarray]:
    """The (up to) two largest components of a lung mask, left to right; each (H, W) bool."""
    labels, n = ndimage.label(np.asarray(mask) > 0)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.argsort(-sizes)[:2] + 1
    parts = [labels == k for k in keep]
    return sorted(parts, key=lambda p: np.flatnonzero(p.any(axis=0)).mean())


def _smooth_noise(shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    """(H, W) smooth random field in [0, 1] with blobs about `scale` pixels wide."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=max(scale, 1.0), mode="reflect")
    low, high = field.min(), field.max()
    return (field - low) / (high - low) if high > low else np.zeros(shape)


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """Smooth step from 0 (x <= -width) to 1 (x >= width)."""
    t = np.clip((x + width) / (2 * width), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def opacity_map(mask: np.ndarray, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """(H, W) float in [0, 1]: how far each pixel is pulled towards soft-tissue density.

    Zero outside `mask`; pointwise non-decreasing in `strength` for the same `seed`.
    """
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown opacity kind {kind!r}; expected one of {ALL_KINDS}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    mask = np.asarray(mask) > 0
    parts = lungs(mask)
    out = np.zeros(mask.shape, np.float64)
    if not parts or strength == 0:
        return out
    rng = np.random.default_rng(seed)
    h, w = mask.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    side = rng.integers(len(parts))
    texture = 0.75 + 0.25 * _smooth_noise(mask.shape, rng, max(h, w) / 24)
    if kind == "consolidation":
        lung = parts[side]
        rows = np.flatnonzero(lung.any(axis=1))
        top, height = rows[0], rows[-1] - rows[0] + 1
        centre = top + height * rng.uniform(0.55, 0.8)
        half = height * rng.uniform(0.15, 0.25) * (0.5 + 0.5 * strength)
        band = _ramp(half - np.abs(yy - centre), height * 0.06)
        out = 0.9 * strength * band * texture * lung
    elif kind == "effusion":
        chosen = parts if rng.random() < 0.5 else [parts[side]]
        for lung in chosen:
            rows = np.flatnonzero(lung.any(axis=1))
            cols = np.flatnonzero(lung.any(axis=0))
            bottom, height = rows[-1], rows[-1] - rows[0] + 1
            centre_x = w / 2
            # 0 at the medial edge, 1 at the lateral edge: the meniscus climbs the lateral wall
            lateral = np.clip(np.abs(xx - centre_x) - np.abs(cols.mean() - centre_x)
                              + (cols[-1] - cols[0]) / 2, 0, None) / max(cols[-1] - cols[0], 1)
            level = bottom - height * (0.08 + 0.32 * strength) * (1 + 0.6 * lateral ** 2)
            fluid = _ramp(yy - level, height * 0.04)
            out = np.maximum(out, (0.5 + 0.45 * strength) * fluid * lung)
    elif kind == "haze":
        rows = np.flatnonzero(mask.any(axis=1))
        low = np.clip((yy - rows[0]) / max(rows[-1] - rows[0], 1), 0, 1)
        central = 1 - np.clip(np.abs(xx - w / 2) / (w / 2), 0, 1)
        veil = 0.5 + 0.3 * low + 0.2 * central
        out = 0.6 * strength * veil * texture * mask
    elif kind == "whiteout":
        for lung in parts:
            rows = np.flatnonzero(lung.any(axis=1))
            bottom, height = rows[-1], rows[-1] - rows[0] + 1
            level = bottom - height * (0.3 + 0.35 * strength) * rng.uniform(0.85, 1.0)
            zone = _ramp(yy - level, height * 0.08)
            out = np.maximum(out, (0.75 + 0.22 * strength) * zone * texture * lung)
    else:  # mass
        lung = parts[side]
        rows = np.flatnonzero(lung.any(axis=1))
        cols = np.flatnonzero(lung.any(axis=0))
        y = rows[0] + (rows[-1] - rows[0]) * rng.uniform(0.3, 0.7)
        row = np.flatnonzero(lung[int(round(y))]) if lung[int(round(y))].any() else cols
        outer = row[-1] if cols.mean() > w / 2 else row[0]
        radius = max(2.0, (cols[-1] - cols[0]) * rng.uniform(0.15, 0.22))
        x = outer - np.sign(outer - w / 2) * radius * 0.6
        distance = np.hypot(yy - y, xx - x)
        out = 0.95 * strength * _ramp(radius - distance, radius * 0.15) * lung
    return np.clip(out, 0, 1) * mask


def tissue_level(image: np.ndarray, mask: np.ndarray) -> float:
    """Grey level an opacity tends to: the 75th percentile outside the lungs (mediastinum,
    diaphragm, soft tissue), at least the lungs' 99th percentile."""
    image = np.asarray(image, np.float64)
    inside = np.asarray(mask) > 0
    outside = image[~inside & (image > 0)]
    level = np.percentile(outside, 75) if outside.size else 255.0
    if inside.any():
        level = max(level, np.percentile(image[inside], 99))
    return float(level)


def add_opacity(image: np.ndarray, mask: np.ndarray, kind: str, strength: float,
                seed: int = 0) -> np.ndarray:
    """(H, W) uint8 image with a synthetic opacity inside `mask`; pixels outside are unchanged."""
    image = np.asarray(image)
    if image.shape != np.asarray(mask).shape:
        raise ValueError(f"image {image.shape} and mask {np.asarray(mask).shape} differ in shape")
    alpha = opacity_map(mask, kind, strength, seed)
    target = tissue_level(image, mask)
    out = image.astype(np.float64) * (1 - alpha) + target * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
