"""A folder of mixed radiograph files, as a user's folder may be, to try `make segment` on.

From NIH ChestX-ray14 PNGs (../shared/data/nih_sample/images): 14 PNGs (the first two made RGBA),
two JPEGs (quality 92 and 85), a 16-bit PNG, a BMP, a DICOM MONOCHROME2 file and a MONOCHROME1 one
without a suffix (12 bits stored, windowed), a JPEG 2000 DICOM whose data no decoder reads, and a
corrupt PNG: 22 files, 20 of them readable.

    python -m tools.mixed_folder --nih ../shared/data/nih_sample/images --out mixed
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.ownership import foreign_files

N_PNG = 14          # then one source image per other kind, in the order below
WINDOW = (2048, 4096)  # centre, width of the 12-bit DICOM files


def gray(path: Path) -> np.ndarray:
    """(H, W) uint8 of an NIH PNG."""
    return np.asarray(Image.open(path).convert("L"))


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, jpeg2000: bool = False) -> None:
    """A DX DICOM file of 12-bit `pixels` ((H, W) uint16), or an undecodable JPEG 2000 one."""
    import pydicom.uid as uid
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = uid.JPEG2000Lossless if jpeg2000 else uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "anonymous"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = WINDOW
    if jpeg2000:                       # a code-stream header and nothing a decoder could read
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def build(nih: Path, out: Path) -> list[Path]:
    """Write the 22 files into `out` (new or empty); returns them."""
    sources = sorted(nih.glob("*.png"))
    if len(sources) < N_PNG + 6:
        raise ValueError(f"{nih}: needs at least {N_PNG + 6} PNGs, found {len(sources)}")
    if out.exists() and next(foreign_files(out), None) is not None:
        raise ValueError(f"{out}: not empty; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(sources[:N_PNG]):
        image = Image.open(path)
        (image.convert("RGBA") if i < 2 else image).save(out / path.name)
    rest = [gray(p) for p in sources[N_PNG:N_PNG + 6]]
    Image.fromarray(rest[0]).save(out / "scan_q92.jpg", quality=92)
    Image.fromarray(rest[1]).save(out / "scan_q85.jpg", quality=85)
    Image.fromarray(rest[2].astype(np.uint16) * 257).save(out / "sixteen_bit.png")
    Image.fromarray(rest[3]).save(out / "bitmap.bmp")
    write_dicom(out / "dicom_mono2.dcm", rest[4].astype(np.uint16) * 16, "MONOCHROME2")
    write_dicom(out / "dicom_mono1", 4095 - rest[5].astype(np.uint16) * 16, "MONOCHROME1")
    write_dicom(out / "dicom_j2k.dcm", rest[4].astype(np.uint16) * 16, "MONOCHROME2",
                jpeg2000=True)
    (out / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return sorted(out.iterdir())


def main(argv=None) -> None:
    parser = Parser(prog="python -m tools.mixed_folder", description=__doc__)
    parser.add_argument("--nih", required=True, help="folder of NIH ChestX-ray14 PNGs (20 or more)")
    parser.add_argument("--out", required=True, help="new or empty folder for the 22 files")
    args = parser.parse_args(argv)
    files = build(Path(args.nih), Path(args.out))
    print(f"{len(files)} files in {args.out}")


if __name__ == "__main__":
    main()
