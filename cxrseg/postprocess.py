"""Raw lung masks -> eroded (disk r=5), M-15 and M-50 (dilated by r=15, 50) masks, and qc.csv.

Radii are in pixels at the masks' resolution. The quality check records each raw mask's area
fraction and connected components and flags implausible masks. Fallback, stated so that no image is
silently dropped: an empty raw mask (or one that erosion empties) is replaced by the full image
(all ones) in eroded/M-15/M-50, so the classifier sees that image unmasked; qc.csv says so in
`action`. Other flagged masks are kept as predicted (`action` = kept) for review.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cxrstats.fileio import read_csv, save_npy, write_csv, write_run_json

from .anatomy import add_anatomy_arguments, clean_mask
from .morphology import dilate_disks, erode_disk
from .shape_qc import SHAPE_COLUMNS, ShapePrior, shape_qc_rows

QC_COLUMNS = ["row", "image", "area_fraction", "components", "flag", "action"]


@dataclass(frozen=True)
class QCLimits:
    """What counts as plausible for a two-lung mask (fractions of the image area)."""
    min_area: float = 0.10
    max_area: float = 0.60
    large_component: float = 0.01   # a component counts as "large" above this fraction of the image
    max_large_components: int = 2


def quality_flags(mask: np.ndarray, limits: QCLimits = QCLimits()) -> tuple[float, int, list[str]]:
    """(area fraction, number of 8-connected components, flags) for one (H, W) 0/1 mask.

    Flags: `empty`, `area_low`, `area_high`, `fragmented` (more than `max_large_components`
    components larger than `large_component` of the image). No flags means plausible.
    """
    fg = np.asarray(mask).astype(bool)
    area = float(fg.mean())
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return area, 0, ["empty"]
    flags = []
    if area < limits.min_area:
        flags.append("area_low")
    if area > limits.max_area:
        flags.append("area_high")
    sizes = np.bincount(labels.ravel())[1:]
    if int((sizes > limits.large_component * fg.size).sum()) > limits.max_large_components:
        flags.append("fragmented")
    return area, int(n), flags


def process_mask(raw: np.ndarray, erode: int, dilate: list[int]) -> tuple[np.ndarray, list[np.ndarray], str]:
    """One raw mask -> (eroded, [dilated per radius], action), applying the empty-mask fallback."""
    if not raw.any():
        full = np.ones(raw.shape, np.uint8)
        return full, [full.copy() for _ in dilate], "fallback_full_image"
    eroded = erode_disk(raw, erode)
    if not eroded.any():
        full = np.ones(raw.shape, np.uint8)
        return full, [full.copy() for _ in dilate], "fallback_full_image_after_erosion"
    return eroded, dilate_disks(eroded, dilate), "kept"


def postprocess_stack(raw: np.ndarray, names: list[str], erode: int = 5, dilate: tuple[int, ...] = (15, 50),
                      limits: QCLimits = QCLimits(), progress_every: float = 10.0):
    """(N, H, W) 0/1 masks -> eroded (N, H, W), {radius: (N, H, W)} uint8 0/1, and qc rows."""
    eroded = np.zeros(raw.shape, np.uint8)
    dilated = {r: np.zeros(raw.shape, np.uint8) for r in dilate}
    qc_rows = []
    start = last = time.time()
    for i in range(len(raw)):
        area, components, flags = quality_flags(raw[i], limits)
        e, ds, action = process_mask(np.asarray(raw[i]), erode, list(dilate))
        eroded[i] = e
        for r, d in zip(dilate, ds):
            dilated[r][i] = d
        if action == "fallback_full_image_after_erosion":
            flags.append("empty_after_erosion")
        qc_rows.append((i, names[i], f"{area:.5f}", components, ";".join(flags) or "ok", action))
        if time.time() - last > progress_every:
            last = time.time()
            rate = (i + 1) / (last - start)
            print(f"postprocess: {i + 1}/{len(raw)} masks, {rate:.1f}/s, ETA {(len(raw) - i - 1) / rate:.0f} s")
    return eroded, dilated, qc_rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxrseg.postprocess", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.postprocess --masks work/masks/raw.npy "
               "--index work/cache/index.csv --erode 5 --dilate 15 50 --out work/masks/")
    parser.add_argument("--masks", required=True, help="raw masks (N, H, W) uint8 0/1 .npy")
    parser.add_argument("--index", required=True, help="CSV `row, image` naming the mask rows")
    parser.add_argument("--erode", type=int, default=5, help="erosion disk radius in pixels (default 5)")
    parser.add_argument("--dilate", type=int, nargs="+", default=[15, 50],
                        help="dilation radii in pixels; writes m<r>.npy for each (default 15 50)")
    parser.add_argument("--min-area", type=float, default=0.10, help="QC: flag area fraction below")
    parser.add_argument("--max-area", type=float, default=0.60, help="QC: flag area fraction above")
    parser.add_argument("--max-components", type=int, default=2,
                        help="QC: flag more large components than this")
    add_anatomy_arguments(parser)
    parser.add_argument("--shape-prior", default=None,
                        help="seg/shape_prior.json: also flag shapes implausible against the "
                             "training masks (needs --images)")
    parser.add_argument("--images", default=None,
                        help="the (N, H, W) image stack the masks were predicted on "
                             "(cache/images.npy)")
    parser.add_argument("--out", required=True, help="output folder (masks/)")
    parser.add_argument("--seed", type=int, default=0, help="unused (deterministic); kept for uniformity")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start = time.time()
    out = Path(args.out)
    try:
        if not Path(args.masks).is_file():
            raise FileNotFoundError(f"{args.masks}: file not found")
        raw = np.load(args.masks, allow_pickle=False)
        if raw.ndim != 3:
            raise ValueError(f"{args.masks}: expected (N, H, W) masks, got shape {raw.shape}")
        if raw.size and raw.max() > 1:
            raise ValueError(f"{args.masks}: masks must be 0/1, found value {raw.max()}")
        rows = read_csv(args.index, required=["row", "image"])
        if len(rows) != len(raw):
            raise ValueError(f"{args.index} has {len(rows)} rows but {args.masks} has {len(raw)} masks")
        if args.erode < 0 or min(args.dilate) < 0:
            raise ValueError("radii must be non-negative")
        shape_prior = ShapePrior.load(args.shape_prior) if args.shape_prior else None
        stack = None
        if shape_prior is not None:
            if not args.images:
                raise ValueError("--shape-prior needs --images (the stack the masks were "
                                 "predicted on)")
            stack = np.load(args.images, mmap_mode="r", allow_pickle=False)
            if stack.shape != raw.shape:
                raise ValueError(f"{args.images} has shape {stack.shape} but {args.masks} has "
                                 f"{raw.shape}")
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    limits = QCLimits(min_area=args.min_area, max_area=args.max_area,
                      max_large_components=args.max_components)
    if len(raw) and (args.fill_holes or args.keep_largest):
        raw = np.stack([clean_mask(m, args.fill_holes, args.keep_largest) for m in raw])
    eroded, dilated, qc_rows = postprocess_stack(raw, [r["image"] for r in rows], args.erode,
                                                 tuple(args.dilate), limits)
    save_npy(out / "eroded.npy", eroded)
    for r, masks in dilated.items():
        save_npy(out / f"m{r}.npy", masks)
    columns = QC_COLUMNS
    if shape_prior is not None:
        values, shape = shape_qc_rows(stack, raw, shape_prior)
        columns = QC_COLUMNS + SHAPE_COLUMNS
        qc_rows = [(*row[:4], ";".join(([] if row[4] == "ok" else [row[4]]) + f) or "ok", row[5],
                    *v) for row, v, f in zip(qc_rows, values, shape)]
    write_csv(out / "qc.csv", columns, qc_rows)
    flagged = sum(row[4] != "ok" for row in qc_rows)
    fallbacks = sum(row[5] != "kept" for row in qc_rows)
    seconds = time.time() - start
    print(f"postprocess: {len(raw)} masks in {seconds:.1f} s; {flagged} flagged, {fallbacks} fallback(s) "
          f"-> {out}/eroded.npy, " + ", ".join(f"m{r}.npy" for r in args.dilate) + ", qc.csv")
    write_run_json(out, args, name="run_postprocess.json", seconds=seconds, flagged=flagged, fallbacks=fallbacks)


if __name__ == "__main__":
    main()
