"""Anatomy-aware mask clean-up and augmented training copies, on tiny masks."""
import numpy as np
import pytest

from cxrseg import postprocess
from cxrseg.anatomy import clean_mask, fill_holes, keep_largest
from cxrseg.augmented_copies import augment, augmented_copies
from cxrstats.foundation.fileio import write_done


def _two_lungs():
    m = np.zeros((30, 30), np.uint8)
    m[4:26, 3:12] = 1
    m[4:26, 17:27] = 1
    return m


def test_fill_holes_fills_inside_each_lung_but_not_between_them():
    m = _two_lungs()
    holed = m.copy()
    holed[10:14, 6:9] = 0           # a hole in the left lung
    holed[15:17, 20:23] = 0         # and in the right
    np.testing.assert_array_equal(fill_holes(holed), m)
    assert fill_holes(m)[15, 14] == 0    # the gap between the lungs stays open


def test_keep_largest_drops_specks_and_keeps_two_lungs():
    m = _two_lungs()
    specks = m.copy()
    specks[0, 0] = specks[28, 14] = 1
    np.testing.assert_array_equal(keep_largest(specks, 2), m)
    np.testing.assert_array_equal(keep_largest(specks, 0), specks)
    assert keep_largest(m, 1).sum() == 22 * 10
    assert not keep_largest(np.zeros((5, 5)), 2).any()


def test_clean_mask_combines_both():
    m = _two_lungs()
    noisy = m.copy()
    noisy[10, 6] = 0
    noisy[0, 29] = 1
    np.testing.assert_array_equal(clean_mask(noisy, fill=True, largest=2), m)


def test_postprocess_cli_applies_the_clean_up(tmp_path):
    raw = np.stack([_two_lungs()] * 2)
    raw[0, 10:13, 6:9] = 0
    raw[1, 0, 0] = 1
    np.save(tmp_path / "raw.npy", raw)
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    write_done(tmp_path, {}, ["raw.npy", "index.csv"], done="done_predict.json")
    postprocess.main(["--masks", str(tmp_path / "raw.npy"), "--index", str(tmp_path / "index.csv"),
                      "--erode", "0", "--dilate", "0", "--fill-holes", "--keep-largest", "2",
                      "--out", str(tmp_path / "out")])
    eroded = np.load(tmp_path / "out" / "eroded.npy")
    np.testing.assert_array_equal(eroded, np.stack([_two_lungs()] * 2))


def test_augmented_copies_are_seeded_and_keep_the_mask_for_pixel_changes():
    rng = np.random.default_rng(0)
    m = _two_lungs()
    image = np.clip(np.where(m, 60, 190) + rng.normal(0, 4, m.shape), 0, 255).astype(np.uint8)
    stems, images, masks = augmented_copies(["a"], [image], [m], ["opacity", "photometric"], 2, 0)
    assert stems == ["a~aug0", "a~aug1"]
    again = augmented_copies(["a"], [image], [m], ["opacity", "photometric"], 2, 0)
    np.testing.assert_array_equal(images[1], again[1][1])
    np.testing.assert_array_equal(masks[0], m)
    assert not np.array_equal(images[0], images[1])
    boxed, boxed_mask = augment(image, m, ["letterbox"], np.random.default_rng(3))
    assert boxed.shape == image.shape and boxed_mask.sum() < m.sum()
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(image, m, ["rotate"], rng)


def test_shape_qc_flags_masks_implausible_against_the_training_prior():
    from cxrseg.shape_qc import ShapePrior, shape_flags
    image = np.full((30, 30), 120, np.uint8)
    prior = ShapePrior.from_masks([image] * 3, [_two_lungs()] * 3)
    assert prior.balance_mean == pytest.approx(9 / 19)
    assert shape_flags(image, _two_lungs(), prior)[1] == []
    one_lung = _two_lungs()
    one_lung[:, 15:] = 0
    values, flags = shape_flags(image, one_lung, prior)
    assert "shape_area" in flags and "shape_balance" in flags and values[3] > 1
    shifted = np.zeros((30, 30), np.uint8)
    shifted[10:30, 2:29] = _two_lungs()[4:24, 0:27]     # moved down and left
    assert "shape_box" in shape_flags(image, shifted, prior)[1]
    assert shape_flags(image, np.zeros((30, 30)), prior)[1] == ["shape_empty"]


def test_postprocess_adds_shape_columns_and_figures_rank_the_worst(tmp_path):
    from cxrseg.figures import worst_rows
    from cxrseg.shape_qc import ShapePrior
    image = np.full((30, 30), 120, np.uint8)
    ShapePrior.from_masks([image] * 2, [_two_lungs()] * 2).save(tmp_path / "shape_prior.json")
    raw = np.stack([_two_lungs(), _two_lungs()])
    raw[1, :, 15:] = 0
    np.save(tmp_path / "raw.npy", raw)
    np.save(tmp_path / "images.npy", np.stack([image, image]))
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    write_done(tmp_path, {}, ["raw.npy", "index.csv"], done="done_predict.json")
    postprocess.main(["--masks", str(tmp_path / "raw.npy"), "--index", str(tmp_path / "index.csv"),
                      "--erode", "1", "--dilate", "2",
                      "--shape-prior", str(tmp_path / "shape_prior.json"),
                      "--images", str(tmp_path / "images.npy"), "--out", str(tmp_path / "out")])
    from cxrstats.foundation.fileio import read_csv
    rows = read_csv(tmp_path / "out" / "qc.csv")
    assert rows[0]["flag"] == "ok" and "shape_balance" in rows[1]["flag"]
    assert float(rows[1]["shape_score"]) > 1 > float(rows[0]["shape_score"])
    assert worst_rows(rows, 1) == [1]
    with pytest.raises(SystemExit, match="needs --images"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"),
                          "--shape-prior", str(tmp_path / "shape_prior.json"),
                          "--out", str(tmp_path / "o2")])
