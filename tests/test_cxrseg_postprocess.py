"""cxrseg.morphology equals scipy's reference; masked images; QC flags and the empty-mask
fallback."""
import numpy as np
import pytest
from scipy import ndimage

from cxrseg import postprocess
from cxrseg.morphology import boundary, cutout, dilate_disk, dilate_disks, disk, erode_disk, overlay
from cxrstats.fileio import read_csv, write_done


def _save_predicted(path, raw):
    """Save raw masks as cxrseg.predict would leave them: the file and its completion record."""
    np.save(path, raw)
    write_done(path.parent, {}, [path.name], done="done_predict.json")


def _random_masks(rng, count=25):
    for _ in range(count):
        h, w = rng.integers(8, 48, 2)
        density = rng.choice([0.0, 0.02, 0.3, 0.7, 0.97, 1.0])
        mask = rng.random((h, w)) < density
        if rng.random() < 0.5 and mask.any():  # blobs that touch the borders
            mask = ndimage.binary_dilation(mask, iterations=2)
        yield mask


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 8, 15])
def test_erosion_and_dilation_equal_scipy(radius):
    rng = np.random.default_rng(radius)
    for mask in _random_masks(rng):
        footprint = disk(radius)
        np.testing.assert_array_equal(erode_disk(mask, radius),
                                      ndimage.binary_erosion(mask, structure=footprint))
        np.testing.assert_array_equal(dilate_disk(mask, radius),
                                      ndimage.binary_dilation(mask, structure=footprint))


def test_radius_50_on_a_border_touching_mask_equals_scipy():
    mask = np.zeros((160, 140), bool)
    mask[0:90, 0:50] = True          # touches the top and left borders
    mask[40:150, 85:140] = True      # touches the right border
    mask[100, 20] = True             # a speck
    eroded = erode_disk(mask, 5)
    np.testing.assert_array_equal(eroded, ndimage.binary_erosion(mask, structure=disk(5)))
    m15, m50 = dilate_disks(eroded, [15, 50])
    np.testing.assert_array_equal(m15, ndimage.binary_dilation(eroded, structure=disk(15)))
    np.testing.assert_array_equal(m50, ndimage.binary_dilation(eroded, structure=disk(50)))
    assert eroded.dtype == np.uint8


def test_disk_is_euclidean():
    d = disk(2)
    assert d.shape == (5, 5) and d.sum() == 13 and not d[0, 0] and d[0, 2]


def test_cutout_and_overlay():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10) + 50
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 3:7] = 1
    cut = cutout(image, mask)
    assert (cut[mask == 0] == 0).all() and (cut[mask == 1] == image[mask == 1]).all()
    drawn = overlay(image, mask, thickness=1, value=255)
    edge = boundary(mask, 1)
    assert edge.sum() == 2 * 6 + 2 * 4 - 4
    assert (drawn[edge] == 255).all()
    assert (drawn[~edge] == image[~edge]).all()   # everything else unchanged
    with pytest.raises(ValueError, match="differ"):
        cutout(image, mask[:5])


def test_quality_flags():
    limits = postprocess.QCLimits()
    empty = np.zeros((100, 100), np.uint8)
    assert postprocess.quality_flags(empty, limits) == (0.0, 0, ["empty"])
    lungs = np.zeros((100, 100), np.uint8)
    lungs[20:80, 10:40] = 1
    lungs[20:80, 60:90] = 1
    area, n, flags = postprocess.quality_flags(lungs, limits)
    assert n == 2 and flags == [] and abs(area - 0.36) < 1e-9
    three = lungs.copy()
    three[85:98, 40:60] = 1
    assert "fragmented" in postprocess.quality_flags(three, limits)[2]
    small = np.zeros((100, 100), np.uint8)
    small[10:20, 10:20] = 1
    assert postprocess.quality_flags(small, limits)[2] == ["area_low"]
    assert postprocess.quality_flags(np.ones((100, 100)), limits)[2] == ["area_high"]


def test_postprocess_cli_writes_masks_and_qc_with_fallback(tmp_path):
    raw = np.zeros((3, 64, 64), np.uint8)
    raw[0, 10:50, 8:28] = 1
    raw[0, 10:50, 36:56] = 1
    raw[2, 30:33, 30:33] = 1          # a speck that erosion empties
    _save_predicted(tmp_path / "raw.npy", raw)
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n2,c.png\n")
    postprocess.main(["--masks", str(tmp_path / "raw.npy"), "--index", str(tmp_path / "index.csv"),
                      "--out", str(tmp_path / "masks")])
    out = tmp_path / "masks"
    eroded, m15, m50 = (np.load(out / f) for f in ("eroded.npy", "m15.npy", "m50.npy"))
    assert eroded.shape == m15.shape == m50.shape == raw.shape and m50.dtype == np.uint8
    np.testing.assert_array_equal(eroded[0], ndimage.binary_erosion(raw[0], structure=disk(5)))
    np.testing.assert_array_equal(m50[0], ndimage.binary_dilation(eroded[0], structure=disk(50)))
    assert (m50[0] >= m15[0]).all() and (m15[0] >= eroded[0]).all()
    qc = read_csv(out / "qc.csv", required=postprocess.QC_COLUMNS)
    assert [r["flag"] for r in qc] == ["ok", "empty", "area_low;empty_after_erosion"]
    assert qc[1]["action"].startswith("fallback") and m50[1].all() and m15[2].all()
    assert qc[0]["action"] == "kept"


def test_postprocess_refuses_mismatched_index(tmp_path):
    _save_predicted(tmp_path / "raw.npy", np.zeros((2, 8, 8), np.uint8))
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n")
    with pytest.raises(SystemExit, match="index.csv has 1 rows.*2 masks"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "o")])
