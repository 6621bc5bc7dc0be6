"""The study's label order, used in every file and array of the classification stages.

Defined once in `cxrstats.study` (the report reads the same files); re-exported here for cxrcls.
"""
from cxrstats.study import FINDINGS, LABELS, NO_FINDING

__all__ = ["FINDINGS", "LABELS", "NO_FINDING"]
