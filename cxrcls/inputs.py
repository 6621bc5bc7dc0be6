"""The classifier's input variants, composed per batch on the device from the cached images and masks.

- `original`: the cached image.
- `m15`, `m50`: image x mask (the study's cut-outs), masks from cxrseg's masks/m15.npy, masks/m50.npy.
- `overlay`: the unchanged image with the raw mask's inner boundary drawn in white (255), the same
  picture as `cxrseg.morphology.overlay(image, raw_mask, thickness)`, computed for a whole batch.

Masks are (N, S, S) uint8 0/1 arrays whose rows are aligned with cache/index.csv; a mask file whose
shape disagrees with cache/images.npy is refused with an error naming both files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

INPUTS = ("original", "m15", "m50", "overlay")
MASK_FILES = {"original": None, "m15": "m15.npy", "m50": "m50.npy", "overlay": "raw.npy"}


@dataclass
class InputSource:
    """Memory-mapped images (N, S, S) uint8 and, for masked variants, the aligned masks."""
    kind: str
    images: np.ndarray
    masks: np.ndarray | None

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows `rows` of the images (and masks): (B, S, S) uint8 arrays, in the order given.

        Reads in increasing row order (sequential on disk), then restores the requested order.
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ascending = rows[order]

        def take(array):
            block = np.empty((len(rows),) + array.shape[1:], dtype=array.dtype)
            block[order] = array[ascending]
            return block
        return take(self.images), (take(self.masks) if self.masks is not None else None)


def open_input(cache_dir: str | Path, masks_dir: str | Path, kind: str) -> InputSource:
    """Open cache/images.npy and, for masked variants, the mask file, checking they line up."""
    if kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r}; choose one of {INPUTS}")
    image_path = Path(cache_dir) / "images.npy"
    if not image_path.is_file():
        raise FileNotFoundError(f"{image_path}: image cache not found (run python -m cxrcls.cache)")
    images = np.load(image_path, mmap_mode="r")
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1] != images.shape[2]:
        raise ValueError(f"{image_path}: expected (N, S, S) uint8, got {images.shape} {images.dtype}")
    masks = None
    if MASK_FILES[kind]:
        mask_path = Path(masks_dir) / MASK_FILES[kind]
        if not mask_path.is_file():
            raise FileNotFoundError(f"{mask_path}: mask file for input {kind!r} not found "
                                    "(run python -m cxrseg.predict and cxrseg.postprocess)")
        masks = np.load(mask_path, mmap_mode="r")
        if masks.shape != images.shape:
            raise ValueError(f"{mask_path} has shape {masks.shape} but {image_path} has "
                             f"{images.shape}: the masks are not aligned with the image cache")
        if masks.dtype not in (np.uint8, np.bool_):
            raise ValueError(f"{mask_path}: expected uint8 0/1 masks, got {masks.dtype}")
    return InputSource(kind, images, masks)


def _disk_kernel(radius: int, device, dtype) -> torch.Tensor:
    r = int(radius)
    y, x = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return (x * x + y * y <= r * r).to(device=device, dtype=dtype)[None, None]


def mask_boundary(masks: torch.Tensor, thickness: int = 2) -> torch.Tensor:
    """(B, 1, H, W) bool: mask pixels within `thickness` of the background (outside counts as
    background), i.e. mask & ~erode_disk(mask, thickness) as in cxrseg.morphology.boundary."""
    fg = masks > 0
    if thickness <= 0:
        return torch.zeros_like(fg)
    kernel = _disk_kernel(thickness, masks.device, torch.float32)
    inside = F.conv2d(fg.float(), kernel, padding=thickness)  # count of foreground under the disk
    eroded = inside >= kernel.sum() - 0.5
    return fg & ~eroded


def compose(images: torch.Tensor, masks: torch.Tensor | None, kind: str,
            thickness: int = 2) -> torch.Tensor:
    """The input variant of a batch: images (B, 1, S, S) float in [0, 1], masks (B, 1, S, S) 0/1."""
    if kind == "original":
        return images
    if masks is None:
        raise ValueError(f"input {kind!r} needs masks")
    if kind in ("m15", "m50"):
        return images * (masks > 0).to(images.dtype)
    if kind == "overlay":
        return torch.where(mask_boundary(masks, thickness), torch.ones_like(images), images)
    raise ValueError(f"unknown input {kind!r}; choose one of {INPUTS}")
