"""cxrstats: hand-written, audited statistics for the study (AUROC, best-F1 thresholds, P/R/F1,
paired t-test, Spearman, Mantel, DeLong, stratified bootstrap, Holm) and the report that turns
training runs into the study's tables.

Every function is checked against scipy or a brute-force reference in tests/test_cxrstats_*.py.
Importing this package loads numpy and scipy.special only (`cxrstats.report` is imported
explicitly by the stages that need it).

`cxrstats.foundation` is the subpackage every layer of the project stands on (files and completion
records, the parser, progress, image reading, checkpoints, device); it imports nothing else of the
project, and the statistics here import only it.
"""
from cxrstats.bootstrap import AurocIntervals, bootstrap_aurocs
from cxrstats.delong import DeLongTest, delong_macro, delong_test
from cxrstats.formatting import mean_sd
from cxrstats.hypothesis import MantelResult, TTest, holm, mantel, paired_ttest, spearman
from cxrstats.metrics import (BestF1, PRF, ROC, auroc, best_f1_threshold, cooccurrence,
                              no_finding_score, precision_recall_f1, roc_curve)
from cxrstats.ranks import midranks

__all__ = [
    "auroc", "roc_curve", "precision_recall_f1", "best_f1_threshold", "no_finding_score",
    "cooccurrence", "midranks", "paired_ttest", "spearman", "mantel", "mean_sd", "holm",
    "delong_test", "delong_macro", "bootstrap_aurocs",
    "BestF1", "PRF", "ROC", "TTest", "MantelResult", "DeLongTest", "AurocIntervals",
]
