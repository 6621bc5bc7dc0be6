"""The study's label order, used in every file and array of the classification stages.

Columns of cohort.csv, of the (N, 5) probability arrays and of thresholds.csv follow this order.
The classifiers predict the five findings; "No Finding" is derived as 1 - max(p) over them.
"""
from __future__ import annotations

FINDINGS: tuple[str, ...] = ("Mass", "Nodule", "Pneumonia", "Edema", "Fibrosis")
NO_FINDING = "No Finding"
LABELS: tuple[str, ...] = FINDINGS + (NO_FINDING,)
