"""The DICOM rule (`cxrstats.foundation.dicom`) on files built here with pydicom, against arrays by
hand."""
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import get_decoder  # noqa: E402
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless,  # noqa: E402
                         JPEGLosslessSV1, SecondaryCaptureImageStorage, generate_uid)

from cxrstats.foundation.dicom import is_dicom, window  # noqa: E402
from cxrstats.foundation.imageio import image_stem, is_image_file, read_gray  # noqa: E402
from cxrseg.pairs import find_pairs, image_files, load_stack  # noqa: E402


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, signed=False,
                modality="DX", syntax=ExplicitVRLittleEndian, codestream=None, **elements):
    """A one-frame gray DICOM file holding `pixels` (H, W) uint16/int16 (or raw bytes); for a
    compressed `syntax`, `codestream` (else a fake JPEG 2000 one)."""
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
    if syntax.is_compressed:  # by default a fake JPEG 2000 codestream: enough to need a decoder
        ds.PixelData = pydicom.encaps.encapsulate([codestream or b"\xff\x4f\xff\x51" + b"\0" * 40])
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
    if get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG lossless decoder is installed here")
    path = write_dicom(tmp_path / "ll.dcm", RAMP, syntax=JPEGLosslessSV1)
    with pytest.raises(ValueError, match=r"ll.dcm: compressed with JPEG Lossless.*"
                                         r"1.2.840.10008.1.2.4.70.*no decoder for it is installed.*"
                                         r"pylibjpeg-libjpeg"):
        read_gray(path)


def test_compressed_data_an_installed_decoder_reads_or_names_as_broken(tmp_path):
    """Pillow (a requirement) decodes JPEG 2000: a real one reads like the uncompressed file; a
    broken one is not blamed on a missing decoder."""
    import io

    from PIL import Image
    codestream = io.BytesIO()
    Image.fromarray(RAMP.astype(np.uint16)).save(codestream, format="JPEG2000", no_jp2=True)
    real = write_dicom(tmp_path / "real.dcm", RAMP, bits_stored=12, syntax=JPEG2000Lossless,
                       codestream=codestream.getvalue())
    plain = write_dicom(tmp_path / "plain.dcm", RAMP, bits_stored=12)
    np.testing.assert_array_equal(read_gray(real), read_gray(plain))
    broken = write_dicom(tmp_path / "broken.dcm", RAMP, syntax=JPEG2000Lossless)
    with pytest.raises(ValueError, match=r"broken.dcm: cannot decode its JPEG 2000.*"
                                         r"1.2.840.10008.1.2.4.90\) pixel data \(") as error:
        read_gray(broken)
    assert "not installed" not in str(error.value)


def test_a_dicom_without_file_header_is_read_as_a_bare_data_set(tmp_path):
    """Older exports write the data set alone (no preamble, no `DICM`, no file meta)."""
    header = write_dicom(tmp_path / "header.dcm", RAMP, bits_stored=12)
    bare = tmp_path / "bare.dcm"
    ds = pydicom.dcmread(header)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(bare, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[:2] == b"\x08\x00" and bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_gray(bare), read_gray(header))
    from PIL import Image
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "png.dcm", format="PNG")
    with pytest.raises(ValueError, match=r"png.dcm: not a DICOM file"):
        read_gray(tmp_path / "png.dcm")


def test_a_dicomdir_is_not_an_image(tmp_path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "CXR"
    ds.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    write_dicom(tmp_path / "IM0001", RAMP)
    assert is_dicom(tmp_path / "DICOMDIR") and not is_image_file(tmp_path / "DICOMDIR")
    assert list(image_files(tmp_path)) == ["IM0001"]
    with pytest.raises(ValueError, match=r"DICOMDIR: a DICOMDIR \(the index of a DICOM folder\)"):
        read_gray(tmp_path / "DICOMDIR")


def test_a_dicom_file_with_an_image_suffix_is_read_as_dicom(tmp_path):
    dicom = write_dicom(tmp_path / "a.dcm", RAMP, bits_stored=12)
    misnamed = tmp_path / "a.png"
    misnamed.write_bytes(dicom.read_bytes())
    np.testing.assert_array_equal(read_gray(misnamed), read_gray(dicom))


def test_only_the_first_of_several_windows_counts(tmp_path):
    several = read_gray(write_dicom(tmp_path / "w.dcm", RAMP, WindowCenter=[2048, 100],
                                    WindowWidth=[4096, 10]))
    np.testing.assert_array_equal(several, window(RAMP, 2048, 4096))


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


def test_an_empty_window_counts_as_no_window_and_an_empty_function_as_linear(tmp_path):
    stretched = np.rint(RAMP / 4095 * 255).astype(np.uint8)
    for empty in (None, ""):
        gray = read_gray(write_dicom(tmp_path / "w.dcm", RAMP, bits_stored=12,
                                     WindowCenter=empty, WindowWidth=empty))
        np.testing.assert_array_equal(gray, stretched)
    linear = read_gray(write_dicom(tmp_path / "f.dcm", RAMP, WindowCenter=2048, WindowWidth=4096,
                                   VOILUTFunction=None))
    np.testing.assert_array_equal(linear, window(RAMP, 2048, 4096, "LINEAR"))


@pytest.mark.parametrize("keyword", ["SamplesPerPixel", "BitsStored", "PixelRepresentation",
                                     "PhotometricInterpretation"])
def test_an_empty_required_attribute_is_refused_naming_the_file_and_the_attribute(tmp_path,
                                                                                  keyword):
    path = write_dicom(tmp_path / "e.dcm", RAMP, **{keyword: None})
    with pytest.raises(ValueError, match=rf"e.dcm: DICOM attribute {keyword} is missing or empty"):
        read_gray(path)


def test_a_folder_prediction_skips_a_malformed_dicom_naming_it(tmp_path, capsys):
    from cxrseg.predict_folder import readable_batches
    good = write_dicom(tmp_path / "good.dcm", RAMP)
    bad = write_dicom(tmp_path / "bad.dcm", RAMP, SamplesPerPixel=None)
    skipped = []
    batches = list(readable_batches({"bad": bad, "good": good}, 4, skipped))
    assert [name for name, _ in batches[0]] == ["good.dcm"]
    assert skipped == [{"image": "bad.dcm",
                        "reason": "DICOM attribute SamplesPerPixel is missing or empty"}]
    assert f"skipped {bad}: DICOM attribute SamplesPerPixel" in capsys.readouterr().err


def test_any_other_pydicom_failure_is_a_value_error_naming_the_file(tmp_path, monkeypatch):
    from cxrstats.foundation import dicom

    def trip(ds, path):
        raise AttributeError("'Dataset' object has no attribute 'Rows'")
    monkeypatch.setattr(dicom, "_stored_values", trip)
    with pytest.raises(ValueError, match=r"r.dcm: malformed DICOM \(.*no attribute 'Rows'\)"):
        read_gray(write_dicom(tmp_path / "r.dcm", RAMP))


def voi_lut(descriptor, data, vr, descriptor_vr=None):
    """A VOI (or Modality) LUT Sequence of one item; `data` is a list (US) or the file's bytes
    (OW); the descriptor is written in `descriptor_vr` (US or SS), else as pydicom picks it."""
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence
    item = Dataset()
    if descriptor_vr:
        item.add(DataElement(0x00283002, descriptor_vr, descriptor))
    else:
        item.LUTDescriptor = descriptor
    item.add(DataElement(0x00283006, vr, data))
    return Sequence([item])


LUT = np.arange(4096) * 16  # 12-bit stored values onto 16-bit entries: a plain ramp


def test_a_voi_lut_stored_as_ow_bytes_reads_like_one_stored_as_numbers(tmp_path):
    from pydicom.uid import ExplicitVRBigEndian
    expected = np.rint(LUT[RAMP] * 255 / 65535).astype(np.uint8)
    numbers = read_gray(write_dicom(tmp_path / "us.dcm", RAMP, bits_stored=12,
                                    VOILUTSequence=voi_lut([4096, 0, 16], LUT.tolist(), "US")))
    words = read_gray(write_dicom(tmp_path / "ow.dcm", RAMP, bits_stored=12,
                                  VOILUTSequence=voi_lut([4096, 0, 16],
                                                         LUT.astype("<u2").tobytes(), "OW")))
    np.testing.assert_array_equal(numbers, expected)
    np.testing.assert_array_equal(words, expected)
    # Explicit VR Big Endian (retired, still met): OW words in the file's byte order
    big = write_dicom(tmp_path / "be.dcm", RAMP.astype(">u2").view("<u2"), bits_stored=12,
                      syntax=ExplicitVRBigEndian,
                      VOILUTSequence=voi_lut([4096, 0, 16], LUT.astype(">u2").tobytes(), "OW"))
    np.testing.assert_array_equal(read_gray(big), expected)


def test_an_8_bit_voi_lut_in_words_or_packed_in_bytes(tmp_path):
    table = np.arange(4096) // 16  # 0..255
    expected = (RAMP // 16).astype(np.uint8)
    for name, data in [("words", table.astype("<u2").tobytes()),
                       ("bytes", table.astype("u1").tobytes())]:
        gray = read_gray(write_dicom(tmp_path / f"{name}.dcm", RAMP, bits_stored=12,
                                     VOILUTSequence=voi_lut([4096, 0, 8], data, "OW")))
        np.testing.assert_array_equal(gray, expected, err_msg=name)


def test_a_broken_voi_lut_is_refused_in_a_short_message_naming_the_file(tmp_path):
    data = LUT.astype("<u2").tobytes()
    for name, descriptor, message in [("d.dcm", [4096, 0], "Descriptor must be 3 numbers"),
                                      ("b.dcm", [4096, 0, 0], "Descriptor gives 0 bits")]:
        path = write_dicom(tmp_path / name, RAMP, VOILUTSequence=voi_lut(descriptor, data, "OW"))
        with pytest.raises(ValueError, match=rf"{name}: VOI LUT {message}") as error:
            read_gray(path)
        assert len(str(error.value)) < 200


def test_a_luts_first_value_mapped_is_signed_where_the_standard_says_whatever_the_vr(tmp_path):
    """PS3.3 C.11.2.1.1: a VOI LUT's first value mapped is SS when its input (the modality values)
    may be negative, US otherwise; files write it as US or SS either way."""
    signed = np.array([[-1000, -500, 0, 500, 1000]])
    table = np.arange(2001) * 32                         # -1000..1000 onto 0..64000
    expected = np.rint(table[signed + 1000] * 255 / 65535).astype(np.uint8)
    for vr, first in [("US", -1000 % 65536), ("SS", -1000)]:
        lut = voi_lut([2001, first, 16], table.tolist(), "US", descriptor_vr=vr)
        gray = read_gray(write_dicom(tmp_path / f"{vr}.dcm", signed, signed=True,
                                     VOILUTSequence=lut))
        np.testing.assert_array_equal(gray, expected, err_msg=vr)
    # unsigned pixels whose rescale reaches below 0 (intercept -1000): signed input too
    lut = voi_lut([2001, -1000 % 65536, 16], table.tolist(), "US", descriptor_vr="US")
    rescaled = read_gray(write_dicom(tmp_path / "rescaled.dcm", signed + 1000,
                                     RescaleIntercept=-1000, RescaleSlope=1, VOILUTSequence=lut))
    np.testing.assert_array_equal(rescaled, expected)
    # unsigned input: a first value mapped of 40000 stays 40000
    high = np.array([[39999, 40000, 40255, 40300]])
    lut = voi_lut([256, 40000, 8], list(range(256)), "US", descriptor_vr="US")
    gray = read_gray(write_dicom(tmp_path / "high.dcm", high, VOILUTSequence=lut))
    assert gray.tolist() == [[0, 0, 255, 255]]


def test_a_modality_lut_sequence_maps_the_stored_values_before_the_window(tmp_path):
    table = 4095 - np.arange(4096)                     # a reversing Modality LUT
    gray = read_gray(write_dicom(tmp_path / "m.dcm", RAMP, bits_stored=12, WindowCenter=2048,
                                 WindowWidth=4096,
                                 ModalityLUTSequence=voi_lut([4096, 0, 16], table.tolist(), "US")))
    expected = np.clip((table[RAMP] - 2047.5) / 4095 + 0.5, 0, 1) * 255
    np.testing.assert_array_equal(gray, np.rint(expected).astype(np.uint8))
    # signed stored values: the Modality LUT's first value mapped is SS (C.11.1.1.1)
    signed = np.array([[-2, -1, 0, 1]])
    lut = voi_lut([4, -2 % 65536, 16], [0, 100, 200, 300], "US", descriptor_vr="US")
    gray = read_gray(write_dicom(tmp_path / "s.dcm", signed, signed=True, WindowCenter=150.5,
                                 WindowWidth=301,
                                 ModalityLUTSequence=lut))
    assert gray.tolist() == [[0, 85, 170, 255]]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom's, about the NaN below
def test_a_zero_slope_warns_and_reads_as_one_and_a_non_finite_number_is_refused(tmp_path):
    stretched = np.rint(RAMP / 4095 * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match="zero.dcm: RescaleSlope is 0"):
        gray = read_gray(write_dicom(tmp_path / "zero.dcm", RAMP, bits_stored=12,
                                     RescaleSlope=0, RescaleIntercept=0))
    np.testing.assert_array_equal(gray, stretched)
    for keyword in ("RescaleSlope", "WindowWidth"):
        path = write_dicom(tmp_path / f"{keyword}.dcm", RAMP, bits_stored=12, WindowCenter=2048,
                           **{keyword: "NaN"})
        with pytest.raises(ValueError, match=f"{keyword}.dcm: DICOM attribute {keyword} is not a "
                                             "finite number"):
            read_gray(path)
