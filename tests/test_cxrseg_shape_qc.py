"""The shape check against the training prior (cxrseg.shape_qc), in post-processing's qc.csv and
the figures' ranking."""
import numpy as np
import pytest

from cxrseg import postprocess
from cxrseg.figures import worst_rows
from cxrseg.shape_qc import ShapePrior, shape_flags
from cxrstats.foundation.fileio import read_csv, write_done
from synthetic_pairs import two_lungs


def test_shape_qc_flags_masks_implausible_against_the_training_prior():
    image = np.full((30, 30), 120, np.uint8)
    prior = ShapePrior.from_masks([image] * 3, [two_lungs()] * 3)
    assert prior.balance_mean == pytest.approx(9 / 19)
    assert shape_flags(image, two_lungs(), prior)[1] == []
    one_lung = two_lungs()
    one_lung[:, 15:] = 0
    values, flags = shape_flags(image, one_lung, prior)
    assert "shape_area" in flags and "shape_balance" in flags and values[3] > 1
    shifted = np.zeros((30, 30), np.uint8)
    shifted[10:30, 2:29] = two_lungs()[4:24, 0:27]     # moved down and left
    assert "shape_box" in shape_flags(image, shifted, prior)[1]
    assert shape_flags(image, np.zeros((30, 30)), prior)[1] == ["shape_empty"]


def test_postprocess_adds_shape_columns_and_figures_rank_the_worst(tmp_path):
    image = np.full((30, 30), 120, np.uint8)
    ShapePrior.from_masks([image] * 2, [two_lungs()] * 2).save(tmp_path / "shape_prior.json")
    raw = np.stack([two_lungs(), two_lungs()])
    raw[1, :, 15:] = 0
    np.save(tmp_path / "raw.npy", raw)
    np.save(tmp_path / "images.npy", np.stack([image, image]))
    (tmp_path / "index.csv").write_text("row,image\n0,a.png\n1,b.png\n")
    write_done(tmp_path, {}, ["raw.npy", "index.csv"], done="done_predict.json")
    postprocess.main(["--masks", str(tmp_path / "raw.npy"), "--index", str(tmp_path / "index.csv"),
                      "--erode", "1", "--dilate", "2",
                      "--shape-prior", str(tmp_path / "shape_prior.json"),
                      "--images", str(tmp_path / "images.npy"), "--out", str(tmp_path / "out")])
    rows = read_csv(tmp_path / "out" / "qc.csv")
    assert rows[0]["flag"] == "ok" and "shape_balance" in rows[1]["flag"]
    assert float(rows[1]["shape_score"]) > 1 > float(rows[0]["shape_score"])
    assert worst_rows(rows, 1) == [1]
    with pytest.raises(SystemExit, match="needs --images"):
        postprocess.main(["--masks", str(tmp_path / "raw.npy"),
                          "--index", str(tmp_path / "index.csv"),
                          "--shape-prior", str(tmp_path / "shape_prior.json"),
                          "--out", str(tmp_path / "o2")])
