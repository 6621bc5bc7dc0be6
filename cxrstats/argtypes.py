"""argparse `type=` helpers that check a number's range and name it in the error.

    parser.add_argument("--epochs", type=int_range(1), ...)            # an integer >= 1
    parser.add_argument("--threshold", type=float_range(0, 1, lo_open=True, hi_open=True))

A value outside the range stops the command at parse time with argparse's usual message, e.g.
"argument --threshold: 1.5 is not in (0, 1)", instead of running with it.
"""
from __future__ import annotations

import argparse
import math


def int_range(lo: int | None = None, hi: int | None = None):
    """An argparse type: an integer with lo <= value <= hi (either bound may be None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is not in {_interval(lo, hi, False, False)}")
        return value

    parse.__name__ = f"integer in {_interval(lo, hi, False, False)}"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False):
    """An argparse type: a finite float within [lo, hi] (open ends with lo_open / hi_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        below = lo is not None and (value <= lo if lo_open else value < lo)
        above = hi is not None and (value >= hi if hi_open else value > hi)
        if not math.isfinite(value) or below or above:
            interval = _interval(lo, hi, lo_open, hi_open)
            raise argparse.ArgumentTypeError(f"{text} is not in {interval}")
        return value

    parse.__name__ = f"number in {_interval(lo, hi, lo_open, hi_open)}"
    return parse


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    left = "(-inf" if lo is None else ("(" if lo_open else "[") + _number(lo)
    right = "inf)" if hi is None else _number(hi) + (")" if hi_open else "]")
    return f"{left}, {right}"


def _number(value) -> str:
    """Integers in full (a seed bound of 2**32 - 1 stays readable), floats in short form."""
    return str(value) if isinstance(value, int) else f"{value:g}"
