"""The report's figures: co-occurrence heatmaps and side-by-side ROC curves.

matplotlib is imported inside the functions (figures are optional, and importing cxrstats stays
light) and used through `matplotlib.figure.Figure`, which renders with Agg without touching pyplot's
global backend. Files are written atomically.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrstats.fileio import atomic_path
from cxrstats.metrics import auroc, no_finding_score, roc_curve

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


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
