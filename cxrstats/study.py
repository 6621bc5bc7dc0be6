"""The study's scoring rules, implemented once: the label order, the derived No Finding score, macro
AUROC and best-F1 thresholds tuned on validation. Training (cxrcls.train) and the report
(cxrstats.report) both import these, so they can never disagree.

Label order (columns of cohort.csv, of the (N, 5) probability arrays and of thresholds.csv):
Mass, Nodule, Pneumonia, Edema, Fibrosis, then the derived "No Finding" = 1 - max(p) over the five
(Wang et al., CVPR 2017, ChestX-ray14 label names).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cxrstats.metrics import auroc, best_f1_threshold, no_finding_score, precision_recall_f1

FINDINGS: tuple[str, ...] = ("Mass", "Nodule", "Pneumonia", "Edema", "Fibrosis")
NO_FINDING = "No Finding"
LABELS: tuple[str, ...] = FINDINGS + (NO_FINDING,)


def label_scores(probs: np.ndarray) -> np.ndarray:
    """(n, 5) finding probabilities -> (n, 6) scores in LABELS order, No Finding = 1 - max(p)
    appended."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(FINDINGS):
        raise ValueError(f"expected (n, {len(FINDINGS)}) finding probabilities, got shape "
                         f"{probs.shape}")
    return np.column_stack([probs, no_finding_score(probs)])


def label_aurocs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each column: labels and scores (n, L) -> (L,), NaN where a column has one class
    only."""
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    out = np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        if labels[:, j].min() != labels[:, j].max():
            out[j] = auroc(labels[:, j], scores[:, j])
    return out


class MacroAuroc(NamedTuple):
    """A macro AUROC: `value` the mean over `n_findings` findings (NaN when 0), `skipped` the
    names of the others (one class only in the test set)."""
    value: float
    skipped: list[str]
    n_findings: int


def macro_auroc(labels: np.ndarray, probs: np.ndarray) -> MacroAuroc:
    """The study's macro AUROC: the mean AUROC over the 5 findings that have both classes in
    `labels`.

    labels (n, 5 or 6) 0/1 (a 6th No Finding column is ignored), probs (n, 5). Returns the mean (NaN
    when no finding has both classes), the names of the findings skipped for having one class
    only, and how many findings the mean averages.
    """
    labels = np.asarray(labels)[:, :len(FINDINGS)]
    values = label_aurocs(labels, np.asarray(probs, dtype=np.float64))
    skipped = [name for name, v in zip(FINDINGS, values) if np.isnan(v)]
    defined = values[np.isfinite(values)]
    return MacroAuroc(float(defined.mean()) if defined.size else float("nan"), skipped,
                      int(defined.size))


def label_prf(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(6, 3) precision, recall and F1 per label of 0/1 predictions (n, 6) against labels (n, 6);
    NaN for a label with one class only in `labels`: undefined there, as its AUROC is."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    prf = np.full((len(LABELS), 3), np.nan)
    for j in range(len(LABELS)):
        if 0 < labels[:, j].sum() < len(labels):
            prf[j] = precision_recall_f1(labels[:, j], predicted[:, j])
    return prf


def macro_prf(prf: np.ndarray) -> np.ndarray:
    """(3,) the study's macro precision, recall and F1: the mean over the 5 findings where they are
    defined (label_prf), as macro_auroc averages; NaN when none is."""
    findings = np.asarray(prf)[:len(FINDINGS)]
    defined = findings[np.isfinite(findings).all(axis=1)]
    return defined.mean(axis=0) if len(defined) else np.full(3, np.nan)


def tune_thresholds(val_probs: np.ndarray, val_labels: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Best-F1 threshold of each label on the validation set (No Finding on its derived score).

    val_probs (n, 5), val_labels (n, 6) 0/1 in LABELS order -> thresholds (6,), validation F1 (6,),
    notes. A label predicted positive when `score >= threshold`; ties and the no-positive case
    follow `cxrstats.metrics.best_f1_threshold`.
    """
    scores = label_scores(val_probs)
    val_labels = np.asarray(val_labels)
    if val_labels.shape != scores.shape:
        raise ValueError(f"validation labels {val_labels.shape} do not match scores {scores.shape}")
    thresholds = np.empty(len(LABELS))
    f1 = np.empty(len(LABELS))
    notes = []
    for j, label in enumerate(LABELS):
        best = best_f1_threshold(val_labels[:, j], scores[:, j])
        thresholds[j], f1[j] = best.threshold, best.f1
        if not val_labels[:, j].any():
            notes.append(f"{label}: no positive in validation, threshold = highest score (F1 0)")
    return thresholds, f1, notes
