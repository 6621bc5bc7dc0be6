"""Formatting numbers the way the study's tables print them: "mean ± sd" cells, Markdown tables."""
from __future__ import annotations

import numpy as np

PARTIAL = "*"  # marks a cell averaged over fewer values than it has (undefined on some split)
FEWER = "†"    # marks a macro that leaves out a finding on some split (one class in that test set)


def mean_and_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of finite values, e.g. one metric over splits:
    sd NaN with a single value (it cannot be estimated), both NaN with none. The one rule behind
    every "mean ± sd over splits" (the tables, compare.csv, tightness.csv)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    mean = float(values.mean()) if values.size else float("nan")
    sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return mean, sd


def mean_sd(values, decimals: int = 1) -> str:
    """"mean ± sd" of `values` with `decimals` digits, sd the sample standard deviation (ddof = 1).

    Example: [79.0, 79.5, 79.7] -> "79.4 ± 0.4". With a single value the sd cannot be estimated and
    is shown as "n/a" ("79.4 ± n/a"). Raises ValueError for no values and for NaN or infinite values
    (a silent "nan ± nan" would hide a failed split); `cell` skips them with a visible mark instead.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_sd needs at least one value")
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ValueError(f"mean_sd: {bad} of {values.size} values are NaN or infinite; drop "
                         "them first, or use cxrstats.formatting.cell, which marks such cells "
                         f"'{PARTIAL}'")
    mean, sd = mean_and_sd(values)
    if values.size == 1:
        return f"{mean:.{decimals}f} ± n/a"
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def cell(values, decimals: int) -> str:
    """mean ± sd of the finite values (None counts as undefined), with PARTIAL appended when some
    were undefined, and 'n/a' when none is defined. Example: [0.8, nan, 0.9] -> "0.8 ± 0.1*"."""
    values = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "n/a"
    return mean_sd(finite, decimals) + (PARTIAL if finite.size < values.size else "")


def num(value: float | None) -> str:
    """A CSV field: the float's repr (unrounded), or "" for None, NaN or infinity."""
    return "" if value is None or not np.isfinite(value) else repr(float(value))


def short(value) -> str:
    """A number with 3 significant digits ("0.0312"); text that is not a number comes back as is."""
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; columns whose cells all read as numbers ("79.4 ± 0.4", "3", "n/a") align
    right."""
    def numeric(value) -> bool:
        text = str(value).split(" ")[0].rstrip(PARTIAL + FEWER)
        try:
            float(text)
            return True
        except ValueError:
            return text in ("n/a", "")
    right = [bool(rows) and all(numeric(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
