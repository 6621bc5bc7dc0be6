"""cxrstats.hypothesis and cxrstats.formatting against scipy and direct loops."""
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from cxrstats import mantel, mean_sd, paired_ttest, spearman
from cxrstats.formatting import cell


@pytest.mark.parametrize("n", [2, 3, 5, 10, 50])
def test_paired_ttest_matches_scipy(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        a = rng.normal(size=n)
        b = a + rng.normal(0.3, 1.0, size=n)
        ours = paired_ttest(a, b)
        ref = scipy.stats.ttest_rel(a, b)
        assert ours.t == pytest.approx(ref.statistic, rel=1e-10)
        assert ours.p == pytest.approx(ref.pvalue, rel=1e-8)
        assert ours.df == n - 1 and ours.note == ""


def test_paired_ttest_zero_variance_and_errors():
    same = paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert math.isnan(same.t) and math.isnan(same.p) and "0" in same.note
    shifted = paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.t == math.inf and shifted.p == 0.0 and shifted.df == 2 and shifted.note
    assert paired_ttest([1.0, 2.0], [2.0, 3.0]).t == -math.inf
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_ttest([1.0], [2.0])
    with pytest.raises(ValueError, match="different lengths"):
        paired_ttest([1.0, 2.0], [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="NaN"):
        paired_ttest([1.0, np.nan], [2.0, 3.0])


@pytest.mark.parametrize("n", [2, 3, 8, 40, 500])
def test_spearman_matches_scipy_with_ties(n):
    rng = np.random.default_rng(n)
    for x, y in ((rng.integers(0, 4, n), rng.integers(0, 3, n)),
                 (rng.normal(size=n), rng.normal(size=n))):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_constant_and_errors():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="different lengths"):
        spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        spearman([1], [1])


def brute_mantel_exact(a, b, method):
    """Direct loop over every permutation, recomputing the correlation with scipy each time."""
    n = a.shape[0]
    symmetric = np.array_equal(a, a.T) and np.array_equal(b, b.T)
    rows, cols = np.triu_indices(n, 1) if symmetric else np.nonzero(~np.eye(n, dtype=bool))
    corr = (lambda u, v: scipy.stats.pearsonr(u, v).statistic) if method == "pearson" else \
        (lambda u, v: scipy.stats.spearmanr(u, v).statistic)
    r_obs = corr(a[rows, cols], b[rows, cols])
    hits = 0
    for perm in itertools.permutations(range(n)):
        bp = b[np.ix_(perm, perm)]
        hits += corr(a[rows, cols], bp[rows, cols]) >= r_obs - 1e-12
    return r_obs, hits / math.factorial(n)


def cooccurrence_like(rng, n, scale=30):
    """Symmetric integer matrices with many ties, like label co-occurrence counts."""
    m = rng.integers(0, scale, (n, n))
    return np.triu(m) + np.triu(m, 1).T


@pytest.mark.parametrize("n", [3, 4, 5, 6])
@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_mantel_exact_matches_direct_loop(n, method, symmetric):
    rng = np.random.default_rng(10 * n + symmetric)
    if symmetric:
        a = cooccurrence_like(rng, n)
        b = a + cooccurrence_like(rng, n, scale=20)  # related, with ties
    else:
        a = rng.integers(0, 5, (n, n)).astype(float)
        b = a + rng.integers(0, 4, (n, n))
    result = mantel(a, b, permutations=9999, method=method)
    r_ref, p_ref = brute_mantel_exact(a, b, method)
    assert result.exact and result.permutations == math.factorial(n)
    assert result.entries == (n * (n - 1) // 2 if symmetric else n * (n - 1))
    assert result.r == pytest.approx(r_ref, abs=1e-12)
    assert result.p == pytest.approx(p_ref, abs=1e-12)
    assert result.p >= 1 / math.factorial(n)


def test_mantel_random_mode_agrees_with_exact():
    rng = np.random.default_rng(5)
    a = cooccurrence_like(rng, 7)
    b = a + cooccurrence_like(rng, 7, scale=60)
    exact = mantel(a, b, permutations=5040, method="spearman")  # 7! = 5040: enumerated
    sampled = mantel(a, b, permutations=4999, seed=1, method="spearman")
    assert exact.exact and not sampled.exact and sampled.permutations == 4999
    assert sampled.r == pytest.approx(exact.r, abs=1e-12)
    se = math.sqrt(exact.p * (1 - exact.p) / 4999) + 1 / 5000
    assert abs(sampled.p - exact.p) < 4 * se
    assert (sampled.p * 5000) == pytest.approx(round(sampled.p * 5000))  # (1 + hits) / (1 + P)
    assert mantel(a, b, permutations=4999, seed=1, method="spearman") == sampled  # seeded


def test_mantel_strong_and_null_signals():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 9))
    a = a + a.T
    strong = mantel(a, a * 2 + 1, permutations=999)
    assert strong.r == pytest.approx(1.0) and strong.p == pytest.approx(1 / 1000)
    null_ps = [mantel(a, (lambda m: m + m.T)(rng.normal(size=(9, 9))), permutations=199, seed=s).p
               for s in range(20)]
    assert 0.2 < np.mean(null_ps) < 0.8  # roughly uniform under H0


def test_mantel_errors_and_constant():
    with pytest.raises(ValueError, match="square"):
        mantel(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="different shapes"):
        mantel(np.zeros((3, 3)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="at least 3x3"):
        mantel(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        mantel(np.full((3, 3), np.nan), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="method"):
        mantel(np.eye(3), np.eye(3), method="kendall")
    flat = mantel(np.ones((4, 4)), np.arange(16.0).reshape(4, 4))
    assert math.isnan(flat.r) and math.isnan(flat.p)


def test_mean_sd_formatting():
    assert mean_sd([79.0, 79.5, 79.7]) == "79.4 ± 0.4"
    assert mean_sd([0.5, 0.7], decimals=3) == "0.600 ± 0.141"
    assert mean_sd([80.04]) == "80.0 ± n/a"
    with pytest.raises(ValueError, match="at least one"):
        mean_sd([])


def test_mean_sd_refuses_nan_and_cell_marks_it():
    """[0.8, nan] used to print "nan ± nan" silently."""
    with pytest.raises(ValueError, match="1 of 2 values are NaN"):
        mean_sd([0.8, float("nan")])
    with pytest.raises(ValueError, match="NaN or infinite"):
        mean_sd([0.8, float("inf"), 0.7])
    assert cell([0.8, float("nan"), 0.9], 2) == "0.85 ± 0.07*"
    assert cell([0.8, None], 1) == "0.8 ± n/a*"
    assert cell([float("nan")], 1) == "n/a"
    assert cell([0.8, 0.9], 2) == "0.85 ± 0.07"


@pytest.mark.parametrize("n", [3, 5, 6, 7])
def test_paired_ttest_zero_variance_is_found_whatever_the_rounding(n):
    """Differences that are all equal, exactly or up to the rounding of the inputs, are the
    documented zero-variance cases even where the mean of n equal floats rounds away from them."""
    shift = paired_ttest(np.full(n, 0.1), np.zeros(n))         # mean of n 0.1s is not 0.1
    assert shift.t == math.inf and shift.p == 0.0 and shift.note
    a = 0.1 * np.arange(1, n + 1) + 0.1                          # a - b = 0.1 up to rounding
    b = 0.1 * np.arange(1, n + 1)
    assert paired_ttest(a, b).t == math.inf
    same = paired_ttest(np.full(n, 0.1 + 0.2), np.full(n, 0.3))  # 0 up to rounding (5.6e-17)
    assert math.isnan(same.t) and math.isnan(same.p) and same.note
    tiny = paired_ttest([0.5, 0.6, 0.7], [0.5, 0.6, 0.7 - 1e-9])  # a real difference stays one
    assert math.isfinite(tiny.t) and tiny.note == ""
    with pytest.raises(ValueError, match="finite"):
        paired_ttest([math.inf, 1.0], [0.0, 0.0])


def test_mean_and_sd_over_splits_is_one_rule():
    """mean ± sd over splits (sd ddof 1, NaN from one value) is computed by
    cxrstats.formatting.mean_and_sd alone: the tables, compare.csv and tightness.csv import it."""
    from pathlib import Path

    from cxrstats.formatting import mean_and_sd
    values = [0.79, 0.795, 0.797]
    assert mean_and_sd(values) == (pytest.approx(np.mean(values)),
                                   pytest.approx(np.std(values, ddof=1)))
    assert mean_and_sd([0.8])[0] == 0.8 and math.isnan(mean_and_sd([0.8])[1])
    assert all(math.isnan(v) for v in mean_and_sd([]))
    package = Path(__file__).parents[1] / "cxrstats"
    computing_sd = [p.name for p in sorted(package.glob("*.py"))
                    if p.name != "formatting.py" and ".std(" in p.read_text()]
    assert computing_sd == []
