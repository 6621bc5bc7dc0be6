"""The lung's extent: the convention of drawing the lung that a fine-tuned segmenter learned from
its training masks, and so the convention of every mask it makes (docs/segmentation.md, "The
lung's extent"). The one definition every package reads.

- `field`: the visible lung field (SCR convention: Montgomery, Shenzhen, JSRT); the left lung stops
  at the heart border. The default, and the convention of the profiles' own sets.
- `full`: the whole lung, including the part behind the heart and down to the costophrenic
  recesses.

A checkpoint's extent (cxrseg.engine.checkpoint_extent) is one of these for a checkpoint
cxrseg.finetune wrote (`--extent`, stored in its settings), `none` for weights not fine-tuned for
lungs (lite, micro, tiny, official weight files), and `unrecorded` for a fine-tuned checkpoint that
stores no extent. Masks carry their segmenter's extent in their records (done_predict.json and
done_postprocess.json, fact `extent`).

profiles/pipeline.mk checks EXTENT by running this file (`main`), so Make holds no copy of the rule.
"""
from __future__ import annotations

EXTENTS = ("field", "full")       # what a user declares (--extent, EXTENT)
DEFAULT_EXTENT = "field"
NOT_FINE_TUNED = "none"           # weights not fine-tuned for lungs
UNRECORDED = "unrecorded"         # a fine-tuned checkpoint (or masks' record) without an extent


def extent_error(value) -> str | None:
    """Why `value` is not an extent one can declare (None when it is one of EXTENTS)."""
    if value in EXTENTS:
        return None
    return f"{value!r} is not a lung extent: choose {' or '.join(EXTENTS)}"


def check_extent(checkpoint: str, extent: str, given: str | None) -> None:
    """ValueError naming the checkpoint and both extents when `given` (an `--extent`, or None when
    none was given) differs from the checkpoint's `extent`."""
    if given is None or given == extent:
        return
    raise ValueError(f"--extent {given}: the checkpoint {checkpoint} has extent {extent} "
                     f"({describe(extent)}), not {given}; give --extent {extent}, or a segmenter "
                     f"fine-tuned on {given} masks (cxrseg.finetune --extent {given})")


def describe(extent: str) -> str:
    """A few words on what an extent means, for messages."""
    return {"field": "fine-tuned on visible-lung-field masks",
            "full": "fine-tuned on whole-lung masks",
            NOT_FINE_TUNED: "not fine-tuned for lungs",
            UNRECORDED: "fine-tuned without a recorded extent"}.get(extent, "unknown")


def main(argv: list[str]) -> str:
    """Make's view of the rule (run with the system Python, before the virtual environment
    exists): `--check VALUE` prints why VALUE is no extent, nothing when it is one."""
    if len(argv) != 2 or argv[0] != "--check":
        raise SystemExit(f"usage: extent.py --check VALUE; got {argv!r}")
    return extent_error(argv[1]) or ""


if __name__ == "__main__":
    import sys
    print(main(sys.argv[1:]))
