"""Anatomy-aware mask clean-up (cxrseg.anatomy) and its use in cxrseg.postprocess, on tiny masks."""
import numpy as np

from cxrseg import postprocess
from cxrseg.anatomy import clean_mask, fill_holes, keep_largest
from cxrstats.foundation.fileio import write_done
from synthetic_pairs import two_lungs


def test_fill_holes_fills_inside_each_lung_but_not_between_them():
    m = two_lungs()
    holed = m.copy()
    holed[10:14, 6:9] = 0           # a hole in the left lung
    holed[15:17, 20:23] = 0         # and in the right
    np.testing.assert_array_equal(fill_holes(holed), m)
    assert fill_holes(m)[15, 14] == 0    # the gap between the lungs stays open


def test_keep_largest_drops_specks_and_keepstwo_lungs():
    m = two_lungs()
    specks = m.copy()
    specks[0, 0] = specks[28, 14] = 1
    np.testing.assert_array_equal(keep_largest(specks, 2), m)
    np.testing.assert_array_equal(keep_largest(specks, 0), specks)
    assert keep_largest(m, 1).sum() == 22 * 10
    assert not keep_largest(np.zeros((5, 5)), 2).any()


def test_clean_mask_combines_both():
    m = two_lungs()
    noisy = m.copy()
    noisy[10, 6] = 0
    noisy[0, 29] = 1
    np.testing.assert_array_equal(clean_mask(noisy, fill=True, largest=2), m)


def test_postprocess_cli_applies_the_clean_up(tmp_path):
    raw = np.stack([two_lungs()] * 2)
    raw[0, 10:13, 6:9] = 0
    raw[1, 0, 0] = 1
    np.save(tmp_path / "raw.npy", raw)
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    write_done(tmp_path, {}, ["raw.npy", "index.csv"], done="done_predict.json")
    postprocess.main(["--masks", str(tmp_path / "raw.npy"), "--index", str(tmp_path / "index.csv"),
                      "--erode", "0", "--dilate", "0", "--fill-holes", "--keep-largest", "2",
                      "--out", str(tmp_path / "out")])
    eroded = np.load(tmp_path / "out" / "eroded.npy")
    np.testing.assert_array_equal(eroded, np.stack([two_lungs()] * 2))
