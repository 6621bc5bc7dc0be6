"""The report's figures: which runs they show, drawn with `cxrstats.plots`.

- figures/cooccurrence_dataset.png: the cohort's label co-occurrence;
- figures/roc_curves.png: test ROC curves of two settings on one split;
- figures/cooccurrence_predicted.png: that test set's true co-occurrence beside the two settings'
  predicted ones.
"""
from __future__ import annotations

from pathlib import Path

from cxrstats.metrics import cooccurrence
from cxrstats.runs import Cohort, Setting
from cxrstats.scoring import RunResult
from cxrstats.study import FINDINGS, LABELS, NO_FINDING

COOCCURRENCE_DATASET = "figures/cooccurrence_dataset.png"
ROC_CURVES = "figures/roc_curves.png"
COOCCURRENCE_PREDICTED = "figures/cooccurrence_predicted.png"
FIGURES = (COOCCURRENCE_DATASET, ROC_CURVES, COOCCURRENCE_PREDICTED)  # every file it may write


def choose_roc_settings(settings: list[Setting], requested: list[str] | None) -> list[str]:
    """Two settings to compare: as requested; else <arch>_original vs <arch>_m50 (the study's
    figure) for the first architecture that has both; else the first two (or the only one)."""
    names = [s.name for s in settings]
    if requested:
        unknown = [n for n in requested if n not in names]
        if unknown:
            raise ValueError(f"--roc-settings: unknown setting(s) {unknown}; available: {names}")
        return list(requested)
    for arch in dict.fromkeys(s.arch for s in settings):
        if f"{arch}_original" in names and f"{arch}_m50" in names:
            return [f"{arch}_original", f"{arch}_m50"]
    return names[:2]


def write_figures(cohort: Cohort, results: dict[str, list[RunResult]], settings: list[Setting],
                  out: Path, roc_settings: list[str] | None, roc_split: int | None
                  ) -> tuple[list[str], str]:
    """The cohort's co-occurrence, and ROC curves and predicted co-occurrence for two settings."""
    from cxrstats import plots
    plots.cooccurrence_figure(out / COOCCURRENCE_DATASET,
                              [(f"cohort: label co-occurrence ({len(cohort.images)} images)",
                                cooccurrence(cohort.labels))], LABELS)
    written = [COOCCURRENCE_DATASET]

    chosen = choose_roc_settings(settings, roc_settings)
    splits_of = [{r.split: r for r in results[name]} for name in chosen]
    common = sorted(set.intersection(*(set(s) for s in splits_of)))
    if roc_split is not None and roc_split not in common:
        raise ValueError(f"--roc-split {roc_split}: not a split of every chosen setting {chosen} "
                         f"(common splits: {common})")
    if not common:
        return written, f"ROC figure skipped: settings {chosen} share no split"
    k = common[0] if roc_split is None else roc_split
    picked = [s[k] for s in splits_of]
    plots.roc_figure(out / ROC_CURVES,
                     [(f"{r.setting.name}, split {k} (test, n = {len(r.test_labels)})",
                       r.test_probs, r.test_labels) for r in picked], FINDINGS, NO_FINDING)
    panels = [(f"test set, split {k}: truth", cooccurrence(picked[0].test_labels))]
    panels += [(f"{r.setting.name}: predicted", cooccurrence(r.predicted)) for r in picked]
    plots.cooccurrence_figure(out / COOCCURRENCE_PREDICTED, panels, LABELS)
    written += [ROC_CURVES, COOCCURRENCE_PREDICTED]
    return written, f"ROC and predicted co-occurrence figures: {', '.join(chosen)} on split {k}"
