"""Read a DICOM radiograph as (H, W) uint8 grayscale, bone bright: the toolkit's DICOM rule.

Hospitals and most public chest X-ray sets beyond NIH ship DICOM. The rule, in the order DICOM
defines it (PS3.3 C.11):
1. stored values: BitsStored respected (12 bits in 16-bit words; signed values sign-extended);
2. modality LUT: the file's Modality LUT Sequence table when it has one, else value * RescaleSlope
   + RescaleIntercept (negative slopes included);
3. VOI: the file's first VOI LUT when it has one, otherwise its first window (WindowCenter/Width,
   with VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID) onto 0..255; a file with neither is
   stretched min -> 0, max -> 255 like a 16-bit PNG
   (`cxrstats.foundation.imageio.stretch_to_uint8`). A LUT's first value mapped (the second
   value of LUTDescriptor) is read as the standard types it, whatever VR the file wrote: signed
   for a Modality LUT when PixelRepresentation is 1, for a VOI LUT when the modality values may
   be negative (the rescale of the stored range; PS3.3 C.11.1.1.1, C.11.2.1.1);
4. MONOCHROME1 (bright = low values) is inverted after the VOI step, so bone is bright in every
   output.
An empty optional attribute counts as absent (an empty WindowCenter or WindowWidth: no window; an
empty VOILUTFunction: LINEAR). A `.dcm`/`.dicom` file without the DICOM file header (no 128-byte
preamble and `DICM` marker, as older exports write it) is read as a bare data set, its transfer
syntax taken from how it is encoded. Compressed pixel data is decoded by whatever pydicom finds
installed (Pillow reads JPEG baseline and JPEG 2000; pylibjpeg or gdcm the rest). Multi-frame,
colour and unreadable files, a DICOMDIR (a folder's index, not an image), compressed files that
no installed decoder reads (the message says whether one is missing, and which packages add one,
or the data is broken), and files whose required attributes (SamplesPerPixel,
PhotometricInterpretation, BitsStored, PixelRepresentation; a LUT's descriptor and data) are
missing, empty or not (finite) numbers are a ValueError naming the file (and the attribute); a
Modality other than CR/DX/DR, or a RescaleSlope of 0 (read as 1), is a warning, not a refusal.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom")
RADIOGRAPHY = ("CR", "DX", "DR")
DICOMDIR = "1.2.840.10008.1.3.10"  # Media Storage Directory: a DICOMDIR's SOP class
# A compressed transfer syntax, and the packages that let pydicom decode it when nothing installed
# does (pydicom's registry, `_decoder_state`, says whether something does).
DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",    # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",    # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",    # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",    # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",    # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",    # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",   # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",   # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
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
    """Decode one DICOM file into (H, W) uint8 grayscale by the module's rule; every refusal is a
    ValueError naming the file."""
    path = Path(path)
    try:
        return _decode(path)
    except (TypeError, AttributeError, KeyError) as error:  # a malformed value pydicom trips on
        raise ValueError(f"{path}: malformed DICOM ({_brief(error)})") from None


def _decode(path: Path) -> np.ndarray:
    # imageio imports this module for its dispatch, so this import waits until the call
    from cxrstats.foundation.imageio import stretch_to_uint8

    ds = _read_dataset(path)
    _check_single_gray_frame(ds, path)
    stored = _stored_values(ds, path)
    values, may_be_negative = _modality_values(ds, stored, path)
    gray = _apply_voi(ds, values, may_be_negative, path)
    if gray is None:
        gray = stretch_to_uint8(values, path)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        gray = 255 - gray
    modality = str(ds.get("Modality", "")).upper()
    if modality not in RADIOGRAPHY:
        warnings.warn(f"{path}: Modality {modality or 'missing'!r} is not a radiograph "
                      f"({'/'.join(RADIOGRAPHY)}); read anyway", stacklevel=3)
    return gray


def _read_dataset(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:  # no preamble and `DICM` marker: try it as a bare data set
        pass
    except (OSError, ValueError, TypeError, EOFError) as error:
        raise ValueError(f"{path}: cannot read DICOM file ({error})") from None
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, EOFError) as error:
        raise ValueError(f"{path}: cannot read DICOM file ({error})") from None
    if "PixelData" not in ds:
        raise ValueError(f"{path}: not a DICOM file (no DICOM file header, and read as a bare "
                         "data set it holds no image)")
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare data set: the syntax it was read with
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit else
                                          pydicom.uid.ExplicitVRLittleEndian if little else
                                          pydicom.uid.ExplicitVRBigEndian)
    return ds


def _check_single_gray_frame(ds, path: Path) -> None:
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID", "")
                                              if meta is not None else ""))
    if sop_class == DICOMDIR:
        raise ValueError(f"{path}: a DICOMDIR (the index of a DICOM folder), not an image; give "
                         "the folder that holds its images")
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file holds no image (no PixelData)")
    frames = int(_number(ds, "NumberOfFrames", path) or 1)
    if frames > 1:
        raise ValueError(f"{path}: multi-frame DICOM ({frames} frames); give one radiograph per "
                         "file")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip()
    if not photometric:
        raise ValueError(f"{path}: DICOM attribute PhotometricInterpretation is missing or empty")
    if _required_int(ds, "SamplesPerPixel", path) != 1 or photometric not in ("MONOCHROME1",
                                                                              "MONOCHROME2"):
        raise ValueError(f"{path}: colour DICOM ({photometric or 'no PhotometricInterpretation'}); "
                         "a radiograph is MONOCHROME1 or MONOCHROME2")


def _stored_values(ds, path: Path) -> np.ndarray:
    """(H, W) float64 stored pixel values, with only the BitsStored low bits kept."""
    bits = _required_int(ds, "BitsStored", path)
    signed = _required_int(ds, "PixelRepresentation", path) == 1
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    try:
        raw = ds.pixel_array
    except Exception as error:  # pydicom raises RuntimeError, NotImplementedError, ValueError ...
        raise ValueError(f"{path}: {_undecodable(syntax, meta, error)}") from None
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected one gray image, got pixel array of shape {raw.shape}")
    values = raw.astype(np.int64) & ((1 << bits) - 1)
    if signed:  # two's complement in `bits` bits
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values.astype(np.float64)


def _undecodable(syntax: str, meta, error: Exception) -> str:
    """Why pixel data could not be decoded: no decoder for its compression installed (and which
    packages add one), none in pydicom at all, or an installed decoder failed (pydicom's reason)."""
    known = str(getattr(meta.TransferSyntaxUID, "name", syntax)) if syntax else syntax
    name = syntax if known == syntax else f"{known} ({syntax})"  # an unknown UID is its own name
    available = _decoder_state(syntax) if syntax else True
    if available is False:
        hint = (f"`pip install {DECODERS[syntax]}` adds one" if syntax in DECODERS else
                "see pydicom's list of pixel data decoders")
        return f"compressed with {name} and no decoder for it is installed; {hint}"
    if available is None:
        return f"its transfer syntax {name} is one pydicom cannot decode"
    reason = _brief(" ".join(str(error).split()), 200)
    compressed = bool(syntax) and getattr(meta.TransferSyntaxUID, "is_compressed", False)
    return f"cannot decode its {name + ' ' if compressed else ''}pixel data ({reason})"


def _decoder_state(syntax: str) -> bool | None:
    """True when an installed package decodes `syntax`, False when none does, None when pydicom
    has no decoder for it."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return None


def _modality_values(ds, stored: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """(H, W) float64 modality values (PS3.3 C.11.1): the Modality LUT Sequence's table when the
    file has one, else stored * RescaleSlope + RescaleIntercept; and whether the output range
    may be negative (over every stored value BitsStored allows), which makes a VOI LUT's first
    value mapped signed (C.11.2.1.1). A table's output is unsigned."""
    signed = _required_int(ds, "PixelRepresentation", path) == 1
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        table, first, _ = _lut(ds.ModalityLUTSequence[0], signed, _little_endian(ds), path,
                               "Modality LUT")
        return _look_up(table, first, stored), False
    slope = _number(ds, "RescaleSlope", path)
    if slope == 0:  # would map every pixel to the intercept: a header error, not an image
        warnings.warn(f"{path}: RescaleSlope is 0 (every pixel would become the intercept); "
                      "read as 1", stacklevel=4)
    slope = slope or 1.0
    intercept = _number(ds, "RescaleIntercept", path) or 0.0
    bits = _required_int(ds, "BitsStored", path)
    lowest = -(1 << (bits - 1)) if signed else 0
    highest = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return stored * slope + intercept, min(lowest * slope, highest * slope) + intercept < 0


def _little_endian(ds) -> bool:
    return ds.original_encoding[1] is not False  # None: built in memory, not read


def _apply_voi(ds, values: np.ndarray, signed: bool, path: Path) -> np.ndarray | None:
    """(H, W) uint8 from the file's first VOI LUT or window, or None when it has neither.
    `signed`: the modality values may be negative (the VOI LUT's first value mapped is SS)."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return _voi_lut(ds.VOILUTSequence[0], values, signed, _little_endian(ds), path)
    center, width = _number(ds, "WindowCenter", path), _number(ds, "WindowWidth", path)
    if center is None or width is None:  # missing or empty: no window
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    return window(values, center, width, function, path)


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


def _voi_lut(item, values: np.ndarray, signed: bool, little_endian: bool,
             path: Path) -> np.ndarray:
    """A VOI LUT table onto 0..255: its entries scaled from 0..2**bits - 1."""
    table, first, bits = _lut(item, signed, little_endian, path, "VOI LUT")
    return np.rint(_look_up(table, first, values) * (255.0 / ((1 << bits) - 1))).astype(np.uint8)


def _lut(item, signed: bool, little_endian: bool, path: Path,
         name: str) -> tuple[np.ndarray, int, int]:
    """(table, first value mapped, bits per entry) of a LUT item (PS3.3 C.11.1.1.1, C.11.2.1.1).
    The descriptor's three values are 16-bit; entries (0 means 2**16) and bits are unsigned, the
    first value mapped is signed (SS) when `signed`, whatever VR the file wrote them in."""
    descriptor = item.get("LUTDescriptor")
    try:
        entries, first, bits = (int(v) & 0xFFFF for v in descriptor)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {name} Descriptor must be 3 numbers (entries, first value "
                         f"mapped, bits), not {_brief(descriptor)}") from None
    if signed and first >= 0x8000:
        first -= 0x10000
    if not 1 <= bits <= 16:
        raise ValueError(f"{path}: {name} Descriptor gives {bits} bits per entry (1 to 16)")
    entries = entries or 65536
    table = _lut_table(item.get("LUTData"), entries, bits, little_endian)[:entries]
    if table.size == 0:
        raise ValueError(f"{path}: empty {name}")
    return table, first, bits


def _look_up(table: np.ndarray, first: int, values: np.ndarray) -> np.ndarray:
    """table[value - first]; values below the first value mapped take the first entry, values
    beyond the table the last."""
    return table[np.clip(np.rint(values).astype(np.int64) - first, 0, table.size - 1)]


def _lut_table(data, entries: int, bits: int, little_endian: bool) -> np.ndarray:
    """LUT Data as float64 entries. US data comes as numbers; OW data as the file's bytes: 16-bit
    words in the dataset's byte order (PS3.3 C.11.2.1.1), or one byte an entry when the
    descriptor says 8 bits and the bytes are too few for words (files that pack 8-bit tables)."""
    if data is None:
        return np.zeros(0)
    if not isinstance(data, bytes):
        return np.asarray(data, dtype=np.float64).ravel()
    if bits <= 8 and len(data) < 2 * entries:
        return np.frombuffer(data, dtype="u1").astype(np.float64)
    words = np.dtype("<u2" if little_endian else ">u2")
    return np.frombuffer(data[:len(data) // 2 * 2], dtype=words).astype(np.float64)


def _number(ds, keyword: str, path: Path) -> float | None:
    """The (first) value of a numeric attribute; None when it is missing or empty (files may carry
    several windows: the first counts). ValueError naming the attribute when it is not a number."""
    try:
        value = ds.get(keyword)
    except (TypeError, ValueError) as error:  # pydicom converts a value when it is first read
        raise ValueError(f"{path}: DICOM attribute {keyword} is unreadable "
                         f"({_brief(error)})") from None
    if value is not None and not isinstance(value, (str, bytes, int, float)):
        value = value[0] if len(value) else None  # a multi-valued number
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{path}: DICOM attribute {keyword} is not a finite number "
                         f"({_brief(value)})") from None
    return number


def _required_int(ds, keyword: str, path: Path) -> int:
    """A whole-number attribute the file must have; ValueError naming it when missing or empty."""
    value = _number(ds, keyword, path)
    if value is None:
        raise ValueError(f"{path}: DICOM attribute {keyword} is missing or empty")
    return int(value)


def _brief(value, limit: int = 80) -> str:
    """`value` as text cut to `limit` characters: a message stays short whatever the file holds."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
