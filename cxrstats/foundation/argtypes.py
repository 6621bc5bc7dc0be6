"""The toolkit's command-line rules: one parser class, and `type=` helpers that check a range.

Every CLI builds its parser with `Parser`, which refuses a single-valued flag given twice
("--split-by patient ... --split-by image"): plain argparse keeps the last value without a word,
so a setting typed by the user could be overridden by one that Make adds. Flags meant to repeat
(append, extend or count actions, such as --data) are unaffected. Abbreviated flags are refused
too, so that every flag on a command line is spelled out and the check sees it.

    parser.add_argument("--epochs", type=int_range(1), ...)            # an integer >= 1
    parser.add_argument("--threshold", type=float_range(0, 1, lo_open=True, hi_open=True))

A value outside the range stops the command at parse time with argparse's usual message, e.g.
"argument --threshold: 1.5 is not in (0, 1)", instead of running with it.
"""
from __future__ import annotations

import argparse
import math
import sys

# Actions whose flag may be given more than once on purpose.
REPEATABLE_ACTIONS = (argparse._AppendAction, argparse._AppendConstAction, argparse._ExtendAction,
                      argparse._CountAction, argparse._HelpAction, argparse._VersionAction)


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser that refuses a single-valued flag given twice, naming both values."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        self.refuse_repeated_flags(args)
        return super().parse_known_args(args, namespace)

    def refuse_repeated_flags(self, args: list[str]) -> None:
        """Stop with argparse's usage error when a single-valued flag occurs twice in `args`."""
        seen: dict[str, tuple[str, str]] = {}  # action dest -> (flag as given, its value)
        for i, token in enumerate(args):
            if token == "--":
                break
            flag, has_value, value = token.partition("=")
            action = self._option_string_actions.get(flag)
            if action is None or isinstance(action, REPEATABLE_ACTIONS):
                continue
            if not has_value:
                value = _following_values(args[i + 1:], action, self._option_string_actions)
            if action.dest in seen:
                first_flag, first_value = seen[action.dest]
                self.error(f"{flag} given twice ({first_flag} {first_value} and {flag} {value}); "
                           "give it once")
            seen[action.dest] = (flag, value)


def _following_values(rest: list[str], action: argparse.Action, flags: dict) -> str:
    """The value(s) written after a flag, as text for a message ("" for a switch)."""
    if action.nargs == 0:
        return "(switch)"
    taken = []
    for token in rest:
        if token in flags or token == "--" or token.partition("=")[0] in flags:
            break
        taken.append(token)
        if action.nargs in (None, "?"):
            break
    return " ".join(taken)


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
