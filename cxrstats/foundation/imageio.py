"""Read any chest X-ray image file as (H, W) uint8 grayscale: one reader, one rule, for every stage.

Segmentation (`cxrseg.pairs`) and the classifier's image cache (`cxrcls.cache`) both read through
`read_gray`, so the same file always becomes the same 8-bit picture.

The rule, by how the file stores its pixels (PIL mode):
- 8-bit gray (`L`) is kept as stored; 1-bit (`1`) becomes 0/255.
- Colour (`RGB`, `RGBA`, palette, `CMYK`, `YCbCr`) becomes ITU-R 601 luma,
  round(0.299 R + 0.587 G + 0.114 B); an alpha channel is dropped (NIH's few RGBA files carry the
  gray value in R, G and B). Gray with alpha (`LA`) keeps its gray channel.
- Deeper gray (16-bit `I;16*`, 32-bit `I`, float `F`) is stretched per image, min -> 0 and
  max -> 255, round((v - min) / (max - min) * 255); a constant image becomes all 0.
  Why min-max and not v / 257: deep radiographs rarely use the container's whole range (12-bit
  detector data stored in 16 bits holds 0..4095, which v / 257 would squeeze into 0..16, a nearly
  black image with 4 bits of contrast); min-max gives every file full contrast whatever its bit
  depth, and it is the normalisation MedSAM applies to its input anyway. 8-bit files are not
  stretched: the study used NIH's 8-bit PNGs as they are.
Anything else (other modes, non-finite values, files PIL cannot decode) is a ValueError that names
the file. DICOM files (`.dcm`, `.dicom`, or no known suffix and the `DICM` marker) are read by
`cxrstats.foundation.dicom`, whose docstring gives the DICOM rule.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from cxrstats.foundation.dicom import DICOM_SUFFIXES, is_dicom, read_dicom_gray

PIL_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "P", "PA")


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file into (H, W) uint8 grayscale by the module's rule.

    Raises FileNotFoundError for a missing file and ValueError naming the file when it cannot be
    decoded or has an unsupported pixel format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if path.suffix.lower() not in PIL_SUFFIXES and is_dicom(path):
        return read_dicom_gray(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = image.copy()  # detach from the file before it closes
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise ValueError(f"{path}: cannot read image ({error})") from None
    return to_gray(image, path)


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file every stage reads as an image: a known image suffix, or a DICOM file
    without one (extension-less files and DICOM's dotted UID names, found by the `DICM` marker)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def image_stem(path: str | os.PathLike) -> str:
    """The name that pairs an image with its mask and names its outputs: the file name without a
    known image suffix (a DICOM file named by a dotted UID keeps its whole name)."""
    path = Path(path)
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name


def to_gray(image: Image.Image, source: str | os.PathLike = "image") -> np.ndarray:
    """(H, W) uint8 grayscale from a decoded PIL image, by the module's rule; `source` names it in
    errors."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode in ("LA", "La"):
        return np.asarray(image.getchannel(0), dtype=np.uint8).copy()
    if mode in DEEP_MODES:
        return stretch_to_uint8(np.asarray(image), source)
    if mode in COLOUR_MODES:
        if mode not in ("RGB", "RGBA", "RGBX", "RGBa"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if mode == "RGBa":  # premultiplied alpha: undo it, so gray does not depend on alpha
            image = image.convert("RGBA")
        rgb = np.asarray(image)[..., :3].astype(np.float64)
        return np.clip(np.rint(rgb @ LUMA), 0, 255).astype(np.uint8)
    raise ValueError(f"{source}: unsupported pixel format {mode!r} (expected gray, colour, 16-bit "
                     "or float)")


def stretch_to_uint8(values: np.ndarray, source: str | os.PathLike = "image") -> np.ndarray:
    """(H, W) numbers of any range -> (H, W) uint8: min -> 0, max -> 255, rounded; constant -> 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{source}: expected a single-channel image, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{source}: image holds NaN or infinite values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)
