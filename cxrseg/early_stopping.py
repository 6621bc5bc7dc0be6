"""Early stopping of both training loops: patience on a validation score.

An epoch improves when its score beats the best so far strictly (higher for cxrcls.train's macro
AUROC, lower for cxrseg.finetune's loss; a NaN score never improves); training stops once
`patience` epochs in a row have not improved. The best epoch is the one whose checkpoint is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """The best score, its epoch, and the epochs since it (saved in last.pt by each loop)."""
    patience: int
    higher_is_better: bool
    best: float | None = None   # None: nothing seen yet, any score improves
    best_epoch: int = 0
    bad_epochs: int = 0

    def __post_init__(self):
        if self.best is None:
            self.best = -math.inf if self.higher_is_better else math.inf

    def update(self, epoch: int, score: float) -> bool:
        """Count `epoch`'s validation score; returns whether it improved on the best."""
        improved = score > self.best if self.higher_is_better else score < self.best
        if improved:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def stopped(self) -> bool:
        """True once `patience` epochs in a row have not improved."""
        return self.bad_epochs >= self.patience
