"""Shared by seg_stress.py, seg_cross_dataset.py and covid_extent.py: load a lung set and its
split, segment with cached embeddings, and score Dice and the share of the true lung that M-15
keeps; per lung too when the set has per-lung masks (cxrseg.per_lung: sibling folders
`<masks>_right/`, `<masks>_left/`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cxrseg.anatomy import clean_mask
from cxrseg.coverage import lung_kept
from cxrseg.datasets import Source, find_all_pairs
from cxrseg.engine import embeddings_for, gt_boxes, load_model, segment
from cxrseg.losses import dice_iou
from cxrseg.pairs import load_pairs
from cxrseg.per_lung import LUNG_METRICS, lung_metrics, read_lung_masks
from cxrseg.prompts import Prior, prediction_box
from cxrseg.split import read_splits

DEVICE = torch.device("cpu")


def set_pairs(images: str, masks: str, splits: str | None = None, parts=("test",),
              limit: int = 0):
    """The pairs in `parts` of `splits` (all pairs without splits), sorted by stem, the first
    `limit` when limit > 0."""
    pairs, _ = find_all_pairs([Source("set", images, masks)])
    if splits:
        part_of = read_splits(splits)
        pairs = [p for p in pairs if part_of.get(p.stem) in parts]
    if limit:
        pairs = pairs[:limit]
    return pairs


def load_set(images: str, masks: str, splits: str | None = None, parts=("test",), limit: int = 0):
    """(stems, images, masks) of the pairs in `parts` of `splits` (all pairs without splits),
    sorted by stem, the first `limit` when limit > 0."""
    pairs = set_pairs(images, masks, splits, parts, limit)
    imgs, msks = load_pairs(pairs)
    return [p.stem for p in pairs], imgs, msks


def load_lungs(images: str, masks: str, splits: str | None = None, parts=("test",),
               limit: int = 0):
    """Per-lung (right, left) masks of load_set's pairs, in its order; None when the set has no
    per-lung masks."""
    lungs = read_lung_masks(set_pairs(images, masks, splits, parts, limit))
    return None if all(lung is None for lung in lungs) else lungs


def load_run(run: str):
    """A model and its prior: `lite` (zero-shot; prior from the run folder given after a colon,
    `lite:work/x/run`) or a fine-tuning output folder (best.pt, prior.json)."""
    name, _, prior_dir = run.partition(":")
    if name == "lite":
        return load_model("lite"), Prior.load(Path(prior_dir) / "prior.json")
    return load_model(str(Path(name) / "best.pt"), "lite"), Prior.load(Path(name) / "prior.json")


def embed(stems, images, cache_dir) -> torch.Tensor:
    """LiteMedSAM embeddings (N, C, h, w), cached; shared by every decoder-only fine-tuned run."""
    return embeddings_for(load_model("lite"), images, stems, DEVICE, cache_dir=cache_dir)


MARGIN_SIDES = ("all", "lower")


def widen_box(box: np.ndarray, margin: float, shape: tuple[int, int],
              side: str = "all") -> np.ndarray:
    """(4,) box (x0, y0, x1, y1) grown by `margin` x its width and height on every side (`lower`:
    its lower edge only, by `margin` x its height), clipped to an image of `shape` (H, W)."""
    if side not in MARGIN_SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {MARGIN_SIDES}")
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    w, h = x1 - x0, y1 - y0
    grow = np.array([-w, -h, w, h]) if side == "all" else np.array([0.0, 0.0, 0.0, h])
    return np.clip(np.array([x0, y0, x1, y1]) + margin * grow, 0,
                   [shape[1] - 1, shape[0] - 1, shape[1] - 1, shape[0] - 1])


def open_mask(mask: np.ndarray, fraction: float, side: int = 512) -> np.ndarray:
    """(H, W) bool: `mask` less what a morphological opening with a disk of radius `fraction` x
    the longest side removes (protrusions narrower than the disk, such as a mask running out
    below the diaphragm); done at longest side `side` for speed, so the result is always within
    `mask`. fraction 0: the mask unchanged."""
    mask = np.asarray(mask, bool)
    if fraction <= 0 or not mask.any():
        return mask
    h, w = mask.shape
    scale = side / max(h, w)
    small = F.interpolate(torch.from_numpy(mask)[None, None].float(),
                          size=(max(1, round(h * scale)), max(1, round(w * scale))),
                          mode="area")[0, 0].numpy() >= 0.5
    radius = fraction * side
    inner = ndimage.distance_transform_edt(small) > radius
    opened = ndimage.distance_transform_edt(~inner) <= radius if inner.any() else inner
    back = F.interpolate(torch.from_numpy(opened)[None, None].float(), size=(h, w),
                         mode="bilinear", align_corners=False)[0, 0].numpy() >= 0.5
    return mask & back


def refined_probabilities(model, prior, emb, images, refine: int, threshold: float,
                          margin: float = 0.0, side: str = "all") -> list[torch.Tensor]:
    """Probabilities (H, W) per image from the prior box + `refine` passes, each pass prompted
    with the box around the previous pass's mask (at `threshold`) widened by `margin`
    (widen_box; margin 0 is cxrseg.engine.segment's own refine pass). An empty mask keeps the
    previous box."""
    if margin == 0:
        return segment(model, emb, images, DEVICE, "box", prior, refine=refine,
                       threshold=threshold)[1]
    boxes = np.stack([prior.box_for(img) for img in images])
    probs = segment(model, emb, images, DEVICE, "box", prior, boxes_px=boxes)[1]
    for _ in range(refine):
        for i, (p, img) in enumerate(zip(probs, images)):
            found = prediction_box(p.numpy() >= threshold)
            if found is not None:
                boxes[i] = widen_box(found, margin, img.shape[:2], side)
        probs = segment(model, emb, images, DEVICE, "box", prior, boxes_px=boxes)[1]
    return probs


def ensemble_probabilities(members, images, prior, refine: int, threshold: float
                           ) -> list[torch.Tensor]:
    """Probabilities (H, W) per image averaged over `members` ((model, embeddings (N, C, h, w))
    pairs, each model on its own encoder's embeddings), from the prior box + `refine` passes;
    every pass prompts all members with the box around the previous pass's averaged mask (at
    `threshold`; an empty mask keeps the previous box). One member: cxrseg.engine.segment's own
    refine passes."""
    boxes = np.stack([prior.box_for(img) for img in images])
    for step in range(refine + 1):
        each = [segment(model, emb, images, DEVICE, "box", prior, boxes_px=boxes)[1]
                for model, emb in members]
        probs = [sum(member[i] for member in each) / len(members) for i in range(len(images))]
        if step < refine:
            for i, p in enumerate(probs):
                found = prediction_box(p.numpy() >= threshold)
                if found is not None:
                    boxes[i] = found
    return probs


def predict_masks(model, prior, emb, images, masks, box="prior", refine=1, threshold=0.5,
                  cleans=((False, 0),), margin: float = 0.0,
                  side: str = "all") -> list[list[np.ndarray]]:
    """Per clean-up setting (fill holes, keep largest N): the binary masks (H, W) per image, with
    the ground-truth box (`box="gt"`) or the prior box + `refine` passes (their boxes widened by
    `margin`, refined_probabilities)."""
    if box == "gt":
        probs = segment(model, emb, images, DEVICE, "box", prior, boxes_px=gt_boxes(masks),
                        threshold=threshold)[1]
    else:
        probs = refined_probabilities(model, prior, emb, images, refine, threshold, margin, side)
    return [[clean_mask(p.numpy() >= threshold, fill, largest).astype(bool) for p in probs]
            for fill, largest in cleans]


def score_masks(preds, masks, lungs=None) -> np.ndarray:
    """(N, 2) per image, Dice and the share of the true lung kept by M-15
    (cxrseg.coverage.lung_kept at the study's radii and pipeline size, as cxrseg.evaluate scores
    it); with `lungs` ((right, left) per image) (N, 2 + 6), cxrseg.per_lung.LUNG_METRICS after
    them."""
    rows = []
    for i, (pred, m) in enumerate(zip(preds, masks)):
        kept_m15, _ = lung_kept(pred, m)
        row = [dice_iou(pred, m)[0], kept_m15]
        if lungs is not None:
            row += lung_metrics(pred, *lungs[i])
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2 + (len(LUNG_METRICS) if lungs else 0))


def score(model, prior, emb, images, masks, box="prior", refine=1, threshold=0.5,
          cleans=((False, 0),), lungs=None) -> list[np.ndarray]:
    """Per clean-up setting (fill holes, keep largest N): score_masks of the predicted masks."""
    return [score_masks(preds, masks, lungs)
            for preds in predict_masks(model, prior, emb, images, masks, box, refine, threshold,
                                       cleans)]
