"""The report's figures: which runs they show, and the drawing (co-occurrence heatmaps,
side-by-side ROC curves).

- figures/cooccurrence_dataset.png: the cohort's label co-occurrence;
- figures/roc_curves.png: test ROC curves of two settings on one split;
- figures/cooccurrence_predicted.png: that test set's true co-occurrence beside the two settings'
  predicted ones.

matplotlib is imported inside the functions (figures are optional, and importing cxrstats stays
light) and used through `matplotlib.figure.Figure`, which renders with Agg without touching pyplot's
global backend. Files are written atomically.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrstats.foundation.fileio import atomic_path
from cxrstats.metrics import auroc, cooccurrence, no_finding_score, roc_curve
from cxrstats.runs import Cohort, Setting
from cxrstats.scoring import RunResult
from cxrstats.study import FINDINGS, LABELS, NO_FINDING

COOCCURRENCE_DATASET = "figures/cooccurrence_dataset.png"
ROC_CURVES = "figures/roc_curves.png"
COOCCURRENCE_PREDICTED = "figures/cooccurrence_predicted.png"
FIGURES = (COOCCURRENCE_DATASET, ROC_CURVES, COOCCURRENCE_PREDICTED)  # every file it may write
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


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
    cooccurrence_figure(out / COOCCURRENCE_DATASET,
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
    roc_figure(out / ROC_CURVES,
               [(f"{r.setting.name}, split {k} (test, n = {len(r.test_labels)})",
                 r.test_probs, r.test_labels) for r in picked], FINDINGS, NO_FINDING)
    panels = [(f"test set, split {k}: truth", cooccurrence(picked[0].test_labels))]
    panels += [(f"{r.setting.name}: predicted", cooccurrence(r.predicted)) for r in picked]
    cooccurrence_figure(out / COOCCURRENCE_PREDICTED, panels, LABELS)
    written += [ROC_CURVES, COOCCURRENCE_PREDICTED]
    return written, f"ROC and predicted co-occurrence figures: {', '.join(chosen)} on split {k}"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _heatmap(ax, counts: np.ndarray, labels, title: str) -> None:
    """One (L, L) count matrix as an annotated heatmap."""
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    top = counts.max() if counts.size and counts.max() > 0 else 1
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if counts[i, j] > 0.6 * top else "black")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, shrink=0.75)


def cooccurrence_figure(path: Path, panels: list[tuple[str, np.ndarray]], labels) -> Path:
    """Heatmaps of label co-occurrence counts side by side; panels = [(title, (L, L) counts),
    ...]."""
    fig = _figure(5.2 * len(panels), 4.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, counts) in zip(axes, panels):
        _heatmap(ax, counts, labels, title)
    return _save(fig, path)


def roc_figure(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray]], findings,
               no_finding) -> Path:
    """ROC curves per finding, and the derived No Finding score (1 - max p) dashed, one panel per
    setting.

    panels = [(title, probs (n, 5), labels (n, 6) with No Finding last), ...]. A label with a single
    class in `labels` has no curve (its legend entry says so).
    """
    fig = _figure(5.0 * len(panels), 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, probs, labels) in zip(axes, panels):
        curves = [(name, probs[:, j], labels[:, j], COLORS[j % len(COLORS)], "-")
                  for j, name in enumerate(findings)]
        curves.append((f"{no_finding} (1 - max p)", no_finding_score(probs),
                       labels[:, len(findings)], "black", "--"))
        for name, score, truth, color, style in curves:
            if truth.min() == truth.max():
                ax.plot([], [], color=color, linestyle=style, label=f"{name}: one class only")
                continue
            fpr, tpr, _ = roc_curve(truth, score)
            ax.plot(fpr, tpr, color=color, linestyle=style, linewidth=1.4,
                    label=f"{name}: {100 * auroc(truth, score):.1f}")
        ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, linestyle=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title, fontsize=10)
        ax.legend(title="AUROC ×100", fontsize=7, title_fontsize=7, loc="lower right")
    return _save(fig, path)
