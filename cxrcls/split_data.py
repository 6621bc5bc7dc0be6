"""The data of one classifier split: cohort image names, labels and each part's cache rows.

Read by cxrcls.train (to train and predict) and cxrcls.attribution (to explain the same test
images), from a finished cohort (cohort/done.json) and the cache index built from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrcls.files import check_unique
from cxrcls.labels import LABELS
from cxrstats.foundation.fileio import read_csv, read_done


def load_split(work: Path, split: int) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Cohort image names, (N, 6) labels in LABELS order, and cache rows of each part of `split`.

    Refuses an unfinished cohort (no cohort/done.json), an image listed twice in cohort.csv or twice
    in one split of splits.csv, and a cache index that lists other images than the cohort.
    """
    cohort_path = work / "cohort" / "cohort.csv"
    index_path = work / "cache" / "index.csv"
    splits_path = work / "cohort" / "splits.csv"
    if not (work / "cohort").is_dir():
        raise FileNotFoundError(f"{work / 'cohort'}: cohort folder not found (run python -m "
                                "cxrcls.cohort and cxrcls.cache first)")
    read_done(work / "cohort", "done.json", what="cohort (python -m cxrcls.cohort)")
    cohort = read_csv(cohort_path, required=["image", *LABELS])
    names = [r["image"] for r in cohort]
    check_unique(names, cohort_path)
    index = [r["image"] for r in read_csv(index_path, required=["row", "image"])]
    if index != names:
        raise ValueError(f"{index_path} and {cohort_path} list different images or orders "
                         "(rebuild the cache from this cohort)")
    try:
        labels = np.array([[int(r[c]) for c in LABELS] for r in cohort], dtype=np.uint8)
    except (ValueError, OverflowError):
        raise ValueError(f"{cohort_path}: label columns must hold 0/1") from None
    if labels.size and labels.max() > 1:
        raise ValueError(f"{cohort_path}: label columns must hold 0/1")
    row_of = {name: i for i, name in enumerate(names)}
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    mine = [r for r in read_csv(splits_path, required=["image", "split", "part"])
            if r["split"].strip() == str(split)]
    check_unique([r["image"] for r in mine], f"{splits_path} (split {split})")
    for r in mine:
        if r["image"] not in row_of or r["part"] not in parts:
            raise ValueError(f"{splits_path}: row {r} names an image not in {cohort_path} "
                             "or a part other than train/val/test")
        parts[r["part"]].append(row_of[r["image"]])
    empty = [p for p, rows in parts.items() if not rows]
    if empty:
        raise ValueError(f"{splits_path}: split {split} has no {'/'.join(empty)} images")
    return names, labels, {p: np.array(sorted(rows)) for p, rows in parts.items()}
