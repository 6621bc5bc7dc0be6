"""Kendall's rank correlation tau-b, written out from its definition (ties allowed).

Over all n (n - 1) / 2 pairs (i, j), a pair is concordant when x and y order it the same way
(sign(x_i - x_j) * sign(y_i - y_j) = +1) and discordant when they order it oppositely (-1); pairs
tied in x or in y count as neither. With C and D those counts, n1 the pairs tied in x and n2 those
tied in y,

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)),        n0 = n (n - 1) / 2

which is 1 for the same order, -1 for the reverse order, and reduces to tau-a = (C - D) / n0 when
there are no ties. It is undefined (NaN) when one variable is constant or n < 2, as in
scipy.stats.kendalltau. O(n^2) memory and time: meant for ranking a few dozen settings.
"""
from __future__ import annotations

import math

import numpy as np


def kendall_tau(x, y) -> float:
    """tau-b of two equally long 1-D sequences of finite numbers; ValueError otherwise."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"kendall_tau needs two 1-D sequences of equal length, got {x.shape} "
                         f"and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("kendall_tau: values must be finite (drop NaN first)")
    n = x.size
    if n < 2:
        return math.nan
    upper = np.triu_indices(n, k=1)                        # each pair (i < j) once
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    n0 = upper[0].size
    n1 = int((sx == 0).sum())
    n2 = int((sy == 0).sum())
    denominator = math.sqrt((n0 - n1) * (n0 - n2))
    if denominator == 0:
        return math.nan
    return float((sx * sy).sum() / denominator)          # sum = C - D (ties contribute 0)
