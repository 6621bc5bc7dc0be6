"""DeLong's test for two correlated AUROCs measured on the same images, hand-written.

DeLong, DeLong & Clarke-Pearson (Biometrics, 1988). For one label with m positives X and n negatives
Y and a model's scores s, the placement values are
    V10(x_i) = (1/n) sum_j psi(s(x_i), s(y_j)),   V01(y_j) = (1/m) sum_i psi(s(x_i), s(y_j)),
with psi(a, b) = 1 if a > b, 1/2 if a == b, 0 otherwise; the AUROC is the mean of either. For models
a and b on the same images, Cov(AUC_a, AUC_b) = S10_ab / m + S01_ab / n, where S10 and S01 are the
sample covariances (ddof = 1) of the placement values over positives and over negatives. Then
z = (AUC_a - AUC_b) / sqrt(Var_a + Var_b - 2 Cov_ab) and p = 2 Phi(-|z|).

Written per image, that covariance is a sum of products of structural components:
    c_i = (V(i) - AUC) / sqrt(k (k - 1)),  k = m if image i is positive, n if it is negative,
so Cov(AUC_a, AUC_b) = sum_i c_a(i) c_b(i) reproduces DeLong's estimate exactly. Because the images
are the sampling units, the same sum gives the covariance of AUROCs of DIFFERENT labels scored on
the same images, and so the variance of the macro AUROC (the mean over labels): its structural
component is the average of the labels' components, image by image.

Placement values come from mid-ranks (Sun & Xu, 2014): V10(x_i) = (R(x_i) - R_X(x_i)) / n and
V01(y_j) = 1 - (R(y_j) - R_Y(y_j)) / m, with R the mid-rank among all scores and R_X / R_Y among the
positives / negatives only. O(N log N).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.special

from cxrstats.metrics import _as_binary, _as_scores
from cxrstats.ranks import midranks


class DeLongTest(NamedTuple):
    """Two correlated AUROCs: their values, DeLong's (co)variance estimates, z and two-sided p.
    `note` explains a degenerate case (empty when the test is ordinary)."""
    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    cov: float
    z: float
    p: float
    note: str = ""


def placement_values(y, score) -> tuple[np.ndarray, np.ndarray]:
    """Placement values of one label: V10 (m,) for the positives, V01 (n,) for the negatives, in the
    order they appear in `y`. Both have mean AUROC. Raises ValueError for one class, NaN or
    different lengths."""
    y = _as_binary(y)
    score = _as_scores(score, y.size)
    m = int(y.sum())
    n = y.size - m
    if m == 0 or n == 0:
        raise ValueError(f"placement values need both classes (positives {m}, negatives {n})")
    ranks = midranks(score)
    v10 = (ranks[y] - midranks(score[y])) / n
    v01 = 1.0 - (ranks[~y] - midranks(score[~y])) / m
    return v10, v01


def structural_components(y, score) -> tuple[float, np.ndarray]:
    """(AUROC, c (N,)): each image's structural component (module docstring), so that
    Var(AUROC) = sum c**2 and the covariance with another model or label is sum c_a * c_b.
    Needs at least 2 positives and 2 negatives (a sample covariance of each class)."""
    y = _as_binary(y)
    m = int(y.sum())
    n = y.size - m
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance needs at least 2 positives and 2 negatives "
                         f"(got {m} and {n})")
    v10, v01 = placement_values(y, score)
    auc = float(v10.mean())
    c = np.empty(y.size)
    c[y] = (v10 - auc) / math.sqrt(m * (m - 1))
    c[~y] = (v01 - auc) / math.sqrt(n * (n - 1))
    return auc, c


def _test(auc_a: float, auc_b: float, c_a: np.ndarray, c_b: np.ndarray) -> DeLongTest:
    """z and p from two AUROCs and their structural components (N,) on the same images."""
    var_a, var_b, cov = float(c_a @ c_a), float(c_b @ c_b), float(c_a @ c_b)
    diff = auc_a - auc_b
    var_diff = float((c_a - c_b) @ (c_a - c_b))  # = var_a + var_b - 2 cov, without cancellation
    if var_diff <= 1e-15:
        if diff == 0:
            return DeLongTest(auc_a, auc_b, var_a, var_b, cov, math.nan, math.nan,
                              "identical placement values: z and p undefined")
        return DeLongTest(auc_a, auc_b, var_a, var_b, cov, math.copysign(math.inf, diff), 0.0,
                          "the difference has zero estimated variance: z infinite, p = 0")
    z = diff / math.sqrt(var_diff)
    p = 2.0 * float(scipy.special.ndtr(-abs(z)))
    return DeLongTest(auc_a, auc_b, var_a, var_b, cov, z, min(p, 1.0))


def delong_test(y, score_a, score_b) -> DeLongTest:
    """DeLong's test of AUROC(y, score_a) = AUROC(y, score_b), both models scored on the same
    images.

    y (N,) 0/1 with at least 2 positives and 2 negatives, score_a and score_b (N,) aligned with y.
    """
    auc_a, c_a = structural_components(y, score_a)
    auc_b, c_b = structural_components(y, score_b)
    return _test(auc_a, auc_b, c_a, c_b)


def delong_macro(labels, scores_a, scores_b) -> DeLongTest:
    """DeLong's test for two macro AUROCs (the mean AUROC over L labels) on the same images.

    labels, scores_a, scores_b: (N, L), every label with at least 2 positives and 2 negatives. The
    macro AUROC's structural component is the mean of the labels' components per image, so the
    variance accounts for the correlation between labels scored on the same images.
    """
    labels = np.asarray(labels)
    scores_a = np.asarray(scores_a, dtype=np.float64)
    scores_b = np.asarray(scores_b, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != scores_a.shape or labels.shape != scores_b.shape:
        raise ValueError(f"delong_macro: labels {labels.shape} and scores {scores_a.shape}, "
                         f"{scores_b.shape} must be the same (N, L) shape")
    parts_a = [structural_components(labels[:, j], scores_a[:, j]) for j in range(labels.shape[1])]
    parts_b = [structural_components(labels[:, j], scores_b[:, j]) for j in range(labels.shape[1])]
    auc_a = float(np.mean([auc for auc, _ in parts_a]))
    auc_b = float(np.mean([auc for auc, _ in parts_b]))
    c_a = np.mean([c for _, c in parts_a], axis=0)
    c_b = np.mean([c for _, c in parts_b], axis=0)
    return _test(auc_a, auc_b, c_a, c_b)
