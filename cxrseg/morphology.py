"""Binary erosion/dilation with a Euclidean disk, via a distance transform, and masked images.

`erode_disk(m, r)` and `dilate_disk(m, r)` give exactly what
`scipy.ndimage.binary_erosion/binary_dilation(m, structure=disk(r))` give (default border_value=0:
outside the image counts as background), but in one distance transform, so the time does not grow
with r (r=50 on 1024x1024 takes tens of milliseconds instead of seconds).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool footprint: pixels with x^2 + y^2 <= r^2."""
    r = int(radius)
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def _check(mask: np.ndarray, radius: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if radius < 0 or int(radius) != radius:
        raise ValueError(f"radius must be a non-negative integer, got {radius}")
    return mask.astype(bool)


def _distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pixel to the nearest False pixel of `mask`.

    scipy computes it as the sqrt of an integer sum of squares, and sqrt is correctly rounded, so
    `distance <= r` is exactly `dx^2 + dy^2 <= r^2` for integer r (no tolerance needed).
    """
    return ndimage.distance_transform_edt(mask)


def _bounding_slices(fg: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Row/column slices of the foreground's bounding box grown by `margin`, clipped to the
    image."""
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, fg.shape[0])),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, fg.shape[1])))


def dilate_disks(mask: np.ndarray, radii: list[int]) -> list[np.ndarray]:
    """Dilations of one mask by several radii from one distance transform; each (H, W) uint8 0/1."""
    fg = _check(mask, max(radii, default=0))
    for r in radii:
        _check(fg, r)
    out = [np.zeros(fg.shape, np.uint8) for _ in radii]
    if not fg.any():
        return out
    # Only pixels within max(r) of the foreground's bounding box can change.
    box = _bounding_slices(fg, max(radii))
    distance = _distance(~fg[box])
    for result, r in zip(out, radii):
        result[box] = distance <= r
    return out


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) uint8 0/1: pixels within distance `radius` of a foreground pixel."""
    return dilate_disks(mask, [radius])[0]


def erode_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) uint8 0/1: pixels whose whole disk lies in the foreground (outside = background)."""
    fg = _check(mask, radius)
    out = np.zeros(fg.shape, np.uint8)
    if not fg.any():
        return out
    if radius == 0:
        return fg.astype(np.uint8)
    # Work on the foreground's bounding box plus one ring of background (padding where the box
    # touches the image edge, as outside counts as background). That ring is enough: the nearest
    # background pixel outside the box is never closer than the ring pixel found by clamping it.
    rows, cols = _bounding_slices(fg, 0)
    padded = np.pad(fg[rows, cols], 1, constant_values=False)
    out[rows, cols] = _distance(padded)[1:-1, 1:-1] > radius
    return out


def boundary(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """(H, W) bool: the inner boundary of the mask, `thickness` pixels wide."""
    fg = np.asarray(mask).astype(bool)
    return fg & ~erode_disk(fg, thickness).astype(bool) if thickness > 0 else np.zeros_like(fg)


def cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside the mask set to 0 (the study's masked input)."""
    image = np.asarray(image)
    if image.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"image shape {image.shape} and mask shape "
                         f"{np.asarray(mask).shape} differ")
    keep = np.asarray(mask).astype(bool)
    return np.where(keep if image.ndim == 2 else keep[..., None], image, 0).astype(image.dtype)


def overlay(image: np.ndarray, mask: np.ndarray, thickness: int = 2,
            value: int = 255) -> np.ndarray:
    """The unchanged image with the mask's boundary drawn in `value` (the anatomical-overlay
    input)."""
    image = np.asarray(image)
    if image.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"image shape {image.shape} and mask shape "
                         f"{np.asarray(mask).shape} differ")
    out = image.copy()
    out[boundary(mask, thickness)] = value
    return out
