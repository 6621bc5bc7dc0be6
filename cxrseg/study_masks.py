"""The study's lung-mask geometry, the one place its numbers are written (defaults of every CLI,
benchmark and experiment that builds or scores M-15 / M-50).

The raw lung mask is eroded by a disk of ERODE_RADIUS pixels, then dilated by each of DILATE_RADII
pixels (M-15, M-50). Radii are in pixels of the classifier cache's images, whose side is
PIPELINE_SIZE (masks of another size are scaled to it before the radii apply, see cxrseg.coverage,
or the radii are scaled to the mask, `scale_radius`).

profiles/user.mk runs this file (`main`, standard library only) for `make segment`'s --erode.
"""
from __future__ import annotations

import math

ERODE_RADIUS = 5
DILATE_RADII = (15, 50)
PIPELINE_SIZE = 512


def scale_radius(radius: int, shape: tuple[int, ...], size: int = PIPELINE_SIZE) -> int:
    """`radius` in pixels of a `size`-px side -> pixels of an image of `shape` (H, W), by its
    longer side as cxrseg.coverage scales masks, rounded half up: M-15 of a 2048-px radiograph is
    dilated by 60 px, the margin the study's 512-px masks get."""
    return int(math.floor(radius * max(shape[:2]) / size + 0.5))


def pipeline_radius(pixels: int, size: int) -> int | None:
    """The smallest radius of a PIPELINE_SIZE-px side that `scale_radius` makes `pixels` at a
    `size`-px side (cxrseg.predict's --erode / --dilate for masks of such images); None when no
    radius does (above PIPELINE_SIZE some pixel counts are skipped)."""
    return next((r for r in range(2 * (pixels + 1) * PIPELINE_SIZE // size + 2)
                 if scale_radius(r, (size, size)) == pixels), None)


def main(argv: list[str]) -> str:
    """Make's view of `pipeline_radius`: `--pipeline-radius PIXELS SIZE` prints the radius that
    cxrseg.predict takes for PIXELS at a SIZE-px side (a profile's ERODE at its CACHE_SIZE), or
    stops with a message naming both."""
    if len(argv) != 3 or argv[0] != "--pipeline-radius":
        raise SystemExit(f"usage: study_masks.py --pipeline-radius PIXELS SIZE; got {argv}")
    pixels, size = argv[1:]
    if not (pixels.isdigit() and size.isdigit() and int(size) > 0):
        raise SystemExit(f"ERODE={pixels!r}, CACHE_SIZE={size!r}: give whole numbers of pixels "
                         "(ERODE >= 0, CACHE_SIZE > 0)")
    radius = pipeline_radius(int(pixels), int(size))
    if radius is None:
        raise SystemExit(f"ERODE={pixels} at CACHE_SIZE={size}: no radius of a {PIPELINE_SIZE}-px "
                         f"side scales to {pixels} px at {size} px; choose another ERODE")
    return str(radius)


if __name__ == "__main__":
    import sys
    print(main(sys.argv[1:]))
