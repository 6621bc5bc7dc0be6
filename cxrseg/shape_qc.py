"""Shape-aware quality check: is a predicted lung mask plausible against the training masks?

`ShapePrior` (seg/shape_prior.json, written by cxrseg.finetune from the training masks) holds the
mean and spread of three shape measures, each taken in the image's content frame (the picture
without black borders, as the prompt prior does) so that letterboxed and full-frame films compare:

- `area`: lung area as a fraction of the content frame;
- `balance`: the left image half's share of the lung area (0.5 = equal lungs);
- `box`: the mask's bounding box (x0, y0, x1, y1) as fractions of the content frame.

`shape_flags` flags `shape_area` (area below `area_low` x or above `area_high` x the prior's mean),
`shape_balance` (balance further than `balance_sds` spreads, at least `min_balance_gap`, from the
prior's mean) and `shape_box` (box corners on average further than `box_gap` of the frame from the
prior's box). The worst-score ranks masks for review (cxrseg.figures --worst N).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cxrstats.foundation.fileio import write_json

from .prompts import content_frame

SHAPE_COLUMNS = ["area_vs_prior", "balance", "box_gap", "shape_score"]


def shape_measures(image: np.ndarray, mask: np.ndarray) -> tuple[float, float, np.ndarray] | None:
    """(area fraction, left-half share, (4,) box) of a (H, W) 0/1 mask in the image's content
    frame, or None for an empty mask."""
    fg = np.asarray(mask) > 0
    if not fg.any():
        return None
    x0, y0, x1, y1 = content_frame(image).astype(np.float64)
    fw, fh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    area = fg.sum() / (fw * fh)
    centre = int(round((x0 + x1) / 2))
    balance = fg[:, :centre].sum() / fg.sum()
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    box = np.array([(cols[0] - x0) / fw, (rows[0] - y0) / fh, (cols[-1] + 1 - x0) / fw,
                    (rows[-1] + 1 - y0) / fh])
    return float(area), float(balance), box


@dataclass
class ShapePrior:
    """Means and spreads of the shape measures over the training masks."""
    area_mean: float
    area_sd: float
    balance_mean: float
    balance_sd: float
    box_mean: list[float]
    box_sd: list[float]
    n_masks: int

    @classmethod
    def from_masks(cls, images: list[np.ndarray], masks: list[np.ndarray]) -> "ShapePrior":
        measured = [m for m in (shape_measures(i, k) for i, k in zip(images, masks)) if m]
        if not measured:
            raise ValueError("no non-empty training masks for the shape prior")
        area = np.array([m[0] for m in measured])
        balance = np.array([m[1] for m in measured])
        boxes = np.stack([m[2] for m in measured])
        return cls(float(area.mean()), float(area.std()), float(balance.mean()),
                   float(balance.std()), boxes.mean(0).tolist(), boxes.std(0).tolist(),
                   len(measured))

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ShapePrior":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shape prior not found (cxrseg.finetune writes it)")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path}: not a shape_prior.json ({error})") from None


@dataclass(frozen=True)
class ShapeLimits:
    """When a shape counts as implausible against the prior."""
    area_low: float = 0.6
    area_high: float = 1.5
    balance_sds: float = 4.0
    min_balance_gap: float = 0.12
    box_gap: float = 0.10


def shape_flags(image: np.ndarray, mask: np.ndarray, prior: ShapePrior,
                limits: ShapeLimits = ShapeLimits()) -> tuple[list[float], list[str]]:
    """([area / prior area, balance, mean box-corner gap, score], flags) for one mask; the score
    is the largest of the three measures' distances relative to their limits (>1 = flagged)."""
    measured = shape_measures(image, mask)
    if measured is None:
        return [0.0, float("nan"), float("nan"), float("inf")], ["shape_empty"]
    area, balance, box = measured
    ratio = area / prior.area_mean
    balance_limit = max(limits.balance_sds * prior.balance_sd, limits.min_balance_gap)
    gap = float(np.abs(box - np.asarray(prior.box_mean)).mean())
    parts = {"shape_area": max(np.log(ratio) / np.log(limits.area_high),
                               np.log(ratio) / np.log(limits.area_low)),
             "shape_balance": abs(balance - prior.balance_mean) / balance_limit,
             "shape_box": gap / limits.box_gap}
    flags = [name for name, value in parts.items() if value > 1]
    return [float(ratio), float(balance), gap, float(max(parts.values()))], flags


def shape_qc_rows(images, raw: np.ndarray, prior: ShapePrior,
                  limits: ShapeLimits = ShapeLimits()) -> tuple[list[list[str]], list[list[str]]]:
    """Per mask: the SHAPE_COLUMNS values (formatted) and the shape flags. images (N, H, W) uint8
    (the images the masks were predicted on; only their content frames are used), raw (N, H, W)."""
    values, flags = [], []
    for image, mask in zip(images, raw):
        v, f = shape_flags(np.asarray(image), np.asarray(mask), prior, limits)
        values.append([f"{x:.4f}" for x in v])
        flags.append(f)
    return values, flags
