"""Shared by seg_stress.py and seg_cross_dataset.py: load a lung set and its split, segment with
cached embeddings, and score Dice and the share of the true lung that M-15 keeps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cxrseg.anatomy import clean_mask
from cxrseg.coverage import lung_kept
from cxrseg.datasets import Source, find_all_pairs
from cxrseg.engine import embeddings_for, gt_boxes, load_model, segment
from cxrseg.losses import dice_iou
from cxrseg.pairs import load_pairs
from cxrseg.prompts import Prior
from cxrseg.split import read_splits

DEVICE = torch.device("cpu")


def load_set(images: str, masks: str, splits: str | None = None, parts=("test",), limit: int = 0):
    """(stems, images, masks) of the pairs in `parts` of `splits` (all pairs without splits),
    sorted by stem, the first `limit` when limit > 0."""
    pairs, _ = find_all_pairs([Source("set", images, masks)])
    if splits:
        part_of = read_splits(splits)
        pairs = [p for p in pairs if part_of.get(p.stem) in parts]
    if limit:
        pairs = pairs[:limit]
    imgs, msks = load_pairs(pairs)
    return [p.stem for p in pairs], imgs, msks


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


def score(model, prior, emb, images, masks, box="prior", refine=1, threshold=0.5,
          cleans=((False, 0),)) -> list[np.ndarray]:
    """Per clean-up setting (fill holes, keep largest N): (N, 2) per image, Dice and the share of
    the true lung kept by M-15 (cxrseg.coverage.lung_kept at the study's radii and pipeline size,
    as cxrseg.evaluate scores it)."""
    boxes = gt_boxes(masks) if box == "gt" else None
    _, probs, _ = segment(model, emb, images, DEVICE, "box", prior, boxes_px=boxes,
                          refine=refine if box == "prior" else 0, threshold=threshold)
    out = []
    for fill, largest in cleans:
        rows = []
        for p, m in zip(probs, masks):
            pred = clean_mask(p.numpy() >= threshold, fill, largest).astype(bool)
            kept_m15, _ = lung_kept(pred, m)
            rows.append([dice_iou(pred, m)[0], kept_m15])
        out.append(np.asarray(rows))
    return out
