"""The PIL side of the one image reader (`cxrstats.foundation.imageio`): files as people have them,
read as a viewer shows them or refused naming the file."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxrseg.pairs import read_mask
from cxrstats.foundation.imageio import read_gray

UPRIGHT = (np.arange(6 * 4).reshape(6, 4) * 10).astype(np.uint8)  # taller than wide
# EXIF Orientation -> the stored picture that a viewer turns upright by it
STORED = {3: UPRIGHT[::-1, ::-1], 5: UPRIGHT.T, 6: np.rot90(UPRIGHT, 1), 8: np.rot90(UPRIGHT, -1)}


def exif(orientation):
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_the_exif_orientation_is_applied_as_a_viewer_shows_the_file(tmp_path, suffix,
                                                                    orientation):
    """A phone or scanner picture stored turned: read upright (uncompressed TIFF included, which
    PIL's own decoder scrambles for quarter turns); masks turned the same way."""
    path = tmp_path / f"turned{suffix}"
    stored = np.ascontiguousarray(STORED[orientation])
    options = {"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}
    Image.fromarray(stored).save(path, exif=exif(orientation), **options)
    gray = read_gray(path)
    assert gray.shape == UPRIGHT.shape
    tolerance = 3 if suffix == ".jpg" else 0
    assert np.abs(gray.astype(int) - UPRIGHT).max() <= tolerance
    mask = tmp_path / f"mask{suffix}"
    Image.fromarray(np.where(stored > 100, 255, 0).astype(np.uint8)).save(
        mask, exif=exif(orientation), **options)
    np.testing.assert_array_equal(read_mask(mask), UPRIGHT > 100)


def write_png(path, samples, colour_type, bit_depth=16):
    """A PNG written by hand (PIL writes no 16-bit colour): rows of big-endian samples."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("name, colour_type, channels", [("rgb", 2, 3), ("rgba", 6, 4),
                                                         ("la", 4, 2)])
def test_colour_of_16_bits_a_sample_is_refused_not_read_as_its_high_byte(tmp_path, name,
                                                                         colour_type, channels):
    """12-bit detector data in a 16-bit RGB PNG: PIL keeps the high byte, 16 gray levels."""
    twelve = np.random.default_rng(0).integers(0, 4096, (8, 8)).astype(np.uint16)
    path = write_png(tmp_path / f"{name}.png", np.dstack([twelve] * channels), colour_type)
    with pytest.raises(ValueError, match=rf"{name}.png: .* with 16 bits a sample"):
        read_gray(path)
    gray16 = write_png(tmp_path / "gray16.png", twelve, 0)  # 16-bit gray: stretched, full contrast
    assert read_gray(gray16).max() == 255


def test_a_file_of_several_pages_is_refused(tmp_path):
    pages = [Image.fromarray(UPRIGHT), Image.fromarray(255 - UPRIGHT)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match=r"pages.tif: 2 frames or pages in one TIFF file"):
        read_gray(tmp_path / "pages.tif")
    with pytest.raises(ValueError, match=r"pages.tif: 2 frames or pages"):
        read_mask(tmp_path / "pages.tif")
