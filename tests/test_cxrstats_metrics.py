"""cxrstats.metrics and cxrstats.ranks against scipy and brute-force references, with ties and edge
cases."""
import numpy as np
import pytest
import scipy.stats

from cxrstats import (auroc, best_f1_threshold, cooccurrence, midranks, no_finding_score,
                      precision_recall_f1, roc_curve)

SIZES = [2, 3, 5, 17, 100, 1001]


def random_case(rng, n, tied):
    """Binary truth with both classes, and scores tied (few distinct values) or continuous."""
    y = rng.integers(0, 2, n)
    y[0], y[-1] = 0, 1
    score = rng.integers(0, 5, n).astype(float) if tied else rng.normal(size=n) + y
    return y, score


def brute_auroc(y, score):
    """O(n^2): fraction of (positive, negative) pairs ordered correctly, ties counting one half."""
    pos, neg = score[y == 1], score[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def brute_best_f1(y, score):
    """Loop over every distinct score, recomputing F1 from scratch; ties -> highest threshold."""
    best_t, best_f1 = None, -1.0
    for t in sorted(set(score.tolist()), reverse=True):
        pred = score >= t
        tp = np.sum(pred & (y == 1))
        fp = np.sum(pred & (y == 0))
        fn = np.sum(~pred & (y == 1))
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best_f1:
            best_t, best_f1 = t, f1
    return best_t, best_f1


@pytest.mark.parametrize("n", SIZES + [0, 1])
def test_midranks_match_scipy(n):
    rng = np.random.default_rng(n)
    for x in (rng.integers(0, 4, n), rng.normal(size=n)):
        np.testing.assert_array_equal(midranks(x), scipy.stats.rankdata(x, method="average"))


def test_midranks_example_and_nan():
    np.testing.assert_array_equal(midranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    with pytest.raises(ValueError, match="NaN"):
        midranks([1.0, np.nan])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("tied", [True, False])
def test_auroc_matches_mannwhitneyu_and_brute_force(n, tied):
    rng = np.random.default_rng(1000 * n + tied)
    for _ in range(5):
        y, score = random_case(rng, n, tied)
        u = scipy.stats.mannwhitneyu(score[y == 1], score[y == 0]).statistic
        expected = u / ((y == 1).sum() * (y == 0).sum())
        assert auroc(y, score) == pytest.approx(expected, abs=1e-12)
        assert auroc(y, score) == pytest.approx(brute_auroc(y, score), abs=1e-12)


def test_auroc_edge_cases():
    y = np.array([0, 0, 1, 1, 0, 1])
    assert auroc(y, np.full(6, 0.3)) == 0.5
    assert auroc(y, y * 2.0 + 1) == 1.0
    assert auroc(y, -y.astype(float)) == 0.0
    assert auroc(y.astype(bool), y) == 1.0
    with pytest.raises(ValueError, match="only one class"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only one class"):
        auroc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="different lengths"):
        auroc([0, 1, 1], [0.1, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="empty"):
        auroc([], [])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("tied", [True, False])
def test_roc_curve_points_and_area(n, tied):
    rng = np.random.default_rng(7 * n + tied)
    y, score = random_case(rng, n, tied)
    fpr, tpr, thresholds = roc_curve(y, score)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.isinf(thresholds[0])
    np.testing.assert_array_equal(thresholds[1:], np.unique(score)[::-1])
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    for t, f, r in zip(thresholds[1:], fpr[1:], tpr[1:]):  # every point, from scratch
        pred = score >= t
        assert f == pytest.approx(np.mean(pred[y == 0]))
        assert r == pytest.approx(np.mean(pred[y == 1]))
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)  # trapezoids: ties give diagonal steps
    assert area == pytest.approx(auroc(y, score), abs=1e-12)


def test_roc_curve_rejects_one_class():
    with pytest.raises(ValueError, match="one class"):
        roc_curve([1, 1], [0.2, 0.4])


@pytest.mark.parametrize("n", SIZES)
def test_precision_recall_f1_against_counts(n):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    tp = np.sum((y == 1) & (y_pred == 1))
    fp = np.sum((y == 0) & (y_pred == 1))
    fn = np.sum((y == 1) & (y_pred == 0))
    p, r, f1 = precision_recall_f1(y, y_pred)
    assert p == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert r == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
    assert f1 == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)


def test_precision_recall_f1_zero_division_convention():
    assert precision_recall_f1([1, 0, 1], [0, 0, 0]) == (0.0, 0.0, 0.0)  # nothing predicted
    assert precision_recall_f1([0, 0, 0], [1, 0, 0]) == (0.0, 0.0, 0.0)  # no positives
    assert precision_recall_f1([0, 0], [0, 0]) == (0.0, 0.0, 0.0)
    assert precision_recall_f1([1, 1, 0], [1, 1, 0]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="different lengths"):
        precision_recall_f1([1, 0], [1])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("tied", [True, False])
def test_best_f1_threshold_matches_brute_force(n, tied):
    rng = np.random.default_rng(31 * n + tied)
    for _ in range(5):
        y, score = random_case(rng, n, tied)
        t, f1 = best_f1_threshold(y, score)
        bt, bf1 = brute_best_f1(y, score)
        assert t == bt
        assert f1 == pytest.approx(bf1, abs=1e-12)
        assert precision_recall_f1(y, score >= t).f1 == pytest.approx(f1, abs=1e-12)


def test_best_f1_threshold_tie_break_and_degenerate_cases():
    # thresholds 4 and 1 both give F1 = 2/3: the rule picks the higher one
    assert best_f1_threshold([1, 0, 0, 1], [4, 3, 2, 1]) == (4.0, pytest.approx(2 / 3))
    # tied scores switch together: threshold 0.5 flags both tied samples (TP 2, FP 1 -> F1 0.8)
    assert best_f1_threshold([1, 0, 1], [0.5, 0.5, 0.9]) == (0.5, pytest.approx(0.8))
    # no positives: F1 is 0 everywhere, the highest score is returned
    assert best_f1_threshold([0, 0, 0], [0.2, 0.7, 0.1]) == (0.7, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        best_f1_threshold([0, 1], [np.nan, 0.1])
    with pytest.raises(ValueError, match="empty"):
        best_f1_threshold([], [])


def test_no_finding_score():
    p = np.array([[0.1, 0.7, 0.2, 0.0, 0.3], [0.05, 0.0, 0.1, 0.02, 0.01]])
    np.testing.assert_allclose(no_finding_score(p), [0.3, 0.9])
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        no_finding_score(np.zeros(5))


def test_cooccurrence_against_loops():
    rng = np.random.default_rng(3)
    Y = rng.integers(0, 2, (50, 6))
    C = cooccurrence(Y)
    for i in range(6):
        for j in range(6):
            assert C[i, j] == sum(1 for row in Y if row[i] and row[j])
    assert C.dtype == np.int64 and np.array_equal(C, C.T)
    with pytest.raises(ValueError, match="0/1"):
        cooccurrence(np.full((2, 2), 3))


def test_precision_recall_f1_of_a_label_with_one_class_is_undefined_and_left_out_of_the_macro():
    """As for AUROC: a finding without test positives has no recall (its 0/0 would pull the macro
    down by a fifth); the macro is the mean over the findings where P/R/F1 are defined."""
    from cxrstats.study import label_prf, macro_prf

    labels = np.array([[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 0],
                       [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]])
    predicted = labels.copy()
    predicted[:, 2] = [1, 0, 0, 0, 0]          # Pneumonia: no positives in truth, one predicted
    prf = label_prf(labels, predicted)
    assert np.isnan(prf[2]).all()
    assert np.allclose(prf[[0, 1, 3, 4, 5]], 1.0)
    assert np.allclose(macro_prf(prf), [1.0, 1.0, 1.0])
    assert np.isnan(macro_prf(np.full((6, 3), np.nan))).all()


def test_macro_auroc_says_how_many_findings_it_averages():
    """The count auroc_by_split.csv records (macro_n_findings) is the macro's own: the findings
    with both classes, the ones its mean is over."""
    from cxrstats.study import FINDINGS, macro_auroc

    rng = np.random.default_rng(0)
    labels = (rng.random((40, len(FINDINGS))) < 0.4).astype(int)
    probs = rng.random((40, len(FINDINGS)))
    labels[:, 2] = 0                           # Pneumonia: one class only
    macro = macro_auroc(labels, probs)
    assert macro.skipped == ["Pneumonia"] and macro.n_findings == 4
    assert macro.value == pytest.approx(np.mean([auroc(labels[:, j], probs[:, j])
                                                 for j in (0, 1, 3, 4)]))
    value, skipped, n = macro_auroc(np.zeros_like(labels), probs)
    assert np.isnan(value) and n == 0 and skipped == list(FINDINGS)
