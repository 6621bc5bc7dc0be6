"""The DICOM rule (`cxrstats.foundation.dicom`) on files built here with pydicom, against arrays by
hand."""
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless,  # noqa: E402
                         SecondaryCaptureImageStorage, generate_uid)

from cxrstats.foundation.dicom import is_dicom, window  # noqa: E402
from cxrstats.foundation.imageio import image_stem, read_gray  # noqa: E402
from cxrseg.pairs import find_pairs, load_stack  # noqa: E402


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, signed=False,
                modality="DX", syntax=ExplicitVRLittleEndian, **elements):
    """A one-frame gray DICOM file holding `pixels` (H, W) uint16/int16 (or raw bytes)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    pixels = np.asarray(pixels)
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored or 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in elements.items():
        setattr(ds, key, value)
    if syntax.is_compressed:  # a fake JPEG 2000 codestream: enough to need a decoder
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 40])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


RAMP = np.array([[0, 1000, 2000], [3000, 4000, 4095]])


def test_monochrome2_without_window_is_stretched_like_a_16_bit_png(tmp_path):
    gray = read_gray(write_dicom(tmp_path / "a.dcm", RAMP, bits_stored=12))
    assert gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, np.rint(RAMP / 4095 * 255).astype(np.uint8))


def test_monochrome1_is_inverted_after_the_window_so_bone_is_bright(tmp_path):
    plain = read_gray(write_dicom(tmp_path / "m2.dcm", RAMP, WindowCenter=2048,
                                  WindowWidth=4096))
    inverted = read_gray(write_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1",
                                     WindowCenter=2048, WindowWidth=4096))
    np.testing.assert_array_equal(inverted, 255 - plain)
    # LINEAR window by hand: ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped
    expected = np.clip((RAMP - 2047.5) / 4095 + 0.5, 0, 1) * 255
    np.testing.assert_array_equal(plain, np.rint(expected).astype(np.uint8))


def test_negative_slope_and_intercept_come_before_the_window(tmp_path):
    # Hounsfield-like: value = -1 * stored + 1000; window centre 0, width 2001 -> -1000..1000
    gray = read_gray(write_dicom(tmp_path / "s.dcm", np.array([[0, 1000, 2000]]),
                                 RescaleSlope=-1, RescaleIntercept=1000, WindowCenter=0,
                                 WindowWidth=2001))
    assert gray.tolist() == [[255, 128, 0]]


def test_sigmoid_and_linear_exact_windows():
    x = np.array([[-10.0, 0.0, 10.0]])
    np.testing.assert_array_equal(window(x, 0, 20, "SIGMOID"),
                                  np.rint(255 / (1 + np.exp(-4 * x / 20))).astype(np.uint8))
    assert window(x, 0, 20, "LINEAR_EXACT").tolist() == [[0, 128, 255]]
    with pytest.raises(ValueError, match="VOILUTFunction"):
        window(x, 0, 20, "CUBIC")


def test_only_the_stored_bits_count(tmp_path):
    # 12 bits stored in 16-bit words: the high nibble is not part of the value
    noisy = RAMP | 0xF000
    gray = read_gray(write_dicom(tmp_path / "b.dcm", noisy, bits_stored=12))
    np.testing.assert_array_equal(gray, np.rint(RAMP / 4095 * 255).astype(np.uint8))


def test_a_file_without_suffix_is_found_by_its_marker_and_keeps_its_name(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    path = write_dicom(images / "1.2.840.99", RAMP)
    (images / "notes.txt").write_text("not an image")
    assert is_dicom(path) and not is_dicom(images / "notes.txt")
    assert image_stem(path) == "1.2.840.99"
    from PIL import Image
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(masks / "1.2.840.99.png")
    assert [p.stem for p in find_pairs(images, masks)] == ["1.2.840.99"]
    stack, names = load_stack(images)
    assert names == ["1.2.840.99"] and stack[0].shape == (2, 3)


@pytest.mark.parametrize("problem, kwargs, message", [
    ("multi-frame", {"NumberOfFrames": 2}, "multi-frame"),
    ("colour", {"photometric": "RGB"}, "colour DICOM"),
])
def test_multi_frame_and_colour_are_refused_naming_the_file(tmp_path, problem, kwargs, message):
    pixels = np.zeros((2, 2, 3), np.uint16) if problem == "multi-frame" else np.zeros((2, 3))
    path = write_dicom(tmp_path / f"{problem}.dcm", pixels, **kwargs)
    with pytest.raises(ValueError, match=rf"{problem}.dcm: {message}"):
        read_gray(path)


def test_a_compressed_file_without_decoder_names_the_syntax_and_the_package(tmp_path):
    path = write_dicom(tmp_path / "j2k.dcm", RAMP, syntax=JPEG2000Lossless)
    with pytest.raises(ValueError, match=r"j2k.dcm: compressed with JPEG 2000.*"
                                         r"1.2.840.10008.1.2.4.90.*pylibjpeg-openjpeg"):
        read_gray(path)


def test_a_corrupt_dicom_is_refused_and_a_non_radiograph_warns(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(ValueError, match="bad.dcm: .*no image"):
        read_gray(bad)
    cut = write_dicom(tmp_path / "cut.dcm", np.zeros((64, 64)))
    cut.write_bytes(cut.read_bytes()[:-4000])  # pixel data cut short, as by a failed copy
    with pytest.raises(ValueError, match="cut.dcm: cannot"):
        read_gray(cut)
    with pytest.warns(UserWarning, match="Modality 'CT' is not a radiograph"):
        read_gray(write_dicom(tmp_path / "ct.dcm", RAMP, modality="CT"))
