"""The classifier's input variants, composed per batch on the device from the cached images and
masks.

- `original`: the cached image.
- `m<r>` for a dilation radius r >= 0 (the study's `m15`, `m50`; `m0` is the eroded mask itself):
  image x mask, the mask read from masks/m<r>.npy (written by `cxrseg.postprocess --dilate r`).
The names are defined in cxrstats.foundation.input_names.
- `overlay`: the unchanged image with the raw mask's inner boundary drawn in white (255), the same
  picture as `cxrseg.morphology.overlay(image, raw_mask, thickness)`, computed for a whole batch.

Masks are (N, S, S) uint8 0/1 arrays whose rows are aligned with cache/index.csv. Before any mask is
used, the mask stage must have finished (masks/done_postprocess.json for m<r>,
masks/done_predict.json for overlay, listing the mask file), the mask file must hold the bytes
that record vouches for (its sha256: done_postprocess.json's `content_file_sha256` for m<r>,
done_predict.json's `raw_sha256` for raw.npy; hashed once per process), m<r> must have been made
from the raw masks done_predict.json vouches for now
(cxrseg.records.check_made_from_current_raw), and masks/index.csv must equal cache/index.csv row
for row; any difference is refused with an error naming both files.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrstats.foundation.fileio import load_npy, read_csv, read_done
from cxrstats.foundation.input_names import is_input_name, mask_radius
from cxrseg.records import POSTPROCESS, PREDICT, check_made_from_current_raw, check_raw_sha256


class _InputNames:
    """The set of valid input names, for `kind in INPUTS` (cxrstats.foundation.input_names)."""

    def __contains__(self, kind) -> bool:
        return is_input_name(kind)

    def __repr__(self) -> str:
        return "original, overlay or m<r> (r >= 0)"


INPUTS = _InputNames()


def check_input(kind: str) -> str:
    """`kind` if it names an input variant (cxrstats.foundation.input_names); ValueError
    otherwise."""
    if kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r}: use original, overlay, or m<r> for a mask "
                         "dilated by r >= 0 pixels (e.g. m0, m15, m50)")
    return kind


def input_type(text: str) -> str:
    """argparse `type=` for --train-input / --eval-input."""
    try:
        return check_input(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


MASK_STAGES = {POSTPROCESS: "cxrseg.postprocess", PREDICT: "cxrseg.predict"}  # record -> its stage


def mask_file(kind: str) -> tuple[str, str] | None:
    """(mask file, completion record of the stage that writes it) of an input, None for original."""
    if mask_radius(check_input(kind)) is not None:
        return f"{kind}.npy", POSTPROCESS
    if kind == "overlay":
        return "raw.npy", PREDICT
    return None


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


def check_same_rows(cache_index: Path, masks_index: Path) -> None:
    """Refuse masks/index.csv unless it equals cache/index.csv row for row (row, image)."""
    cache_rows = [(r["row"], r["image"]) for r in read_csv(cache_index, required=["row", "image"])]
    if not masks_index.is_file():
        raise FileNotFoundError(f"{masks_index}: not found; the masks cannot be matched to "
                                f"{cache_index} (run python -m cxrseg.predict again)")
    mask_rows = [(r["row"], r["image"]) for r in read_csv(masks_index, required=["row", "image"])]
    if mask_rows == cache_rows:
        return
    if len(mask_rows) != len(cache_rows):
        problem = f"{len(mask_rows)} rows against {len(cache_rows)}"
    else:
        k = next(k for k, (a, b) in enumerate(zip(mask_rows, cache_rows)) if a != b)
        problem = f"row {k} is {mask_rows[k]} against {cache_rows[k]}"
    raise ValueError(f"{masks_index} and {cache_index} differ ({problem}): the masks were made for "
                     "another image cache; run cxrseg.predict and cxrseg.postprocess again")


def open_input(cache_dir: str | Path, masks_dir: str | Path, kind: str) -> InputSource:
    """Open cache/images.npy and, for masked variants, the mask file, checking they line up.

    Refuses an unfinished cache (no cache/done.json), a cache whose row count differs from
    cache/index.csv, masks from an unfinished mask stage, a mask file the last run of that stage
    did not write, and masks made for other rows.
    """
    check_input(kind)
    cache_dir, masks_dir = Path(cache_dir), Path(masks_dir)
    image_path, index_path = cache_dir / "images.npy", cache_dir / "index.csv"
    if not image_path.is_file():
        raise FileNotFoundError(f"{image_path}: image cache not found (run python -m cxrcls.cache)")
    read_done(cache_dir, "done.json", what="image cache (python -m cxrcls.cache)")
    images = load_npy(image_path, mmap=True)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1] != images.shape[2]:
        raise ValueError(f"{image_path}: expected (N, S, S) uint8, got {images.shape} "
                         f"{images.dtype}")
    n_index = len(read_csv(index_path, required=["row", "image"]))
    if n_index != len(images):
        raise ValueError(f"{image_path} has {len(images)} rows but {index_path} has {n_index}")
    masks = None
    files = mask_file(kind)
    if files:
        name, done = files
        if not masks_dir.is_dir():
            raise FileNotFoundError(f"{masks_dir}: mask folder not found; input {kind!r} needs "
                                    "python -m cxrseg.predict and cxrseg.postprocess first")
        stage = f"{MASK_STAGES[done]} run"
        record = read_done(masks_dir, done, what=stage, files=[name])
        mask_path = masks_dir / name
        if name not in record.get("outputs", []):
            raise FileNotFoundError(
                f"{mask_path}: mask file for input {kind!r} is not among the outputs of the last "
                f"run recorded in {masks_dir / done} ({record.get('outputs')}); "
                "run cxrseg.postprocess with that radius in --dilate")
        if name == "raw.npy":
            check_raw_sha256(mask_path, record)
        masks = load_npy(mask_path, mmap=True)
        if masks.shape != images.shape:
            raise ValueError(f"{mask_path} has shape {masks.shape} but {image_path} has "
                             f"{images.shape}: the masks are not aligned with the image cache")
        if masks.dtype not in (np.uint8, np.bool_):
            raise ValueError(f"{mask_path}: expected uint8 0/1 masks, got {masks.dtype}")
        check_same_rows(index_path, masks_dir / "index.csv")
        if done == POSTPROCESS:
            check_made_from_current_raw(masks_dir, record)
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
    if check_input(kind) == "original":
        return images
    if masks is None:
        raise ValueError(f"input {kind!r} needs masks")
    if mask_radius(kind) is not None:
        return images * (masks > 0).to(images.dtype)
    return torch.where(mask_boundary(masks, thickness), torch.ones_like(images), images)
