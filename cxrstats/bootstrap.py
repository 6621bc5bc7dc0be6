"""Stratified bootstrap intervals for AUROC, vectorised over resamples, hand-written.

A resample draws, with replacement, as many images from each stratum as the stratum holds, so every
resample keeps the label's numbers of positives and negatives (and its AUROC is always defined).
A resample is stored as counts: W[b, i] = how often image i was drawn in resample b. The AUROC of
every resample at once is then a weighted Mann-Whitney sum, read off cumulative weights of the
negatives sorted by score:
    AUC_b = sum_{i pos} W[b, i] (W_neg[b, score < s_i] + W_neg[b, score == s_i] / 2)
            / (sum_{i pos} W[b, i] * sum_{j neg} W[b, j]),
O(B N) after one sort, no loop over resamples. The interval is the percentile interval
(2.5th and 97.5th percentiles of the resampled AUROCs for 95%).

Strata: each label's interval resamples its positives and its negatives separately. The macro
AUROC (mean over labels) resamples images jointly, so the correlation between labels scored on the
same images is kept, stratified by each image's pattern of labels, which keeps every label's numbers
of positives and negatives. A pattern held by a single image is drawn as itself in every resample,
so when many patterns are that rare (small test sets) the macro interval is too narrow.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cxrstats.metrics import _as_binary, _as_scores


class AurocIntervals(NamedTuple):
    """Percentile bootstrap intervals: per label (L, 2) [low, high] (NaN for a label with one class)
    and macro (2,) over the labels that have both classes; n_boot resamples, `level` coverage;
    fixed: the images whose label pattern no other image shares, drawn as themselves in every
    macro resample (the more there are, the narrower the macro interval is than it should be)."""
    labels: np.ndarray
    macro: np.ndarray
    n_boot: int
    level: float
    fixed: int = 0


def stratified_counts(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, N) float64 draw counts: each stratum (images with equal `strata` value, (N,) ints)
    resampled with replacement to its own size, independently in every one of the B = n_boot
    resamples."""
    strata = np.asarray(strata)
    counts = np.zeros((n_boot, strata.size))
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        k = members.size
        draws = rng.integers(0, k, size=(n_boot, k), dtype=np.int32)
        draws = draws + k * np.arange(n_boot)[:, None]  # row b counts into bins b*k .. b*k + k-1
        counts[:, members] = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    return counts


def weighted_aurocs(y, score, weights) -> np.ndarray:
    """AUROC of `score` against `y` (N,) under each row of `weights` (B, N) (image counts): (B,).

    With all weights 1 this is `cxrstats.auroc`. Every row must give both classes a positive weight.
    """
    y = _as_binary(y)
    score = _as_scores(score, y.size)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != y.size:
        raise ValueError(f"weights must be (B, {y.size}), got shape {weights.shape}")
    negatives = np.flatnonzero(~y)
    order = negatives[np.argsort(score[negatives], kind="stable")]
    neg_sorted = score[order]
    cumulative = np.zeros((weights.shape[0], order.size + 1))
    np.cumsum(weights[:, order], axis=1, out=cumulative[:, 1:])
    positives = score[y]
    below = np.searchsorted(neg_sorted, positives, side="left")
    up_to = np.searchsorted(neg_sorted, positives, side="right")
    placed = 0.5 * (cumulative[:, below] + cumulative[:, up_to])  # below + half the ties
    w_pos = weights[:, y]
    den = w_pos.sum(axis=1) * cumulative[:, -1]
    if (den <= 0).any():
        raise ValueError("weighted_aurocs: a resample has no weight on one of the classes")
    return (w_pos * placed).sum(axis=1) / den


def _percentiles(values: np.ndarray, level: float) -> np.ndarray:
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(values, [tail, 100.0 - tail], axis=0).T


def bootstrap_aurocs(labels, scores, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                     ) -> AurocIntervals:
    """Stratified bootstrap percentile intervals of each label's AUROC and of the macro AUROC.

    labels (N, L) 0/1 and scores (N, L), e.g. the 5 findings' labels and probabilities of one test
    set. Seeded: the same inputs and seed give the same intervals. The macro AUROC is the mean over
    the labels with both classes (the study's rule); labels with one class get a NaN interval.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be the same (N, L)")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    defined = [j for j in range(labels.shape[1]) if labels[:, j].min() != labels[:, j].max()]
    per_label = np.full((labels.shape[1], 2), np.nan)
    for j in defined:
        counts = stratified_counts(labels[:, j], n_boot, rng)
        per_label[j] = _percentiles(weighted_aurocs(labels[:, j], scores[:, j], counts), level)
    macro = np.full(2, np.nan)
    fixed = 0
    if defined:
        _, pattern, size = np.unique(labels[:, defined], axis=0, return_inverse=True,
                                     return_counts=True)
        pattern = pattern.ravel()
        fixed = int(np.count_nonzero(size[pattern] == 1))
        counts = stratified_counts(pattern, n_boot, rng)
        resampled = np.mean([weighted_aurocs(labels[:, j], scores[:, j], counts) for j in defined],
                            axis=0)
        macro = _percentiles(resampled, level)
    return AurocIntervals(per_label, macro, n_boot, level, fixed)
