"""cxrseg.pairs and cxrseg.split: reading pairs in every storage format, clear errors, splits."""
import numpy as np
import pytest
from PIL import Image

from cxrseg import split
from cxrseg.pairs import find_pairs, load_pair, load_pairs, load_stack, read_image, read_mask


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


def test_split_counts_and_determinism():
    assert split.split_counts(292) == (204, 44, 44)
    stems = [f"s{i:03d}" for i in range(292)]
    a = split.split_parts(stems, seed=3)
    assert a == split.split_parts(list(reversed(stems)), seed=3)  # input order does not matter
    assert a != split.split_parts(stems, seed=4)
    assert sorted(list(a.values()).count(p) for p in split.PARTS) == [44, 44, 204]


def test_folds_cover_everything_and_fold_parts_are_disjoint():
    stems = [f"s{i}" for i in range(30)]
    folds = split.split_folds(stems, 3, seed=0)
    assert np.bincount(list(folds.values())).tolist() == [10, 10, 10]
    tests = set()
    for k in range(3):
        parts = split.parts_for_fold(folds, k, seed=0)
        test = {s for s, p in parts.items() if p == "test"}
        assert test == {s for s, f in folds.items() if f == k}
        assert sum(p == "val" for p in parts.values()) == 4  # round(0.15 * 30), from other folds
        tests |= test
    assert tests == set(stems)


def test_split_cli_writes_csv(tmp_path):
    (tmp_path / "i").mkdir(), (tmp_path / "m").mkdir()
    for k in range(10):
        _write(tmp_path / "i" / f"x{k}.png", np.zeros((4, 4), np.uint8))
        _write(tmp_path / "m" / f"x{k}.png", np.zeros((4, 4), np.uint8))
    split.main(["--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"),
                "--out", str(tmp_path / "seg" / "splits.csv")])
    parts = split.read_splits(tmp_path / "seg" / "splits.csv")
    assert sorted(parts.values()).count("train") == 6  # 10 -> 6/2/2
    assert (tmp_path / "seg" / "run_split.json").is_file()
    split.main(["--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"),
                "--out", str(tmp_path / "folds" / "folds.csv"), "--folds", "5"])
    with pytest.raises(ValueError, match="--fold"):
        split.read_splits(tmp_path / "folds" / "folds.csv")
    parts = split.read_splits(tmp_path / "folds" / "folds.csv", fold=1)
    assert set(parts.values()) == {"train", "val", "test"}
    with pytest.raises(SystemExit, match="error: .*no images"):
        (tmp_path / "e").mkdir()
        split.main(["--images", str(tmp_path / "e"), "--masks", str(tmp_path / "m"),
                    "--out", str(tmp_path / "z.csv")])
