"""cxrseg.pairs: reading pairs and image stacks in every storage format, symbolic links, clear
errors."""
import numpy as np
import pytest
from PIL import Image

from cxrseg.pairs import find_pairs, load_pair, load_pairs, load_stack, read_image, read_mask
from synthetic_pairs import write_pairs


def _write(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_formats_are_read_as_gray_uint8_and_masks_as_01(tmp_path, rng):
    gray = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    gray[0, :2] = 0, 255  # full range, so the 16-bit copy is stretched back to the same values
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _write(tmp_path / "images" / "a.bmp", gray)
    _write(tmp_path / "images" / "b.png", np.dstack([gray] * 3))
    _write(tmp_path / "images" / "c.png", np.dstack([gray] * 3 + [np.zeros_like(gray)]))
    _write(tmp_path / "images" / "d.png", gray.astype(np.uint16) * 257)  # 16-bit
    _write(tmp_path / "images" / "e.jpg", gray)
    mask = (rng.random((12, 10)) > 0.5).astype(np.uint8)
    for stem, values in [("a", mask * 255), ("b", mask), ("c", mask * 255), ("d", mask),
                         ("e", mask * 255)]:
        _write(tmp_path / "masks" / f"{stem}_mask.png", values.astype(np.uint8))
    pairs = find_pairs(tmp_path / "images", tmp_path / "masks", mask_suffix="_mask")
    assert [p.stem for p in pairs] == ["a", "b", "c", "d", "e"]
    images, masks = load_pairs(pairs)
    for stem, image, m in zip("abcde", images, masks):
        assert image.dtype == np.uint8 and image.shape == (12, 10)
        assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
        np.testing.assert_array_equal(m, mask)
        if stem in "abcd":  # lossless formats keep the gray values (RGBA: alpha dropped)
            np.testing.assert_array_equal(image, gray, err_msg=stem)


def test_16bit_with_narrow_range_is_stretched(tmp_path):
    values = np.linspace(1000, 4000, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    assert image.min() == 0 and image.max() == 255


def test_missing_mask_names_the_image(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    _write(tmp_path / "i" / "a.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "i" / "b.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "m" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"without a mask.*b\.png"):
        find_pairs(tmp_path / "i", tmp_path / "m")


def test_size_mismatch_unreadable_and_empty_folder(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir(), (tmp_path / "empty").mkdir()
    _write(tmp_path / "i" / "a.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "m" / "a.png", np.zeros((5, 4), np.uint8))
    (pair,) = find_pairs(tmp_path / "i", tmp_path / "m")
    with pytest.raises(ValueError, match=r"a\.png.*differs"):
        load_pair(pair)
    (tmp_path / "i" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png: cannot read"):
        read_image(tmp_path / "i" / "bad.png")
    with pytest.raises(ValueError, match=r"empty: no images"):
        find_pairs(tmp_path / "empty", tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_pairs(tmp_path / "nowhere", tmp_path / "m")


def test_read_mask_thresholds_0_255_and_keeps_0_1(tmp_path):
    _write(tmp_path / "a.png", np.array([[0, 255], [255, 0]], np.uint8))
    _write(tmp_path / "b.png", np.array([[0, 1], [1, 0]], np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), read_mask(tmp_path / "b.png"))


def test_load_stack_checks_index_length(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    with pytest.raises(ValueError, match="2 rows.*3 images"):
        load_stack(tmp_path / "s.npy", tmp_path / "index.csv")



def test_pairs_and_predict_folders_follow_symbolic_links(tmp_path):
    data = write_pairs(tmp_path / "data")
    (tmp_path / "images").symlink_to(data / "images", target_is_directory=True)  # a linked folder
    (tmp_path / "masks").mkdir()
    for mask in (data / "masks").iterdir():                                      # linked files
        (tmp_path / "masks" / mask.name).symlink_to(mask)
    pairs = find_pairs(tmp_path / "images", tmp_path / "masks")
    assert [p.stem for p in pairs] == [f"x{i:02d}" for i in range(12)]
    stack, names = load_stack(tmp_path / "images")
    assert len(stack) == 12 and names[0] == "x00.png"


def test_a_broken_or_looping_link_is_an_error_not_a_missing_image(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "images" / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match=r"b.png: broken symbolic link"):
        load_stack(tmp_path / "images")
    (tmp_path / "images" / "b.png").unlink()
    (tmp_path / "images" / "c.png").symlink_to(tmp_path / "images" / "d.png")
    (tmp_path / "images" / "d.png").symlink_to(tmp_path / "images" / "c.png")
    with pytest.raises(FileNotFoundError, match=r"c.png: broken symbolic link.*link loop"):
        load_stack(tmp_path / "images")


def test_hidden_files_are_not_images_and_other_files_are_named_in_a_note(tmp_path, capsys):
    """A folder copied from a Mac: `._x00.png` companions (AppleDouble, not PNGs) and .DS_Store;
    a stray text file and a DICOMDIR."""
    data = write_pairs(tmp_path / "data", n=3)
    for folder in ("images", "masks"):
        (data / folder / "._x00.png").write_bytes(b"\0\x05\x16\x07\0\x02\0\0Mac OS X" + bytes(40))
        (data / folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(40))
    (data / "images" / "notes.txt").write_text("scanned 2024")
    (data / "images" / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + bytes(16))
    assert [p.stem for p in find_pairs(data / "images", data / "masks")] == ["x00", "x01", "x02"]
    stack, names = load_stack(data / "images")
    assert names == ["x00.png", "x01.png", "x02.png"]
    err = capsys.readouterr().err
    assert f"{data / 'images'}: 2 file(s) left out, not images by name: DICOMDIR, notes.txt" in err
    assert "._x00" not in err and "DS_Store" not in err


def test_stems_that_differ_only_in_case_are_refused(tmp_path):
    (tmp_path / "images").mkdir()
    _write(tmp_path / "images" / "scan.png", np.zeros((8, 8), np.uint8))
    _write(tmp_path / "images" / "SCAN.PNG", np.ones((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"two images whose stems differ only in case or Unicode "
                                         r"form \(SCAN.PNG, scan.png\)"):
        load_stack(tmp_path / "images")
