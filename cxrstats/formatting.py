"""Formatting numbers the way the study's tables print them."""
from __future__ import annotations

import numpy as np


def mean_sd(values, decimals: int = 1) -> str:
    """"mean ± sd" of `values` with `decimals` digits, sd the sample standard deviation (ddof = 1).

    Example: [79.0, 79.5, 79.7] -> "79.4 ± 0.4". With a single value the sd cannot be estimated and is
    shown as "n/a" ("79.4 ± n/a"). NaN values propagate ("nan ± nan"): filter them first if you mean to.
    Raises ValueError for no values.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_sd needs at least one value")
    mean = f"{values.mean():.{decimals}f}"
    if values.size == 1:
        return f"{mean} ± n/a"
    return f"{mean} ± {values.std(ddof=1):.{decimals}f}"
