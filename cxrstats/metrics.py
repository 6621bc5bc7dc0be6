"""Classification metrics, hand-written: AUROC, ROC curve, P/R/F1, best-F1 threshold, No Finding
score.

Conventions shared by every function here:
- `y` holds the truth as 0/1 (bool, int or float); `score` holds real numbers, larger = more
  positive.
- A sample is predicted positive when `score >= threshold`.
- Inputs with different lengths, NaN scores or labels other than 0/1 raise ValueError naming the
  problem.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PRF(NamedTuple):
    """Precision, recall and F1 of one set of binary predictions."""
    precision: float
    recall: float
    f1: float


class BestF1(NamedTuple):
    """The threshold that maximizes F1 (predict positive when score >= threshold) and that F1."""
    threshold: float
    f1: float


class ROC(NamedTuple):
    """ROC curve points: (K+1,) arrays, from (0, 0) at threshold +inf to (1, 1) at the lowest
    score."""
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _as_binary(y, name: str = "y") -> np.ndarray:
    """Return `y` as a 1-D bool array; raise ValueError unless every value is 0 or 1."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        return y
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"{name} contains NaN")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError(f"{name} must hold only 0/1 values, found {np.unique(y)[:5].tolist()}")
    return y.astype(bool)


def _as_scores(score, n: int) -> np.ndarray:
    """`score` as a 1-D float64 array of length n; ValueError on NaN or a length mismatch."""
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 1:
        raise ValueError(f"score must be 1-D, got shape {score.shape}")
    if score.size != n:
        raise ValueError(f"y and score have different lengths ({n} vs {score.size})")
    if np.isnan(score).any():
        raise ValueError(f"score contains NaN ({int(np.isnan(score).sum())} of {n} values)")
    return score


def auroc(y, score) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Computed from ranks, as the Mann-Whitney U statistic divided by n_pos * n_neg:
    U = (sum of the mid-ranks of the positives) - n_pos (n_pos + 1) / 2. Tied scores share their
    mid-rank, so a positive-negative tie counts one half. O(N log N).
    Raises ValueError when `y` has only one class (AUROC is undefined), when lengths differ or a
    score is NaN. All-equal scores give 0.5; perfect separation 1.0; perfectly inverted 0.0.
    """
    y = _as_binary(y)
    score = _as_scores(score, y.size)
    if y.size == 0:
        raise ValueError("AUROC is undefined: empty input")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "positives" if n_neg == 0 else "negatives"
        raise ValueError(f"AUROC is undefined: y has only one class ({y.size} {only})")
    # Mid-rank of a value v in the pooled sample: #{scores < v} + (#{scores == v} + 1) / 2, read off
    # the sorted scores with two binary searches (faster than an argsort; queries sorted for
    # locality).
    pooled = np.sort(score)
    positives = np.sort(score[y])
    below = np.searchsorted(pooled, positives, side="left")
    below_or_equal = np.searchsorted(pooled, positives, side="right")
    rank_sum = (below.sum() + below_or_equal.sum() + n_pos) / 2.0
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _cumulative_counts(y: np.ndarray, score: np.ndarray):
    """Counts at every distinct threshold: (thresholds, TP, FP), thresholds = the distinct scores
    from highest to lowest, TP/FP = the positives/negatives with score >= threshold.

    Sort all scores and the positives' scores once; binary searches then give #{score >= t} for
    every threshold t at once. O(N log N), no loop over thresholds.
    """
    pooled = np.sort(score)
    positives = np.sort(score[y])
    last_of_run = np.append(pooled[1:] != pooled[:-1], True)
    thresholds = pooled[last_of_run][::-1]
    at_or_above = y.size - np.searchsorted(pooled, thresholds, side="left")
    tp = positives.size - np.searchsorted(positives, thresholds, side="left")
    return thresholds, tp, at_or_above - tp


def roc_curve(y, score) -> ROC:
    """False and true positive rates at every distinct threshold, for plotting ROC curves.

    FPR = FP / n_neg and TPR = TP / n_pos where TP/FP count the samples with score >= threshold.
    Thresholds are +inf (nothing predicted positive: the point (0, 0)) followed by the distinct
    scores in decreasing order (the last one predicts everything positive: the point (1, 1)). Tied
    scores move together, so ties give diagonal segments; the trapezoid area under this curve equals
    `auroc`. Raises ValueError when `y` has only one class (one of the rates would be 0/0).
    """
    y = _as_binary(y)
    score = _as_scores(score, y.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC curve is undefined: y has only one class (n_pos={n_pos}, "
                         f"n_neg={n_neg})")
    thresholds, tp, fp = _cumulative_counts(y, score)
    fpr = np.concatenate([[0.0], fp / n_neg])
    tpr = np.concatenate([[0.0], tp / n_pos])
    return ROC(fpr, tpr, np.concatenate([[np.inf], thresholds]))


def _safe_ratio(num: float, den: float) -> float:
    """num / den, with the convention 0/0 -> 0.0 (den is a count, so den == 0 implies num == 0)."""
    return float(num) / float(den) if den > 0 else 0.0


def precision_recall_f1(y, y_pred) -> PRF:
    """Precision TP/(TP+FP), recall TP/(TP+FN) and F1 = 2 TP / (2 TP + FP + FN) of 0/1 predictions.

    F1 is the harmonic mean of precision and recall, written in counts so it needs no special case
    when one of them is 0. Convention: any 0/0 is 0.0 (no predicted positives -> precision 0.0; no
    true positives in `y` -> recall 0.0; neither -> F1 0.0), so a label the model never predicts
    scores 0.
    """
    y = _as_binary(y)
    y_pred = _as_binary(y_pred, "y_pred")
    if y_pred.size != y.size:
        raise ValueError(f"y and y_pred have different lengths ({y.size} vs {y_pred.size})")
    tp = int(np.count_nonzero(y & y_pred))
    fp = int(np.count_nonzero(~y & y_pred))
    fn = int(np.count_nonzero(y & ~y_pred))
    return PRF(_safe_ratio(tp, tp + fp), _safe_ratio(tp, tp + fn),
               _safe_ratio(2 * tp, 2 * tp + fp + fn))


def best_f1_threshold(y, score) -> BestF1:
    """The threshold among the distinct scores that maximizes F1 (predicting `score >= threshold`).

    Sort once; cumulative counts (read off the sorted scores by binary search) give TP and FP at
    every distinct threshold, and F1 = 2 TP / (TP + FP + n_pos) (since FN = n_pos - TP). O(N log N)
    in all. Tie-break: when several thresholds reach the same maximal F1, the HIGHEST threshold wins
    (the fewest positive predictions, i.e. the most conservative operating point). When `y` has no
    positives, F1 is 0 at every threshold and the rule returns the highest score with F1 0.0 (a
    threshold that flags as few samples as any distinct score can). Returns BestF1(threshold, f1).
    """
    y = _as_binary(y)
    score = _as_scores(score, y.size)
    if y.size == 0:
        raise ValueError("best_f1_threshold: empty input")
    n_pos = int(y.sum())
    thresholds, tp, fp = _cumulative_counts(y, score)
    f1 = 2.0 * tp / (tp + fp + n_pos)  # denominator >= 1: at least one sample is predicted positive
    best = int(np.argmax(f1))  # first maximum = highest threshold (thresholds are decreasing)
    return BestF1(float(thresholds[best]), float(f1[best]))


def no_finding_score(p) -> np.ndarray:
    """Derived "No Finding" probability 1 - max over the abnormality probabilities: (N, L) -> (N,).

    An image looks normal exactly as much as its most suspicious finding looks absent.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"no_finding_score expects an (N, L) array with L >= 1, got shape "
                         f"{p.shape}")
    if np.isnan(p).any():
        raise ValueError("no_finding_score: probabilities contain NaN")
    return 1.0 - p.max(axis=1)


def cooccurrence(Y) -> np.ndarray:
    """Label co-occurrence counts from an (N, L) 0/1 matrix: (L, L) int64, C[i, j] = #rows with both
    label i and label j; the diagonal holds each label's count. C = Y^T Y."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"cooccurrence expects an (N, L) 0/1 matrix, got shape {Y.shape}")
    if Y.dtype != bool and not np.isin(Y, (0, 1)).all():
        raise ValueError("cooccurrence expects 0/1 values only")
    Y = Y.astype(np.int64)
    return Y.T @ Y
