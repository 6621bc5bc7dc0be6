"""cxrseg.morphology equals scipy's reference; masked images; QC flags and the empty-mask
fallback; what cxrseg.postprocess refuses (an unfinished predict, masks other than exact 0/1,
an index other than the one segmented, bad flags, a foreign output folder, raw masks predict has
replaced since)."""
import shutil

import numpy as np
import pytest
from scipy import ndimage

from cliargs import assert_refused_at_parse, assert_refuses_foreign_folder, with_flags
from cxrseg import postprocess, predict
from cxrseg.pairs import load_stack
from cxrseg.morphology import boundary, cutout, dilate_disk, dilate_disks, disk, erode_disk, overlay
from cxrseg.records import require_postprocessed
from cxrstats.foundation.fileio import IncompleteRunError, read_csv, write_done


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


# ----------------------------------------------------------------------------- bad input

REQUIRED = ["--masks", "m.npy", "--index", "i.csv", "--out", "o"]
BAD_FLAGS = [["--erode", "-1"], ["--dilate", "15", "-5"], ["--min-area", "1.5"],
             ["--max-components", "0"]]


def _predicted_masks(folder):
    """Two predicted masks as cxrseg.predict leaves them in `folder`; the postprocess flags."""
    raw = np.zeros((2, 48, 48), bool)      # bool is accepted as well as integer 0/1
    raw[:, 10:38, 8:20] = raw[:, 10:38, 28:40] = True
    folder.mkdir(exist_ok=True)
    _save_predicted(folder / "raw.npy", raw)
    (folder / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    return ["--masks", str(folder / "raw.npy"), "--index", str(folder / "index.csv"),
            "--out", str(folder)]


@pytest.mark.parametrize("flag", BAD_FLAGS, ids=" ".join)
def test_out_of_range_flags_stop_at_parse_time(flag, capsys):
    assert_refused_at_parse(postprocess.main, REQUIRED + flag, flag[0], capsys)


def test_refuses_a_foreign_out_folder_with_a_clean_error(tmp_path):
    args = _predicted_masks(tmp_path / "masks")
    assert_refuses_foreign_folder(lambda out: postprocess.main(with_flags(args, "--out", str(out))),
                                  tmp_path / "mine")


def test_postprocess_needs_a_finished_predict(tmp_path):
    np.save(tmp_path / "raw.npy", np.ones((1, 8, 8), np.uint8))
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n")
    with pytest.raises(SystemExit, match=r"error: .*no done_predict.json"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path)])


@pytest.mark.parametrize("values, dtype, problem", [
    ([-1, 0], np.int8, r"exactly 0/1, found values -1\.\.0"),
    ([0, 255], np.uint8, r"exactly 0/1, found values 0\.\.255"),
    ([0.0, 1.0], np.float32, r"0/1 of an integer or bool dtype, got dtype float32"),
])
def test_postprocess_accepts_only_exact_01_masks(tmp_path, values, dtype, problem):
    raw = np.zeros((2, 16, 16), dtype)
    raw[:, 4:12, 4:12] = values[0]
    raw[:, :4] = values[1]
    np.save(tmp_path / "raw.npy", raw)
    write_done(tmp_path, {}, ["raw.npy"], done="done_predict.json")
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    with pytest.raises(SystemExit, match=rf"error: .*raw.npy: masks must be {problem}"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "out")])


def test_dilate_radii_zero_allowed_duplicates_refused_old_radii_removed(tmp_path):
    args = _predicted_masks(tmp_path)
    postprocess.main(args + ["--erode", "2", "--dilate", "0", "3", "7"])
    eroded, m0 = np.load(tmp_path / "eroded.npy"), np.load(tmp_path / "m0.npy")
    np.testing.assert_array_equal(m0, eroded)                       # m0 = the eroded mask itself
    assert (np.load(tmp_path / "m7.npy") >= np.load(tmp_path / "m3.npy")).all()
    postprocess.main(args + ["--erode", "2", "--dilate", "5"])
    assert not any((tmp_path / f"m{r}.npy").exists() for r in (0, 3, 7))  # the old run's radii
    assert (tmp_path / "m5.npy").is_file() and (tmp_path / "done_postprocess.json").is_file()
    with pytest.raises(SystemExit, match=r"error: --dilate lists radius \[15\] more than once"):
        postprocess.main(args + ["--dilate", "15", "50", "15"])


def test_postprocess_refuses_an_index_other_than_the_one_segmented(tmp_path):
    args = _predicted_masks(tmp_path / "masks")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "index.csv").write_text("row,image\n0,a.png\n1,renamed.png\n")
    args[args.index("--index") + 1] = str(tmp_path / "cache" / "index.csv")
    with pytest.raises(SystemExit, match=r"error: .*cache/index.csv and .*masks/index.csv "
                                         r"\(the images segmented\) differ in 1 row\(s\), first"):
        postprocess.main(args)
    (tmp_path / "cache" / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    postprocess.main(args)                       # the same images: accepted
    assert (tmp_path / "masks" / "done_postprocess.json").is_file()


@pytest.mark.parametrize("rows", ["0,a.png\nx,b.png\n", "1,a.png\n0,b.png\n"])
def test_index_rows_must_be_0_to_n_minus_1(tmp_path, rows):
    args = _predicted_masks(tmp_path)
    (tmp_path / "index.csv").write_text("row,image\n" + rows)
    with pytest.raises(SystemExit, match=r"error: .*index.csv: row \d has row="):
        postprocess.main(args)
    np.save(tmp_path / "stack.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"index.csv: row \d has row="):
        load_stack(tmp_path / "stack.npy", tmp_path / "index.csv")


@pytest.mark.usefixtures("one_torch_thread")  # see conftest.py
def test_post_processed_masks_are_refused_once_predict_wrote_other_raw_masks(study, predicted,
                                                                          tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(predicted / "masks", masks)
    require_postprocessed(masks / "m15.npy")                    # made from the current raw.npy
    before = np.load(masks / "raw.npy")
    predict.main(["--images", str(study / "cache" / "images.npy"),
                  "--index", str(study / "cache" / "index.csv"), "--checkpoint", "micro",
                  "--prior", str(study / "seg" / "prior.json"), "--threshold", "0.5",
                  "--out", str(masks / "raw.npy"), "--device", "cpu"])
    assert not np.array_equal(np.load(masks / "raw.npy"), before)
    assert (masks / "done_postprocess.json").is_file()          # the old record is still there
    with pytest.raises(IncompleteRunError, match=r"masks: the post-processed masks were made "
                                                 r"from another raw.npy .*ran again since"):
        require_postprocessed(masks / "m15.npy")
    np.save(masks / "raw.npy", before)                          # by hand, behind predict's back
    with pytest.raises(SystemExit, match=r"error: .*raw.npy: not the file done_predict.json "
                                         r"vouches for"):
        postprocess.main(["--masks", str(masks / "raw.npy"),
                          "--index", str(study / "cache" / "index.csv"), "--out", str(masks)])
