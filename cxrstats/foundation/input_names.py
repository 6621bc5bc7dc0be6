"""The names of the classifier's input variants, the one definition every package reads.

- `original`: the cached image;
- `overlay`: the image with the raw mask's boundary drawn on it;
- `m<r>`: the image cut out with the lung mask dilated by r >= 0 pixels (m0: the eroded mask
  itself). r is written without leading zeros (m15, never m015), so each radius has one name and
  one run folder.

profiles/pipeline.mk checks INPUTS by running this file (`main`), so Make holds no copy of the rule.
"""
from __future__ import annotations

import re

PLAIN_INPUTS = ("original", "overlay")
MASKED_INPUT = re.compile(r"m(0|[1-9][0-9]*)")


def mask_radius(name) -> int | None:
    """The dilation radius r of a masked input `m<r>`, None for any other name (original, overlay,
    or one that is not an input name at all, e.g. m015 or m-1)."""
    match = MASKED_INPUT.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def is_input_name(name) -> bool:
    """True for original, overlay and m<r>."""
    return name in PLAIN_INPUTS or mask_radius(name) is not None


def main(argv: list[str]) -> str:
    """Make's view of the rule (profiles/pipeline.mk runs this file with the system Python, before
    the virtual environment exists): `--radii NAMES...` prints the radii of the masked names,
    `--not-inputs NAMES...` the names that are no input name."""
    mode, names = argv[0], argv[1:]
    if mode == "--radii":
        return " ".join(str(r) for r in map(mask_radius, names) if r is not None)
    if mode == "--not-inputs":
        return " ".join(name for name in names if not is_input_name(name))
    raise SystemExit(f"usage: input_names.py --radii|--not-inputs NAME...; got {mode!r}")


if __name__ == "__main__":
    import sys
    print(main(sys.argv[1:]))
