"""Read any chest X-ray image file as (H, W) uint8 grayscale: one reader, one rule, for every stage.

Segmentation (`cxrseg.pairs`) and the classifier's image cache (`cxrcls.cache`) both read through
`read_gray`, so the same file always becomes the same 8-bit picture; masks are opened by the same
`open_image` (`cxrseg.pairs.read_mask`).

Which decoder: a DICOM file (`.dcm`/`.dicom`, or any file with the `DICM` marker at byte 128,
whatever its name) goes to `cxrstats.foundation.dicom`, whose docstring gives the DICOM rule;
anything else to PIL, whatever its suffix says (a PNG named `.jpg` is read as the PNG it is).
A PIL file is read as a viewer shows it: its EXIF Orientation (JPEG, PNG, TIFF) is applied, so a
rotated phone or scanner picture is upright and its masks fit it as displayed.
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
Refused, each a ValueError that names the file: colour or gray-with-alpha stored with 16 bits a
sample (PIL keeps only the high byte, which leaves 12-bit data 16 gray levels), files of several
frames or pages (multi-page TIFF, animated GIF/PNG; a camera's MPO JPEG reads its main picture),
other modes, non-finite values, and files PIL cannot decode.
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin

from cxrstats.foundation.dicom import DICOM_SUFFIXES, is_dicom, read_dicom_gray
from cxrstats.foundation.fileio import write_bytes

PIL_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "P", "PA")
# PIL raw modes of colour or gray-with-alpha pixels stored with 16 bits a sample; PIL decodes them
# to 8 bits by keeping the high byte (BMP's packed "BGR;16" 5-6-5 pixels are not among them)
WIDE_SAMPLES = ("RGB", "RGBA", "RGBX", "LA", "CMYK")


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file into (H, W) uint8 grayscale by the module's rule.

    Raises FileNotFoundError for a missing file and ValueError naming the file when it cannot be
    decoded or has an unsupported pixel format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if is_dicom(path):
        return read_dicom_gray(path)
    return to_gray(open_image(path), path)


def open_image(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """A PIL-readable file decoded, detached from the file and turned upright by its EXIF
    Orientation; ValueError naming the file for what the module's rule refuses. `data`: the
    file's bytes, already read (and checked by content) by the caller; decoded instead of
    reading `path` again."""
    path = Path(path)
    try:
        with _tiff_through_libtiff():
            image = Image.open(path if data is None else io.BytesIO(data))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
        raise ValueError(f"{path}: cannot read image ({error})") from None
    with image:
        try:
            frames, raw_modes = getattr(image, "n_frames", 1), _raw_modes(image)  # before load()
            image.load()
            upright = ImageOps.exif_transpose(image)  # a copy, rotated/mirrored as displayed
        except Exception as error:
            raise ValueError(f"{path}: cannot read image ({error})") from None
    _check_storage(frames, image.format, raw_modes, path)
    return upright


def write_png(path: str | os.PathLike, array: np.ndarray) -> str:
    """Write (H, W) or (H, W, 3) uint8 `array` as a PNG file, atomically; the sha256 of the bytes
    written (a mask's entry in fileio.FILE_HASHES)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())


@contextmanager
def _tiff_through_libtiff():
    """Open TIFF files for libtiff's decoder, as PIL does for compressed ones: PIL's own decoder
    of uncompressed TIFF scrambles the pixels of an Orientation 5-8 (quarter-turn) file."""
    before = TiffImagePlugin.READ_LIBTIFF
    TiffImagePlugin.READ_LIBTIFF = True
    try:
        yield
    finally:
        TiffImagePlugin.READ_LIBTIFF = before


def _raw_modes(image: Image.Image) -> list[str]:
    """How the file stores its pixels (PIL raw modes, e.g. "RGB;16B"), known until load()."""
    modes = []
    for tile in image.tile:  # (codec, extents, offset, args); args: the raw mode, or starts with it
        args = tile[3]
        modes.append(str(args if isinstance(args, str) else (args or ("",))[0]))
    return modes


def _check_storage(frames: int, file_format: str | None, raw_modes: list[str], path: Path) -> None:
    """Refuse a file of several frames, and colour or gray-with-alpha of 16 bits a sample."""
    if frames > 1 and file_format != "MPO":
        raise ValueError(f"{path}: {frames} frames or pages in one {file_format} file; give one "
                         "radiograph per file")
    for raw in raw_modes:
        base, _, bits = raw.partition(";")
        if base in WIDE_SAMPLES and bits.startswith("16"):
            raise ValueError(f"{path}: {base} with 16 bits a sample, which PIL reads as 8 "
                             "(the high byte only, losing the contrast of 12-bit data); save it "
                             "as 16-bit grayscale, or as 8-bit")


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file every stage reads as an image: a known image suffix, or a DICOM file
    without one (extension-less files and DICOM's dotted UID names, found by the `DICM` marker).
    A DICOMDIR (a DICOM folder's index, always so named) is not one."""
    path = Path(path)
    if path.name.upper() == "DICOMDIR":
        return False
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
