"""Scores per lung: Dice and the share of each true lung kept by M-15 / M-50, when a dataset has a
mask per lung beside its merged masks.

A dataset declares per-lung masks by two sibling folders of its masks folder, named after it with
`_right` and `_left` (`masks/` -> `masks_right/`, `masks_left/`), holding a mask file of the same
name as each merged mask. Right and left are the patient's: the right lung lies on the image's
left. They are found automatically; one of the two folders alone, or a mask missing in one, is an
error naming the file.

The prediction is one merged mask. Its Dice per lung is taken on the part of it on that lung's
side of the dividing column: halfway between the facing edges of the two true lungs (the right
lung's last column and the left lung's first), the middle of the mediastinum. The kept share per
lung is that of the whole prediction's M-15 / M-50 (as cxrseg.postprocess builds them) over the
true lung of that side (cxrseg.coverage.lung_kept): the masks the classifier sees are made from the
merged prediction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrstats.foundation.imageio import open_image

from .coverage import lung_kept
from .pairs import Pair, read_mask
from .losses import dice_iou
from .study_masks import DILATE_RADII, ERODE_RADIUS, PIPELINE_SIZE

SIDES = ("right", "left")
# Per image, in this order; the kept shares follow DILATE_RADII (M-15, M-50).
LUNG_METRICS = ["dice_right", "dice_left",
                *[f"kept_m{r}_{side}" for r in DILATE_RADII for side in SIDES]]


def side_folders(masks_dir: str | Path) -> dict[str, Path] | None:
    """{'right': masks_right/, 'left': masks_left/} beside `masks_dir`, None when neither exists;
    ValueError when only one does."""
    masks_dir = Path(masks_dir)
    found = {side: masks_dir.with_name(f"{masks_dir.name}_{side}") for side in SIDES}
    present = [side for side, folder in found.items() if folder.is_dir()]
    if not present:
        return None
    if len(present) == 1:
        missing = next(s for s in SIDES if s not in present)
        raise ValueError(f"{found[present[0]]}: per-lung masks need both {found['right'].name}/ "
                         f"and {found['left'].name}/ beside {masks_dir}; {found[missing]} is "
                         "missing")
    return found


def read_lung_masks(pairs: list[Pair]) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """(right, left) 0/1 masks per pair from the sibling folders of its mask's folder (None for a
    pair whose masks folder has none); each the size of the merged mask."""
    out, folders = [], {}
    for pair in pairs:
        parent = pair.mask.parent
        if parent not in folders:
            folders[parent] = side_folders(parent)
        sides = folders[parent]
        if sides is None:
            out.append(None)
            continue
        lungs = []
        for side in SIDES:
            path = sides[side] / pair.mask.name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: {side} lung mask of {pair.mask} not found")
            lung = read_mask(path)
            merged_shape = _mask_shape(pair.mask)
            if lung.shape != merged_shape:
                raise ValueError(f"{path}: size {lung.shape[1]}x{lung.shape[0]} differs from "
                                 f"{pair.mask} ({merged_shape[1]}x{merged_shape[0]})")
            lungs.append(lung)
        out.append((lungs[0], lungs[1]))
    return out


def _mask_shape(path: Path) -> tuple[int, int]:
    width, height = open_image(path).size  # as read_mask reads it: EXIF Orientation applied
    return height, width


def dividing_column(right: np.ndarray, left: np.ndarray) -> float:
    """Column between the lungs: halfway between the right lung's last column and the left lung's
    first (image halves when a lung is empty)."""
    r_cols = np.flatnonzero(np.asarray(right).any(axis=0))
    l_cols = np.flatnonzero(np.asarray(left).any(axis=0))
    if not len(r_cols) or not len(l_cols):
        return np.asarray(right).shape[1] / 2
    return (r_cols.max() + 1 + l_cols.min()) / 2


def split_prediction(pred: np.ndarray, right: np.ndarray, left: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The prediction's right-lung and left-lung parts: columns before / from the dividing
    column (a pixel column x belongs to the right side when x + 0.5 < the column)."""
    pred = np.asarray(pred).astype(bool)
    column = dividing_column(right, left)
    on_right = (np.arange(pred.shape[1]) + 0.5) < column
    return pred & on_right[None, :], pred & ~on_right[None, :]


def lung_metrics(pred: np.ndarray, right: np.ndarray, left: np.ndarray,
                 erode: int = ERODE_RADIUS, size: int | None = PIPELINE_SIZE) -> list[float]:
    """LUNG_METRICS of one image: Dice of each side's part of the prediction against that lung
    (cxrseg.losses.dice_iou), then the share of each true lung inside M-15 and M-50 of the whole
    prediction (cxrseg.coverage.lung_kept)."""
    pred_right, pred_left = split_prediction(pred, right, left)
    dice = [dice_iou(pred_right, right)[0], dice_iou(pred_left, left)[0]]
    kept_right = lung_kept(pred, right, erode, DILATE_RADII, size)
    kept_left = lung_kept(pred, left, erode, DILATE_RADII, size)
    kept = [v for pair in zip(kept_right, kept_left) for v in pair]
    return [*dice, *kept]
