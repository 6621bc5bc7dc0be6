"""Read a DICOM radiograph as (H, W) uint8 grayscale, bone bright: the toolkit's DICOM rule.

Hospitals and most public chest X-ray sets beyond NIH ship DICOM. The rule, in the order DICOM
defines it (PS3.3 C.11):
1. stored values: BitsStored respected (12 bits in 16-bit words; signed values sign-extended);
2. modality LUT: value * RescaleSlope + RescaleIntercept (negative slopes included);
3. VOI: the file's first VOI LUT when it has one, otherwise its first window (WindowCenter/Width,
   with VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID) onto 0..255; a file with neither is
   stretched min -> 0, max -> 255 like a 16-bit PNG
   (`cxrstats.foundation.imageio.stretch_to_uint8`);
4. MONOCHROME1 (bright = low values) is inverted after the VOI step, so bone is bright in every
   output.
Multi-frame, colour and unreadable files, and compressed files whose decoder is not installed, are
a ValueError naming the file; a Modality other than CR/DX/DR is a warning, not a refusal.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom")
RADIOGRAPHY = ("CR", "DX", "DR")
# A compressed transfer syntax, and the package that lets pydicom decode it.
DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",    # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",    # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",    # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",    # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",    # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",    # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",   # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",   # JPEG 2000
}


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a `.dcm`/`.dicom` file, or any file with the DICOM marker `DICM` at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode one DICOM file into (H, W) uint8 grayscale by the module's rule."""
    # imageio imports this module for its dispatch, so this import waits until the call
    from cxrstats.foundation.imageio import stretch_to_uint8

    path = Path(path)
    ds = _read_dataset(path)
    _check_single_gray_frame(ds, path)
    stored = _stored_values(ds, path)
    values = stored * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0)
                                                                     or 0)
    gray = _apply_voi(ds, values, path)
    if gray is None:
        gray = stretch_to_uint8(values, path)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        gray = 255 - gray
    modality = str(ds.get("Modality", "")).upper()
    if modality not in RADIOGRAPHY:
        warnings.warn(f"{path}: Modality {modality or 'missing'!r} is not a radiograph "
                      f"({'/'.join(RADIOGRAPHY)}); read anyway", stacklevel=2)
    return gray


def _read_dataset(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, TypeError, EOFError) as error:
        raise ValueError(f"{path}: cannot read DICOM file ({error})") from None


def _check_single_gray_frame(ds, path: Path) -> None:
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file holds no image (no PixelData)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"{path}: multi-frame DICOM ({frames} frames); give one radiograph per "
                         "file")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in ("MONOCHROME1",
                                                                     "MONOCHROME2"):
        raise ValueError(f"{path}: colour DICOM ({photometric or 'no PhotometricInterpretation'}); "
                         "a radiograph is MONOCHROME1 or MONOCHROME2")


def _stored_values(ds, path: Path) -> np.ndarray:
    """(H, W) float64 stored pixel values, with only the BitsStored low bits kept."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    try:
        raw = ds.pixel_array
    except Exception as error:  # pydicom raises RuntimeError, NotImplementedError, ValueError ...
        if syntax in DECODERS:
            name = getattr(meta.TransferSyntaxUID, "name", syntax)
            raise ValueError(f"{path}: compressed with {name} ({syntax}) and no decoder for it is "
                             f"installed; `pip install {DECODERS[syntax]}` adds one") from None
        raise ValueError(f"{path}: cannot decode DICOM pixels ({error})") from None
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected one gray image, got pixel array of shape {raw.shape}")
    bits = int(ds.get("BitsStored", raw.dtype.itemsize * 8))
    values = raw.astype(np.int64) & ((1 << bits) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 1:  # two's complement in `bits` bits
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values.astype(np.float64)


def _apply_voi(ds, values: np.ndarray, path: Path) -> np.ndarray | None:
    """(H, W) uint8 from the file's first VOI LUT or window, or None when it has neither."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return _voi_lut(ds.VOILUTSequence[0], values, path)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        return window(values, center, width, function, path)
    return None


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR",
           source: str | os.PathLike = "image") -> np.ndarray:
    """DICOM windowing of (H, W) values onto 0..255 (PS3.3 C.11.2.1.2), rounded to uint8."""
    x = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"{source}: window width {width:g} must be > 0")
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"{source}: window width {width:g} must be > 0")
        y = np.clip((x - center) / width + 0.5, 0.0, 1.0) * 255.0
    elif function == "LINEAR":
        if width < 1:
            raise ValueError(f"{source}: window width {width:g} must be >= 1")
        if width == 1:  # a threshold at the centre
            y = np.where(x > center - 0.5, 255.0, 0.0)
        else:
            y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) * 255.0
    else:
        raise ValueError(f"{source}: unsupported VOILUTFunction {function!r} (expected LINEAR, "
                         "LINEAR_EXACT or SIGMOID)")
    return np.rint(y).astype(np.uint8)


def _voi_lut(item, values: np.ndarray, path: Path) -> np.ndarray:
    """A VOI LUT table (LUTDescriptor: entries, first value mapped, bits) onto 0..255."""
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536  # 0 means 2**16 entries
    table = np.asarray(item.LUTData, dtype=np.float64).ravel()[:entries]
    if table.size == 0:
        raise ValueError(f"{path}: empty VOI LUT")
    index = np.clip(np.rint(values).astype(np.int64) - first, 0, table.size - 1)
    return np.rint(table[index] * (255.0 / ((1 << bits) - 1))).astype(np.uint8)


def _first(value) -> float:
    """The first of a multi-valued DICOM number (files may carry several windows)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)
