"""DeLong's test, the stratified bootstrap and Holm's adjustment against brute-force references,
the definitions, scipy, and simulations with a known answer."""
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from cxrstats import auroc, bootstrap_aurocs, delong_macro, delong_test, holm
from cxrstats.bootstrap import stratified_counts, weighted_aurocs
from cxrstats.delong import placement_values, structural_components
from cxrstats.scoring import run_intervals


def brute_placements(y, score):
    """V10 and V01 by the definition: a double loop over positive-negative pairs."""
    pos = [s for s, t in zip(score, y) if t]
    neg = [s for s, t in zip(score, y) if not t]

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0
    v10 = np.array([np.mean([psi(x, v) for v in neg]) for x in pos])
    v01 = np.array([np.mean([psi(x, v) for x in pos]) for v in neg])
    return v10, v01


def correlated_scores(rng, n, shift_a=1.0, shift_b=1.0, rho=0.6, prevalence=0.4, decimals=None):
    """Truth y and two models' scores whose noise is correlated (same images), binormal."""
    y = rng.random(n) < prevalence
    common = rng.normal(size=n)
    a = shift_a * y + math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=n)
    b = shift_b * y + math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=n)
    if decimals is not None:  # ties, as with float32 probabilities
        a, b = np.round(a, decimals), np.round(b, decimals)
    return y.astype(int), a, b


@pytest.mark.parametrize("decimals", [None, 1])
def test_placement_values_and_delong_variance_match_brute_force(decimals):
    rng = np.random.default_rng(3)
    for n in (6, 17, 60):
        y, a, b = correlated_scores(rng, n, decimals=decimals)
        if y.sum() < 2 or (1 - y).sum() < 2:
            continue
        v10_a, v01_a = brute_placements(y, a)
        v10_b, v01_b = brute_placements(y, b)
        fast = placement_values(y, a)
        np.testing.assert_allclose(fast[0], v10_a, atol=1e-12)
        np.testing.assert_allclose(fast[1], v01_a, atol=1e-12)
        m, k = len(v10_a), len(v01_a)
        s10 = np.cov(np.vstack([v10_a, v10_b]))  # ddof = 1, DeLong's S10
        s01 = np.cov(np.vstack([v01_a, v01_b]))
        s = s10 / m + s01 / k
        result = delong_test(y, a, b)
        assert result.auc_a == pytest.approx(auroc(y, a), abs=1e-12)
        assert result.auc_b == pytest.approx(auroc(y, b), abs=1e-12)
        assert result.var_a == pytest.approx(s[0, 0], abs=1e-12)
        assert result.var_b == pytest.approx(s[1, 1], abs=1e-12)
        assert result.cov == pytest.approx(s[0, 1], abs=1e-12)
        z = (auroc(y, a) - auroc(y, b)) / math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
        assert result.z == pytest.approx(z, rel=1e-9)
        assert result.p == pytest.approx(2 * scipy.stats.norm.sf(abs(z)), rel=1e-9)


def test_delong_variance_equals_class_wise_jackknife():
    """Independent of placement values: leave each image out, recompute `auroc` directly."""
    rng = np.random.default_rng(5)
    y, a, _ = correlated_scores(rng, 40, decimals=1)
    full = auroc(y, a)
    var = 0.0
    for cls in (0, 1):
        members = np.flatnonzero(y == cls)
        k = members.size
        loo = np.array([auroc(np.delete(y, i), np.delete(a, i)) for i in members])
        var += (k - 1) / k * ((loo - loo.mean()) ** 2).sum()
    assert structural_components(y, a)[0] == pytest.approx(full)
    assert delong_test(y, a, a + 1).var_a == pytest.approx(var, rel=1e-10)


def test_delong_macro_matches_leave_one_image_out_brute_force():
    """Macro over 3 labels scored on the same images: the variance of the difference of the macro
    AUROCs from each image's left-out change of every label's AUROC (computed with `auroc`)."""
    rng = np.random.default_rng(11)
    n, L = 50, 3
    labels = (rng.random((n, L)) < 0.35).astype(int)
    common = rng.normal(size=(n, L))
    sa = labels + common + rng.normal(size=(n, L))
    sb = 0.7 * labels + common + rng.normal(size=(n, L))
    result = delong_macro(labels, sa, sb)
    assert result.auc_a == pytest.approx(np.mean([auroc(labels[:, j], sa[:, j]) for j in range(L)]))
    assert result.auc_b == pytest.approx(np.mean([auroc(labels[:, j], sb[:, j]) for j in range(L)]))

    def components(scores):
        out = np.zeros((n, L))
        for j in range(L):
            full = auroc(labels[:, j], scores[:, j])
            for i in range(n):
                k = int((labels[:, j] == labels[i, j]).sum())
                left_out = auroc(np.delete(labels[:, j], i), np.delete(scores[:, j], i))
                out[i, j] = -(left_out - full) * math.sqrt((k - 1) / k)
        return out.mean(axis=1)
    ca, cb = components(sa), components(sb)
    assert result.var_a == pytest.approx(ca @ ca, rel=1e-9)
    assert result.var_b == pytest.approx(cb @ cb, rel=1e-9)
    assert result.cov == pytest.approx(ca @ cb, rel=1e-9)
    single = delong_macro(labels[:, :1], sa[:, :1], sb[:, :1])
    assert single == delong_test(labels[:, 0], sa[:, 0], sb[:, 0])


def test_delong_calibrated_by_simulation():
    """Under H0 (two exchangeable correlated models) about 5% of p-values fall below 0.05, and the
    estimated variance of the difference matches its spread over repeated samples."""
    rng = np.random.default_rng(0)
    ps, diffs, variances = [], [], []
    for _ in range(600):
        y, a, b = correlated_scores(rng, 150)
        result = delong_test(y, a, b)
        ps.append(result.p)
        diffs.append(result.auc_a - result.auc_b)
        variances.append(result.var_a + result.var_b - 2 * result.cov)
    rejected = np.mean(np.array(ps) < 0.05)
    assert 0.025 <= rejected <= 0.08, rejected
    assert np.var(diffs) == pytest.approx(np.mean(variances), rel=0.2)
    # and it has power: a clearly better model is detected
    y, a, b = correlated_scores(rng, 300, shift_a=1.5, shift_b=0.5)
    result = delong_test(y, a, b)
    assert result.z > 3 and result.p < 0.01


def test_delong_degenerate_cases():
    y = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.1, 0.3, 0.7, 0.2])
    same = delong_test(y, s, s)
    assert math.isnan(same.z) and math.isnan(same.p) and "undefined" in same.note
    perfect_vs_flat = delong_test(y, s, np.zeros(6))  # both have zero-variance placements
    assert perfect_vs_flat.z == math.inf and perfect_vs_flat.p == 0.0 and perfect_vs_flat.note
    with pytest.raises(ValueError, match="2 positives and 2 negatives"):
        delong_test([1, 0, 0, 0], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="same"):
        delong_macro(np.ones((4, 2)), np.ones((4, 3)), np.ones((4, 3)))


# ------------------------------------------------------------------------------------ bootstrap
def test_weighted_aurocs_match_auroc_on_repeated_samples():
    rng = np.random.default_rng(1)
    y = (rng.random(40) < 0.4).astype(int)
    score = np.round(rng.normal(size=40) + y, 1)  # ties
    weights = rng.integers(0, 4, size=(25, 40)).astype(float)
    weights[:, np.flatnonzero(y)[0]] += 1  # both classes present in every row
    weights[:, np.flatnonzero(1 - y)[0]] += 1
    weights[0] = 1.0
    expected = [auroc(np.repeat(y, w.astype(int)), np.repeat(score, w.astype(int)))
                for w in weights]
    np.testing.assert_allclose(weighted_aurocs(y, score, weights), expected, atol=1e-12)


def test_stratified_counts_keep_each_stratum_size():
    rng = np.random.default_rng(2)
    strata = np.array([0, 1, 1, 2, 2, 2, 0, 1, 5])
    counts = stratified_counts(strata, 200, rng)
    for value in np.unique(strata):
        assert (counts[:, strata == value].sum(axis=1) == (strata == value).sum()).all()
    assert (counts[:, strata == 5] == 1).all()  # a stratum of one is always drawn as itself
    assert counts[:, strata == 2].std() > 0


def test_bootstrap_intervals_seeded_stratified_and_close_to_delong():
    rng = np.random.default_rng(4)
    n = 2000
    labels = (rng.random((n, 2)) < [0.3, 0.5]).astype(int)
    scores = labels * [1.0, 0.5] + rng.normal(size=(n, 2))
    first = bootstrap_aurocs(labels, scores, n_boot=1000, seed=7)
    again = bootstrap_aurocs(labels, scores, n_boot=1000, seed=7)
    other = bootstrap_aurocs(labels, scores, n_boot=1000, seed=8)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.macro, again.macro)
    assert not np.array_equal(first.labels, other.labels)
    for j in range(2):
        low, high = first.labels[j]
        point = auroc(labels[:, j], scores[:, j])
        assert low < point < high
        sd = math.sqrt(delong_test(labels[:, j], scores[:, j], scores[:, j] * 0).var_a)
        assert high - low == pytest.approx(2 * 1.96 * sd, rel=0.15)  # same sampling spread
    macro = np.mean([auroc(labels[:, j], scores[:, j]) for j in range(2)])
    assert first.macro[0] < macro < first.macro[1]
    macro_sd = math.sqrt(delong_macro(labels, scores, scores * 0).var_a)
    assert first.macro[1] - first.macro[0] == pytest.approx(2 * 1.96 * macro_sd, rel=0.15)


def test_bootstrap_coverage_by_simulation():
    """Binormal scores with known AUROC Phi(d / sqrt 2): the 95% interval covers it about 95% of the
    time."""
    rng = np.random.default_rng(9)
    d = 1.0
    truth = scipy.stats.norm.cdf(d / math.sqrt(2))
    covered = 0
    trials = 150
    for t in range(trials):
        y = (rng.random(300) < 0.3).astype(int)
        score = d * y + rng.normal(size=300)
        low, high = bootstrap_aurocs(y[:, None], score[:, None], n_boot=400, seed=t).labels[0]
        covered += low <= truth <= high
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_label_with_one_class_and_bad_arguments():
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    scores = np.arange(12, dtype=float).reshape(6, 2)
    result = bootstrap_aurocs(labels, scores, n_boot=50)
    assert np.isnan(result.labels[1]).all() and np.isfinite(result.labels[0]).all()
    assert np.isfinite(result.macro).all()  # over the defined label only
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_aurocs(labels, scores, n_boot=0)
    with pytest.raises(ValueError, match="same"):
        bootstrap_aurocs(labels, scores[:, :1])


# ------------------------------------------------------------------------------------ Holm
def holm_rejections(p, alpha):
    """Holm's procedure as defined: step down through the sorted p-values, rejecting while
    p_(j) <= alpha / (m - j + 1); returns the set of rejected indices."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for j, i in enumerate(order):  # j = 0-based step
        if p[i] <= alpha / (len(p) - j):
            rejected.add(i)
        else:
            break
    return rejected


def test_holm_matches_the_step_down_definition():
    rng = np.random.default_rng(6)
    for m in (1, 2, 5, 15):
        for _ in range(30):
            p = np.round(rng.random(m) ** 3, 3)  # small p-values, with ties
            adjusted = holm(p)
            alphas = sorted(set(p.tolist()) | {a * (m - j) for a in p for j in range(m)}
                            | {0.01, 0.05, 0.1})
            for alpha in (a for a in alphas if a < 1):  # a level >= 1 is no test
                for eps in (-1e-12, 1e-12):
                    level = alpha + eps
                    assert set(np.flatnonzero(adjusted <= level)) == holm_rejections(p, level)
            assert (adjusted >= p).all() and (adjusted <= 1).all()


def test_holm_known_case_and_nan():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.01, np.nan, 0.04])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04])
    assert holm([]).size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_holm_is_invariant_to_order():
    p = np.array([0.2, 0.001, 0.03, 0.03, 0.6])
    adjusted = holm(p)
    for perm in itertools.permutations(range(5)):
        np.testing.assert_allclose(holm(p[list(perm)]), adjusted[list(perm)])


def test_images_with_a_label_pattern_of_their_own_are_counted_and_reported():
    """Such images never vary in the macro resamples (documented: the interval is too narrow);
    bootstrap_aurocs counts them over the labels with both classes and the report notes it."""
    rng = np.random.default_rng(7)
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 1, 0]])
    scores = rng.random(labels.shape)
    result = bootstrap_aurocs(labels, scores, n_boot=50, seed=0)
    alone = sum(int((labels[:, :2] == row).all(axis=1).sum() == 1) for row in labels[:, :2])
    assert result.fixed == alone == 2                  # (0, 1) and (1, 1); column 3 has one class
    labels6 = np.column_stack([labels, labels[:, :2], 1 - labels.max(axis=1)])
    _, _, notes = run_intervals(labels6, rng.random(labels6.shape), 50, (0, 0))
    assert notes == [f"macro AUROC bootstrap interval too narrow: {alone} of 6 test images have a "
                     "pattern of findings no other test image has, and are drawn as themselves "
                     "in every resample"]
    assert run_intervals(labels6, rng.random(labels6.shape), 0, (0, 0))[2] == []
