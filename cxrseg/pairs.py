"""Image/mask pairs for lung segmentation, and image stacks to segment.

Pairs come from two folders with matching file stems (the RSUA layout: `images/x.bmp`,
`masks/x.bmp`, or `masks/x_mask.png` with `--mask-suffix _mask`). Images are read as (H, W) uint8
grayscale whatever their storage (gray, RGB, RGBA with the alpha dropped, 16-bit); masks as (H, W)
uint8 0/1 from 0/1 or 0/255 files. Every problem raises an error that names the file.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrstats.foundation.imageio import (IMAGE_SUFFIXES, image_stem, is_image_file,
                                        open_image, read_gray)
from cxrstats.foundation.fileio import file_sha256, load_npy, read_csv
from cxrstats.foundation.names import name_key, plain_name


@dataclass(frozen=True)
class Pair:
    """One training example: the file stem and the paths of its image and mask."""
    stem: str
    image: Path
    mask: Path


def pairs_sha256(pairs: list[Pair]) -> str:
    """16 hex digits of a sha256 over the pairs' stems and their image and mask files' bytes (each
    file read once): another content of any file gives another hash."""
    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p.stem):
        digest.update(f"{pair.stem}:{file_sha256(pair.image)}:{file_sha256(pair.mask)}\n".encode())
    return digest.hexdigest()[:16]


def image_files(folder: Path) -> dict[str, Path]:
    """Map stem -> path for every image file in `folder` (not recursive); error on duplicate stems.

    Symbolic links are followed (a linked folder or linked files, e.g. data on another disk); a
    link whose target is missing is an error rather than an image silently left out. Hidden files
    (`.DS_Store`, macOS's `._<name>` companions of copied files) are not images; other files that
    are not images by name are named in one note on stderr. Two stems that differ only in case
    (or in Unicode form, `name_key`) are refused like equal ones: their outputs would be one file
    on macOS and Windows disks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files: dict[str, Path] = {}
    folded: dict[str, Path] = {}
    others = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if not is_image_file(path):
            if path.is_file():
                others.append(path.name)
            continue
        if path.is_symlink() and not path.exists():
            raise FileNotFoundError(f"{path}: broken symbolic link (its target {os.readlink(path)} "
                                    "does not exist or is a link loop)")
        if not path.is_file():
            continue
        stem = image_stem(path)
        twin = folded.get(name_key(stem).casefold())
        if twin is not None and image_stem(twin) == stem:
            raise ValueError(f"{folder}: two images with the stem {stem!r} "
                             f"({twin.name}, {path.name}); keep one")
        if twin is not None:
            raise ValueError(f"{folder}: two images whose stems differ only in case or Unicode "
                             f"form ({twin.name}, "
                             f"{path.name}): their outputs would be one file on a disk that "
                             "ignores case; rename one")
        files[stem] = folded[name_key(stem).casefold()] = path
    if not files:
        raise ValueError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} "
                         "and DICOM files without a suffix; sub-folders are not searched)")
    if others:
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        print(f"note: {folder}: {len(others)} file(s) left out, not images by name: {shown}",
              file=sys.stderr, flush=True)
    return files


def find_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike,
               mask_suffix: str = "") -> list[Pair]:
    """Pair every image in `images_dir` with the mask `<stem><mask_suffix>.*` in `masks_dir`.

    Returns the pairs sorted by stem. Masks without an image are ignored; an image without a mask
    is an error.
    """
    images = image_files(Path(images_dir))
    masks = image_files(Path(masks_dir))
    pairs, missing = [], []
    for stem, image_path in images.items():
        mask_path = masks.get(stem + mask_suffix)
        if mask_path is None:
            missing.append(image_path.name)
        else:
            pairs.append(Pair(stem, image_path, mask_path))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{images_dir}: {len(missing)} image(s) without a mask "
                         f"'<stem>{mask_suffix}.*' in {masks_dir}: {shown}")
    return pairs


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W) uint8 grayscale by the shared rule of
    `cxrstats.foundation.imageio`."""
    return read_gray(path)


def read_mask(path: str | os.PathLike, data: bytes | None = None) -> np.ndarray:
    """Read a mask file as (H, W) uint8 0/1. Accepts 0/1 or 0/255 (any value > half range is 1).
    Opened as images are (`open_image`: EXIF Orientation applied, the same refusals); `data`: its
    bytes, already read and checked by the caller (`fileio.VouchedFiles.read_bytes`)."""
    path = Path(path)
    image = open_image(path, data)
    if image.mode not in ("1", "L", "I;16", "I;16B", "I;16L", "I", "F"):
        image = image.convert("L")
    array = np.array(image)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel mask, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    high = float(array.max()) if array.size else 0.0
    if high <= 1:
        return (array > 0).astype(np.uint8)
    half = 127 if array.dtype == np.uint8 else (np.iinfo(array.dtype).max // 2
                                                if np.issubdtype(array.dtype, np.integer) else 0.5)
    return (array > half).astype(np.uint8)


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair: image (H, W) uint8 and mask (H, W) uint8 0/1 of the same size."""
    image = read_image(pair.image)
    mask = read_mask(pair.mask)
    if image.shape != mask.shape:
        raise ValueError(f"{pair.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                         f"image {pair.image} size {image.shape[1]}x{image.shape[0]}")
    return image, mask


def load_pairs(pairs: list[Pair]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read all pairs; images and masks may differ in size between pairs."""
    images, masks = [], []
    for pair in pairs:
        image, mask = load_pair(pair)
        images.append(image)
        masks.append(mask)
    return images, masks


def load_stack(images: str | os.PathLike, index: str | os.PathLike | None = None
               ) -> tuple[list[np.ndarray] | np.ndarray, list[str]]:
    """Images to segment, with their names.

    `images` is either a `.npy` stack (N, H, W) uint8 with `index` a CSV `row, image` whose row i
    names stack row i, or a folder of image files (names = file names, sorted). An index name
    must be a plain file name (`cxrstats.foundation.names.plain_name`): masks written into a
    folder are named after it.
    Returns (stack (N, H, W) uint8 or list of (H, W) uint8, names).
    """
    images = Path(images)
    if images.is_dir():
        files = image_files(images)
        return [read_image(p) for p in files.values()], [p.name for p in files.values()]
    if not images.is_file():
        raise FileNotFoundError(f"{images}: file or folder not found")
    stack = load_npy(images, mmap=True)
    if stack.ndim != 3:
        raise ValueError(f"{images}: expected an (N, H, W) stack, got shape {stack.shape}")
    if index is None:
        names = [str(i) for i in range(len(stack))]
    else:
        rows = read_csv(index, required=["row", "image"])
        if len(rows) != len(stack):
            raise ValueError(f"{index} has {len(rows)} rows but {images} has {len(stack)} images")
        for i, row in enumerate(rows):
            if row["row"].strip() != str(i):
                raise ValueError(f"{index}: row {i} has row={row['row']}; rows must be 0..N-1 "
                                 f"in order to match {images}")
        names = [plain_name(row["image"], f"{index}: row {i}") for i, row in enumerate(rows)]
    return stack, names
