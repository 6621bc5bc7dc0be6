"""Hypothesis tests, hand-written: paired t-test, Spearman's rho, the Mantel permutation test and
Holm's adjustment of a family of p-values.

scipy is used only for the t distribution's tail probability (`scipy.special.stdtr`, the Student t
CDF; `scipy.stats` would give the same number but costs about 0.7 s to import in every stage).
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import scipy.special

from cxrstats.ranks import midranks

# Permutation statistics equal to the observed one up to rounding count as ">=": a permutation that
# rearranges tied entries gives the same correlation mathematically but may differ in the last bits.
TIE_TOLERANCE = 1e-12
# Paired differences that agree within this share of the inputs' magnitude count as equal: values
# computed along different paths (0.1 + 0.2 against 0.3) differ only in their last bits.
ROUNDING = 1e-12


class TTest(NamedTuple):
    """Paired t-test result: statistic t, degrees of freedom df = n - 1, two-sided p, and a note
    that explains a degenerate case (empty when the test is ordinary)."""
    t: float
    df: int
    p: float
    note: str = ""


class MantelResult(NamedTuple):
    """Mantel test result.

    r: the correlation of the two matrices' off-diagonal entries; p: one-sided p-value for r being
    this large by chance; permutations: how many permutations were evaluated (n! when exact); exact:
    True when all n! permutations were enumerated, False when `permutations` random ones were drawn;
    method: "pearson" or "spearman"; entries: how many off-diagonal entries were correlated.
    """
    r: float
    p: float
    permutations: int
    exact: bool
    method: str
    entries: int


def _as_vector(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    return x


def paired_ttest(a, b) -> TTest:
    """Two-sided paired t-test of H0: mean(a - b) = 0, for n matched pairs (e.g. one value per
    split).

    With differences d = a - b: t = mean(d) / (sd(d) / sqrt(n)), sd with ddof = 1, df = n - 1, and
    p = 2 * P(T_df <= -|t|) from the Student t CDF. Raises ValueError for fewer than 2 pairs (no
    variance can be estimated), different lengths, NaN or infinity.
    Zero variance of the differences (every pair differs by the same amount) makes the statistic a
    division by zero; we return what the formula's limit says, as scipy.stats.ttest_rel does,
    instead of raising, so a report over many pairs of settings still completes:
    - all differences 0 (identical results): t = nan, p = nan, since there is no evidence either
      way;
    - all differences equal c != 0: t = +/-inf, p = 0.0, since the shift is perfectly consistent.
    The `note` field then says which case occurred. "Equal" and "0" are up to rounding: within
    ROUNDING (1e-12) times the largest |a| or |b|, so rounding noise in the last bits of d (or in
    the mean of n equal floats) gives neither a huge t nor a random p.
    """
    a = _as_vector(a, "a")
    b = _as_vector(b, "b")
    if a.size != b.size:
        raise ValueError(f"paired_ttest: a and b have different lengths ({a.size} vs {b.size})")
    n = a.size
    if n < 2:
        raise ValueError(f"paired_ttest needs at least 2 pairs, got {n}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_ttest: a and b must be finite (no infinity)")
    d = a - b
    mean = d.mean()
    df = n - 1
    rounding = ROUNDING * max(float(np.abs(a).max()), float(np.abs(b).max()))
    if float(np.ptp(d)) <= rounding:
        if abs(mean) <= rounding:
            return TTest(math.nan, df, math.nan, "all differences are 0: t and p undefined")
        return TTest(math.copysign(math.inf, mean), df, 0.0,
                     "differences have zero variance: t infinite, p = 0")
    sd = math.sqrt(((d - mean) ** 2).sum() / df)
    t = mean / (sd / math.sqrt(n))
    p = 2.0 * float(scipy.special.stdtr(df, -abs(t)))
    return TTest(float(t), df, min(p, 1.0))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; nan when either input is constant (the correlation is 0/0)."""
    cx = x - x.mean()
    cy = y - y.mean()
    den = math.sqrt(float(cx @ cx) * float(cy @ cy))
    return float(cx @ cy) / den if den > 0 else math.nan


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the mid-ranks of x and of y.

    Ties share their mid-rank (as scipy.stats.spearmanr does). Returns nan when either input is
    constant (the correlation is 0/0). Raises ValueError for different lengths, fewer than 2 values
    or NaN.
    """
    x = _as_vector(x, "x")
    y = _as_vector(y, "y")
    if x.size != y.size:
        raise ValueError(f"spearman: x and y have different lengths ({x.size} vs {y.size})")
    if x.size < 2:
        raise ValueError(f"spearman needs at least 2 values, got {x.size}")
    return _pearson(midranks(x), midranks(y))


def _square(m, name: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"mantel: {name} must be a square matrix, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError(f"mantel: {name} contains NaN")
    return m


def mantel(a, b, permutations: int = 9999, seed: int = 0, method: str = "pearson") -> MantelResult:
    """Mantel test: is matrix `a` correlated with matrix `b` beyond what relabelling would give?

    r is the correlation (Pearson, or Spearman with method="spearman") between the off-diagonal
    entries of the two (n, n) matrices: only the upper triangle when both are exactly symmetric
    (each pair once), all n(n-1) off-diagonal entries otherwise. The null distribution comes from
    permuting the rows and columns of `b` together (relabelling its items), which keeps b's
    structure but breaks its link to a.
    - Random mode: p = (1 + #{r_perm >= r_obs}) / (1 + permutations) with `permutations` random
      permutations drawn from numpy's default_rng(seed) (one-sided, the classic Mantel test).
    - Exact mode, used when n! <= permutations (6 labels: 720): all n! permutations are enumerated
      and p = #{r_perm >= r_obs} / n!, the identity included (so p >= 1 / n!).
    `r_perm >= r_obs` allows a rounding tolerance of 1e-12. When either matrix's entries are
    constant r and p are nan. All permutations are evaluated in one vectorised gather (chunked for
    large n).
    """
    a = _square(a, "a")
    b = _square(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"mantel: matrices have different shapes {a.shape} and {b.shape}")
    if method not in ("pearson", "spearman"):
        raise ValueError(f"mantel: method must be 'pearson' or 'spearman', got {method!r}")
    if permutations < 1:
        raise ValueError(f"mantel: permutations must be >= 1, got {permutations}")
    n = a.shape[0]
    if n < 3:
        raise ValueError(f"mantel needs matrices of at least 3x3, got {n}x{n}")

    symmetric = np.array_equal(a, a.T) and np.array_equal(b, b.T)
    if symmetric:
        rows, cols = np.triu_indices(n, k=1)
    else:
        rows, cols = np.nonzero(~np.eye(n, dtype=bool))
    x = a[rows, cols]
    y = b[rows, cols]
    if method == "spearman":
        # Permuting b only rearranges its entries, so ranking them once is enough.
        x, y = midranks(x), midranks(y)
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))

    exact = math.factorial(n) <= permutations
    count = math.factorial(n) if exact else permutations
    if den == 0:
        return MantelResult(math.nan, math.nan, count, exact, method, rows.size)

    # b's (centred, maybe ranked) entries back in matrix form: b permuted by pi is b_full[pi, pi].
    b_full = np.zeros((n, n))
    b_full[rows, cols] = y
    if symmetric:
        b_full[cols, rows] = y

    def correlations(perms: np.ndarray) -> np.ndarray:
        out = np.empty(len(perms))
        chunk = max(1, 2_000_000 // rows.size)
        for start in range(0, len(perms), chunk):
            p = perms[start:start + chunk]
            out[start:start + chunk] = b_full[p[:, rows], p[:, cols]] @ x / den
        return out

    r_obs = float(correlations(np.arange(n)[None, :])[0])
    if exact:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
    else:
        rng = np.random.default_rng(seed)
        perms = rng.permuted(np.tile(np.arange(n), (permutations, 1)), axis=1)
    hits = int(np.count_nonzero(correlations(perms) >= r_obs - TIE_TOLERANCE))
    p_value = hits / count if exact else (1 + hits) / (1 + permutations)
    return MantelResult(r_obs, p_value, count, exact, method, rows.size)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values for one family of tests: (m,) -> (m,), same order.

    With the finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of the i-th is
    max over j <= i of min(1, (m - j + 1) p_(j)): the smallest family-wise level at which Holm's
    procedure (reject H_(1), H_(2), ... while p_(j) <= alpha / (m - j + 1)) rejects that hypothesis.
    NaN entries (tests that could not be run) are left out of the family and stay NaN.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"holm expects a 1-D array of p-values, got shape {p.shape}")
    finite = np.flatnonzero(~np.isnan(p))
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise ValueError("holm: p-values must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(steps)
    return adjusted
