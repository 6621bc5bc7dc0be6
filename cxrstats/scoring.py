"""Score the training runs on their test sets: per-run metrics with bootstrap intervals, and
DeLong's test between two runs of one split. The study's rules (label order, No Finding score, macro
AUROC, validation thresholds) come from `cxrstats.study`; this module only applies them to
`FinishedRun`s."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cxrstats.bootstrap import AurocIntervals, bootstrap_aurocs
from cxrstats.delong import DeLongTest, delong_macro, delong_test
from cxrstats.hypothesis import MantelResult, mantel
from cxrstats.metrics import cooccurrence
from cxrstats.runs import FinishedRun, Setting
from cxrstats.study import (FINDINGS, LABELS, MacroAuroc, label_aurocs, label_prf, label_scores,
                            macro_auroc, macro_prf, tune_thresholds)


@dataclass
class RunResult:
    """Test-set scores of one run. Arrays over LABELS (5 findings, then No Finding)."""
    setting: Setting
    split: int
    aurocs: np.ndarray            # (6,), nan where the test set has one class for that label
    macro_auroc: float            # mean AUROC of the findings that are defined on this split
    intervals: np.ndarray         # (6, 2) bootstrap [low, high] per label, nan when off/undefined
    macro_interval: np.ndarray    # (2,)
    thresholds: np.ndarray        # (6,)
    threshold_source: str         # "thresholds.csv" or "tuned on validation by the report"
    prf: np.ndarray               # (6, 3) precision, recall, F1 on test (NaN: one class)
    macro_prf: np.ndarray         # (3,) mean over the findings where defined (study.macro_prf)
    mantel: MantelResult
    test_ids: list[str]           # (n,) image names, the rows of the arrays below
    test_labels: np.ndarray       # (n, 6) truth
    test_probs: np.ndarray        # (n, 5)
    predicted: np.ndarray         # (n, 6) bool, at the thresholds
    train_minutes: float | None
    epochs: int | None
    run_args: dict | None
    notes: list[str] = field(default_factory=list)
    macro_skipped: list[str] = field(default_factory=list)  # findings left out of both macros
    macro_n_findings: int = 0     # findings the macro AUROC averages (study.macro_auroc)


def run_intervals(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bootstrap 95% intervals: (6, 2) per label and (2,) for the macro AUROC over the 5 findings,
    and a note when test images with a label pattern of their own narrow the macro interval.
    labels and scores (n, 6) in LABELS order; n_boot = 0 gives NaN everywhere."""
    per_label = np.full((len(LABELS), 2), np.nan)
    if n_boot == 0:
        return per_label, np.full(2, np.nan), []
    k = len(FINDINGS)
    findings: AurocIntervals = bootstrap_aurocs(labels[:, :k], scores[:, :k], n_boot,
                                                seed=[*seed, 0])
    no_finding = bootstrap_aurocs(labels[:, k:], scores[:, k:], n_boot, seed=[*seed, 1])
    per_label[:k] = findings.labels
    per_label[k:] = no_finding.labels
    notes = [] if not findings.fixed else [
        f"macro AUROC bootstrap interval too narrow: {findings.fixed} of {len(labels)} test images "
        "have a pattern of findings no other test image has, and are drawn as themselves in "
        "every resample"]
    return per_label, findings.macro, notes


def evaluate_run(run: FinishedRun, permutations: int, seed: int, n_boot: int = 0) -> RunResult:
    """Score one run on its test set: AUROC per label with bootstrap intervals (n_boot resamples,
    seeded by seed and split), P/R/F1 at validation-tuned thresholds, Mantel test."""
    notes = list(run.notes)
    if run.thresholds is not None:
        thresholds, source = run.thresholds, "thresholds.csv"
    else:
        thresholds, _, tune_notes = tune_thresholds(run.val_probs, run.val_labels)
        source = "tuned on validation by the report"
        notes += tune_notes
    scores = label_scores(run.test_probs)
    truth = run.test_labels
    aurocs = label_aurocs(truth, scores)
    notes += [f"{label}: one class only in the test set, AUROC undefined"
              for label, value in zip(LABELS, aurocs) if np.isnan(value)]
    macro = macro_auroc(truth, run.test_probs)
    notes += macro_notes(macro)
    intervals, macro_interval, interval_notes = run_intervals(truth, scores, n_boot,
                                                              (seed, run.split))
    notes += interval_notes
    predicted = scores >= thresholds
    prf = label_prf(truth, predicted)
    # Spearman Mantel between the test set's true and predicted 6x6 co-occurrence (No Finding
    # included)
    result = mantel(cooccurrence(truth), cooccurrence(predicted), permutations=permutations,
                    seed=seed, method="spearman")
    if math.isnan(result.r):
        notes.append("Mantel r undefined: the true or predicted co-occurrence entries are all "
                     "equal")
    minutes = None if run.train_seconds is None else run.train_seconds / 60.0
    return RunResult(run.setting, run.split, aurocs, macro.value, intervals, macro_interval,
                     np.asarray(thresholds), source, prf, macro_prf(prf), result,
                     run.test_ids, truth, run.test_probs, predicted, minutes, run.epochs,
                     run.run_args, notes, macro_skipped=macro.skipped,
                     macro_n_findings=macro.n_findings)


def macro_notes(macro: MacroAuroc) -> list[str]:
    """The summary's note on a split whose macro AUROC and macro P/R/F1 leave out findings."""
    if not macro.skipped:
        return []
    if macro.n_findings == 0:
        return ["macro AUROC and P/R/F1 undefined: no finding has both classes in the test set"]
    return [f"macro AUROC and P/R/F1 over {macro.n_findings} of the {len(FINDINGS)} findings "
            f"({', '.join(macro.skipped)} left out: one class only in the test set)"]


@dataclass
class PairTest:
    """DeLong's test between two runs of one split for one label or "macro"; test None when
    skipped (`note` says why)."""
    label: str
    labels_used: int             # how many labels the AUROC averages (1 for a single label)
    test: DeLongTest | None
    note: str = ""


def delong_pair(a: RunResult, b: RunResult) -> list[PairTest]:
    """DeLong's test of run a against run b (same split) per label and for the macro AUROC over the
    findings with at least 2 positives and 2 negatives. The two runs must have scored the same test
    images; rows are matched by image name."""
    if sorted(a.test_ids) != sorted(b.test_ids):
        note = "the two runs' test images differ: DeLong needs the same images"
        return [PairTest(label, 0, None, note) for label in (*LABELS, "macro")]
    row_of = {image: i for i, image in enumerate(b.test_ids)}
    order = [row_of[image] for image in a.test_ids]
    truth = a.test_labels
    scores_a, scores_b = label_scores(a.test_probs), label_scores(b.test_probs[order])
    enough = [j for j in range(len(LABELS))
              if min(truth[:, j].sum(), len(truth) - truth[:, j].sum()) >= 2]
    tests = []
    for j, label in enumerate(LABELS):
        if j in enough:
            test = delong_test(truth[:, j], scores_a[:, j], scores_b[:, j])
            tests.append(PairTest(label, 1, test))
        else:
            tests.append(PairTest(label, 1, None, "fewer than 2 positives or negatives in the test "
                                  "set"))
    used = [j for j in enough if j < len(FINDINGS)]
    if not used:
        tests.append(PairTest("macro", 0, None, "no finding has 2 positives and 2 negatives"))
        return tests
    note = "" if len(used) == len(FINDINGS) else (
        "macro over " + ", ".join(FINDINGS[j] for j in used) + " (the others have fewer than 2 "
        "positives or negatives)")
    tests.append(PairTest("macro", len(used),
                          delong_macro(truth[:, used], scores_a[:, used], scores_b[:, used]), note))
    return tests
