"""Read results/auroc_by_split.csv (written by cxrstats.report): per-split AUROCs behind Table 2.

Columns `setting, split, label, auroc`; label is one of the six LABELS or "macro"; auroc is a number
in [0, 1], or empty where the label has one class in that split's test set (undefined there). The
report's other columns (ci_low, ci_high, macro_n_findings: cxrstats.tables) are not read here.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cxrstats.foundation.fileio import read_csv
from cxrstats.study import LABELS

MACRO = "macro"
AUROC_LABELS = LABELS + (MACRO,)

# {setting: {label: {split: auroc (NaN where undefined)}}}
AurocsBySplit = dict[str, dict[str, dict[int, float]]]


def read_auroc_by_split(path: str | Path) -> AurocsBySplit:
    """The file as nested dicts; ValueError naming the file and row for anything malformed."""
    path = Path(path)
    rows = read_csv(path, required=["setting", "split", "label", "auroc"])
    if not rows:
        raise ValueError(f"{path}: no rows")
    table: AurocsBySplit = {}
    for line, r in enumerate(rows, start=2):
        where = f"{path}, line {line}"
        if r["label"] not in AUROC_LABELS:
            raise ValueError(f"{where}: label {r['label']!r} is not one of {AUROC_LABELS}")
        if not r["setting"]:
            raise ValueError(f"{where}: empty setting")
        try:
            split = int(r["split"])
            value = float(r["auroc"]) if r["auroc"].strip() else math.nan
        except ValueError:
            raise ValueError(f"{where}: split must be an integer and auroc a number or empty, got "
                             f"{r['split']!r}, {r['auroc']!r}") from None
        if not math.isnan(value) and not 0.0 <= value <= 1.0:
            raise ValueError(f"{where}: auroc {value} is outside [0, 1]")
        splits = table.setdefault(r["setting"], {}).setdefault(r["label"], {})
        if split in splits:
            raise ValueError(f"{where}: a second row for {r['setting']} split {split} {r['label']}")
        splits[split] = value
    return table


def values(table: AurocsBySplit, setting: str, label: str) -> list[float]:
    """The finite AUROCs of one setting and label over its splits, in split order."""
    by_split = table.get(setting, {}).get(label, {})
    return [by_split[k] for k in sorted(by_split) if not math.isnan(by_split[k])]


def paired_by_split(x: dict[int, float], y: dict[int, float]
                    ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The pairs of a paired test over splits: the splits where both values are finite, in order,
    and the values there ((k,) each). Split k is one test set for every setting of a work folder,
    so its two values are a pair; a split where either is undefined (NaN) or missing is left out."""
    splits = [k for k in sorted(set(x) & set(y)) if np.isfinite(x[k]) and np.isfinite(y[k])]
    return splits, np.array([x[k] for k in splits]), np.array([y[k] for k in splits])
