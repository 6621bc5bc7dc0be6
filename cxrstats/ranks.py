"""Mid-ranks: the ranking that AUROC (Mann-Whitney U) and Spearman's rho are built on."""
from __future__ import annotations

import numpy as np


def midranks(x) -> np.ndarray:
    """1-based ranks of `x` (N,), tied values sharing the mean of the ranks they span; (N,) float64.

    Sort once, find runs of equal values, and give each run the average of its first and
    last rank: a run covering sorted positions i..j (0-based) gets (i + j) / 2 + 1. O(N log N).
    Example: [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]. NaN is rejected, because it has no place in an
    order.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"midranks expects a 1-D array, got shape {x.shape}")
    if x.dtype.kind == "f" and np.isnan(x).any():
        raise ValueError("midranks: input contains NaN")
    n = x.size
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    order = np.argsort(x)  # stability is not needed: tied values all receive the same rank
    sorted_x = x[order]
    # run_start[k] is True where sorted position k begins a new run of equal values
    run_start = np.empty(n, dtype=bool)
    run_start[0] = True
    run_start[1:] = sorted_x[1:] != sorted_x[:-1]
    starts = np.flatnonzero(run_start)
    ends = np.append(starts[1:], n) - 1
    run_rank = (starts + ends) / 2.0 + 1.0
    run_id = np.cumsum(run_start) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = run_rank[run_id]
    return ranks
