"""Per-lung scores (cxrseg.per_lung) on tiny synthetic masks whose answers are worked out by hand,
the sibling-folder convention, and the per-lung columns of cxrseg.evaluate."""
import csv

import numpy as np
import pytest
from PIL import Image

from cxrseg import evaluate
from cxrseg.pairs import find_pairs
from cxrseg.per_lung import (LUNG_METRICS, dividing_column, lung_metrics, read_lung_masks,
                             side_folders, split_prediction)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def two_lungs():
    """40 x 110 image; the patient's right lung (image left) rows 5-34 x columns 5-24, the left
    lung rows 5-34 x columns 80-99: 600 pixels each."""
    right = np.zeros((40, 110), np.uint8)
    left = np.zeros((40, 110), np.uint8)
    right[5:35, 5:25] = 1
    left[5:35, 80:100] = 1
    return right, left


def test_per_lung_dice_and_kept_shares_by_hand():
    right, left = two_lungs()
    pred = right.copy()
    pred[30:35, 45:50] = 1      # a 25-pixel stray piece, left of the dividing column 52.5
    pred[5:10, 80:100] = 1      # the left lung's top 5 rows only: 100 pixels
    # Dividing column: halfway between the right lung's last column + 1 (25) and the left
    # lung's first (80) = 52.5; the stray piece counts against the right lung.
    assert dividing_column(right, left) == 52.5
    pred_right, pred_left = split_prediction(pred, right, left)
    assert pred_right.sum() == 625 and pred_left.sum() == 100
    values = dict(zip(LUNG_METRICS, lung_metrics(pred, right, left, erode=0, size=None)))
    # right: 2 * 600 / (625 + 600); left: 2 * 100 / (100 + 600)
    assert values["dice_right"] == pytest.approx(1200 / 1225)
    assert values["dice_left"] == pytest.approx(200 / 700)
    # Without erosion M-15 reaches 15 rows below the left prediction's last row (9): rows 5-24,
    # 20 of the left lung's 30 rows; M-50 covers all of it. The right lung is predicted whole.
    assert values["kept_m15_right"] == 1.0 and values["kept_m50_right"] == 1.0
    assert values["kept_m15_left"] == pytest.approx(20 / 30)
    assert values["kept_m50_left"] == 1.0


def test_an_empty_prediction_scores_zero_per_lung():
    right, left = two_lungs()
    values = lung_metrics(np.zeros_like(right), right, left, erode=0, size=None)
    # no prediction: Dice 0; the pipeline's empty-mask fallback (the full image) keeps all lung
    assert values == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def _write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8) * 255).save(folder / f"{name}.png")


def _lung_set(root, n=3, sides=("right", "left")):
    """n pairs of noise + two bright lungs, merged masks in masks/, per-lung masks in sides."""
    rng = np.random.default_rng(0)
    right, left = two_lungs()
    for i in range(n):
        image = (rng.normal(60, 10, right.shape) + 120 * (right | left)).clip(0, 255)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"c{i}.png")
        _write(root / "masks", f"c{i}", right | left)
        for side, lung in (("right", right), ("left", left)):
            if side in sides:
                _write(root / f"masks_{side}", f"c{i}", lung)
    return root


def test_sibling_folders_are_found_and_read(tmp_path):
    root = _lung_set(tmp_path / "set")
    assert side_folders(root / "masks") == {"right": root / "masks_right",
                                           "left": root / "masks_left"}
    lungs = read_lung_masks(find_pairs(root / "images", root / "masks"))
    right, left = two_lungs()
    assert len(lungs) == 3 and all(np.array_equal(r, right) and np.array_equal(l_, left)
                                   for r, l_ in lungs)
    assert side_folders(tmp_path / "elsewhere" / "masks") is None


def test_one_side_folder_alone_or_a_missing_lung_mask_is_an_error(tmp_path):
    root = _lung_set(tmp_path / "one", sides=("right",))
    with pytest.raises(ValueError, match="masks_left"):
        side_folders(root / "masks")
    root = _lung_set(tmp_path / "gap")
    (root / "masks_left" / "c1.png").unlink()
    with pytest.raises(FileNotFoundError, match="c1.png"):
        read_lung_masks(find_pairs(root / "images", root / "masks"))


def test_evaluate_writes_per_lung_columns_after_the_merged_ones(tmp_path):
    with_lungs = _lung_set(tmp_path / "with")
    without = tmp_path / "without"
    _lung_set(without, sides=())
    for stem in ("c0", "c1", "c2"):     # stems must be unique across datasets
        for folder in ("images", "masks"):
            (without / folder / f"{stem}.png").rename(without / folder / f"d{stem}.png")
    out = tmp_path / "seg" / "eval.csv"
    evaluate.main(["--data", f"lungs={with_lungs}/images:{with_lungs}/masks",
                   "--data", f"merged={without}/images:{without}/masks",
                   "--checkpoint", "micro", "--out", str(out), "--device", "cpu"])
    header = next(csv.reader(open(out)))
    assert header[:len(header) - len(LUNG_METRICS)] == [
        "checkpoint", "checkpoint_id", "extent", "dataset", "part", "threshold", "dice", "iou",
        "dice_loss", "bce_loss", "kept_m15", "kept_m50", "n", "prompt"]
    rows = {r["dataset"]: r for r in csv.DictReader(open(out))}
    assert all(0 <= float(rows["lungs"][c]) <= 1 for c in LUNG_METRICS)
    assert all(rows["merged"][c] == "" and rows["all"][c] == "" for c in LUNG_METRICS)
    per_image = list(csv.DictReader(open(out.with_name("eval_per_image.csv"))))
    assert [r["dice_right"] != "" for r in per_image] == [True] * 3 + [False] * 3
