"""Raw lung masks -> eroded (disk r=5), M-15 and M-50 (dilated by r=15, 50) masks, and qc.csv.

Radii are in pixels at the masks' resolution. The quality check records each raw mask's area
fraction and connected components and flags implausible masks. Fallback, stated so that no image is
silently dropped: an empty raw mask (or one that erosion empties) is replaced by the full image
(all ones) in eroded/M-15/M-50, so the classifier sees that image unmasked; qc.csv says so in
`action`. Other flagged masks are kept as predicted (`action` = kept) for review.

`--dilate R [R ...]` writes m<R>.npy for each distinct radius R >= 0 from one distance transform
(m0 = the eroded mask itself). Reads raw.npy only with its done_predict.json and only as exact 0/1
values; writes done_postprocess.json last, with the masks' lung extent (fact `extent`, copied
from done_predict.json; `unrecorded` when that record has none), `raw_sha256`, the sha256 of
the raw.npy read (refused when done_predict.json records another), and the sha256 of each file it
wrote but run_postprocess.json (`cxrstats.foundation.fileio.content_facts`, hashed once, here):
readers of the post-processed masks refuse them once predict has written other raw masks
(cxrseg.records.require_postprocessed), and refuse a mask file or qc.csv whose bytes are not those
(edited by hand, cut short, copied from another run), each hashing only the files it reads.

`--shape-prior` (seg/shape_prior.json) is read only with the bytes done_finetune.json beside it
vouches for, where there is one (`read_shape_prior`).

An image that cxrseg.predict found degenerate (too small or featureless to hold a radiograph,
cxrseg.degenerate; listed in done_predict.json) gets the flag `degenerate_image` in qc.csv and its
reason in the `note` column; its masks are made as for any other image.
"""
from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.extent import UNRECORDED
from cxrstats.foundation.fileio import (USER_ERRORS, IncompleteRunError, begin_run, content_facts,
                                        file_sha256, load_npy, read_csv, read_done, save_npy,
                                        write_csv, write_done, write_run_json)
from cxrstats.foundation.progress import Progress

from .anatomy import add_anatomy_arguments, clean_mask
from .morphology import dilate_disks, erode_disk
from .records import FINETUNE, FINETUNE_STAGE, POSTPROCESS, PREDICT, require_finished
from .shape_qc import SHAPE_COLUMNS, ShapePrior, shape_qc_rows
from .study_masks import DILATE_RADII, ERODE_RADIUS

QC_COLUMNS = ["row", "image", "area_fraction", "components", "flag", "action"]
NOTE_COLUMN = "note"   # the last column of qc.csv: why an image was flagged, in words
DEGENERATE_FLAG = "degenerate_image"


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


def process_mask(raw: np.ndarray, erode: int,
                 dilate: list[int]) -> tuple[np.ndarray, list[np.ndarray], str]:
    """One raw mask -> (eroded, [dilated per radius], action), applying the empty-mask fallback."""
    if not raw.any():
        full = np.ones(raw.shape, np.uint8)
        return full, [full.copy() for _ in dilate], "fallback_full_image"
    eroded = erode_disk(raw, erode)
    if not eroded.any():
        full = np.ones(raw.shape, np.uint8)
        return full, [full.copy() for _ in dilate], "fallback_full_image_after_erosion"
    return eroded, dilate_disks(eroded, dilate), "kept"


def mask_row(row: int, name: str, raw: np.ndarray, erode: int, dilate, limits: QCLimits,
             degenerate: str | None = None) -> tuple[np.ndarray, list[np.ndarray], tuple]:
    """One (H, W) 0/1 raw mask -> (eroded, [dilated per radius of `dilate`], its qc row:
    QC_COLUMNS and the note). `degenerate`: why predict found the image degenerate, if it did."""
    area, components, flags = quality_flags(raw, limits)
    eroded, dilated, action = process_mask(np.asarray(raw), erode, list(dilate))
    if action == "fallback_full_image_after_erosion":
        flags.append("empty_after_erosion")
    note = ""
    if degenerate:
        flags.append(DEGENERATE_FLAG)
        note = f"degenerate image: {degenerate}"
    return eroded, dilated, (row, name, f"{area:.5f}", components, ";".join(flags) or "ok",
                             action, note)


def with_shape(row: tuple, values: list[str], flags: list[str]) -> tuple:
    """A qc row (QC_COLUMNS and the note) with the shape QC (cxrseg.shape_qc) merged in:
    QC_COLUMNS, SHAPE_COLUMNS, the note; the shape flags join the row's flags."""
    flag = ";".join(([] if row[4] == "ok" else [row[4]]) + flags) or "ok"
    return (*row[:4], flag, row[5], *values, row[6])


def postprocess_stack(raw: np.ndarray, names: list[str], erode: int = ERODE_RADIUS,
                      dilate: tuple[int, ...] = DILATE_RADII, limits: QCLimits = QCLimits(),
                      progress_every: float = 10.0, degenerate: dict[int, str] | None = None):
    """(N, H, W) 0/1 masks -> eroded (N, H, W), {radius: (N, H, W)} uint8 0/1, and qc rows
    (QC_COLUMNS and the note). `degenerate`: {row: reason} of the images predict found
    degenerate, flagged with DEGENERATE_FLAG."""
    degenerate = degenerate or {}
    eroded = np.zeros(raw.shape, np.uint8)
    dilated = {r: np.zeros(raw.shape, np.uint8) for r in dilate}
    qc_rows = []
    progress = Progress(len(raw), "postprocess", "masks", progress_every)
    for i in range(len(raw)):
        e, ds, row = mask_row(i, names[i], raw[i], erode, dilate, limits, degenerate.get(i))
        eroded[i] = e
        for r, d in zip(dilate, ds):
            dilated[r][i] = d
        qc_rows.append(row)
        progress.update(i + 1)
    return eroded, dilated, qc_rows


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrseg.postprocess", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.postprocess --masks work/demo/masks/raw.npy "
               "--index work/demo/cache/index.csv --erode 5 --dilate 15 50 "
               "--out work/by-hand/masks/")
    parser.add_argument("--masks", required=True, help="raw masks (N, H, W) uint8 0/1 .npy")
    parser.add_argument("--index", required=True, help="CSV `row, image` naming the mask rows")
    parser.add_argument("--erode", type=int_range(0), default=ERODE_RADIUS,
                        help="erosion disk radius in pixels (default %(default)s)")
    parser.add_argument("--dilate", type=int_range(0), nargs="+", default=list(DILATE_RADII),
                        help="dilation radii in pixels (distinct, >= 0; 0 = the eroded mask "
                             "itself); writes m<r>.npy for each (default 15 50)")
    parser.add_argument("--min-area", type=float_range(0, 1), default=0.10,
                        help="QC: flag area fraction below")
    parser.add_argument("--max-area", type=float_range(0, 1), default=0.60,
                        help="QC: flag area fraction above")
    parser.add_argument("--max-components", type=int_range(1), default=2,
                        help="QC: flag more large components than this")
    add_anatomy_arguments(parser)
    parser.add_argument("--shape-prior", default=None,
                        help="seg/shape_prior.json: also flag shapes implausible against the "
                             "training masks (needs --images)")
    parser.add_argument("--images", default=None,
                        help="the (N, H, W) image stack the masks were predicted on "
                             "(cache/images.npy)")
    parser.add_argument("--out", required=True, help="output folder (masks/)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="unused (deterministic); kept for uniformity")
    return parser


def read_raw_masks(path: str | os.PathLike) -> np.ndarray:
    """masks/raw.npy -> (N, H, W) masks; ValueError naming the file unless the values are exactly
    0/1 of an integer or bool dtype (-1/0 or 0/255 masks would otherwise be inverted or
    mistaken)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    raw = load_npy(path)
    if raw.ndim != 3:
        raise ValueError(f"{path}: expected (N, H, W) masks, got shape {raw.shape}")
    if raw.dtype != bool and not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"{path}: masks must be 0/1 of an integer or bool dtype, got dtype "
                         f"{raw.dtype}")
    if raw.size and (raw.min() < 0 or raw.max() > 1):
        raise ValueError(f"{path}: masks must be exactly 0/1, found values "
                         f"{raw.min()}..{raw.max()}")
    return raw


def check_same_images(rows: list[dict[str, str]], index, predicted_index: Path) -> None:
    """`--index` must name rows 0..N-1 in order and, row by row, the images that cxrseg.predict
    segmented (its index.csv beside raw.npy), so that no mask is paired with another image."""
    for i, row in enumerate(rows):
        if row["row"].strip() != str(i):
            raise ValueError(f"{index}: row {i} has row={row['row']!r}; rows must be 0..N-1 in "
                             "order")
    if not predicted_index.is_file() or predicted_index.resolve() == Path(index).resolve():
        return
    predicted = [r["image"] for r in read_csv(predicted_index, required=["image"])]
    if len(predicted) != len(rows):
        raise ValueError(f"{predicted_index} (the images segmented) has {len(predicted)} rows but "
                         f"{index} has {len(rows)}; re-run cxrseg.predict on the current images")
    differ = [i for i, (a, b) in enumerate(zip(predicted, (r["image"] for r in rows))) if a != b]
    if differ:
        i = differ[0]
        raise ValueError(f"{index} and {predicted_index} (the images segmented) differ in "
                         f"{len(differ)} row(s), first row {i}: {rows[i]['image']!r} vs "
                         f"{predicted[i]!r}; re-run cxrseg.predict on the current images")


def read_shape_prior(path: str | os.PathLike) -> ShapePrior:
    """The shape prior of `--shape-prior`; one beside a done_finetune.json (a segmenter folder,
    seg/) only when that record lists it and vouches for its bytes (`require_finished`). A file
    of the user's own, with no record beside it, is read as given."""
    path = Path(path)
    if (path.parent / FINETUNE).is_file():
        require_finished(path, FINETUNE, FINETUNE_STAGE)
    return ShapePrior.load(path)


def check_radii(dilate: list[int]) -> None:
    """Refuse a dilation radius given twice (argparse has checked that each is an integer >= 0)."""
    repeated = sorted({r for r in dilate if dilate.count(r) > 1})
    if repeated:
        raise ValueError(f"--dilate lists radius {repeated} more than once; give each radius once")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start = time.time()
    out = Path(args.out)
    try:
        check_radii(args.dilate)
        if args.min_area >= args.max_area:
            raise ValueError(f"--min-area {args.min_area} must be below --max-area {args.max_area}")
        predicted = require_finished(args.masks, PREDICT, "cxrseg.predict")
        raw_sha256 = file_sha256(args.masks)
        if predicted.get("raw_sha256", raw_sha256) != raw_sha256:
            raise ValueError(f"{args.masks}: not the file {PREDICT} vouches for (its sha256 "
                             "differs from the record's raw_sha256); re-run cxrseg.predict")
        degenerate = {int(d["row"]): d["reason"] for d in predicted.get("degenerate", [])}
        raw = read_raw_masks(args.masks)
        rows = read_csv(args.index, required=["row", "image"])
        if len(rows) != len(raw):
            raise ValueError(f"{args.index} has {len(rows)} rows but {args.masks} has "
                             f"{len(raw)} masks")
        check_same_images(rows, args.index, Path(args.masks).parent / "index.csv")
        shape_prior = read_shape_prior(args.shape_prior) if args.shape_prior else None
        stack = None
        if shape_prior is not None:
            if not args.images:
                raise ValueError("--shape-prior needs --images (the stack the masks were "
                                 "predicted on)")
            stack = load_npy(args.images, mmap=True)
            if stack.shape != raw.shape:
                raise ValueError(f"{args.images} has shape {stack.shape} but {args.masks} has "
                                 f"{raw.shape}")
        outputs = ["eroded.npy", *(f"m{r}.npy" for r in args.dilate), "qc.csv",
                   "run_postprocess.json"]
        begin_run(out, outputs + _previous_outputs(out), done=POSTPROCESS)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    limits = QCLimits(min_area=args.min_area, max_area=args.max_area,
                      max_large_components=args.max_components)
    if len(raw) and (args.fill_holes or args.keep_largest):
        raw = np.stack([clean_mask(m, args.fill_holes, args.keep_largest) for m in raw])
    eroded, dilated, qc_rows = postprocess_stack(raw, [r["image"] for r in rows], args.erode,
                                                 tuple(args.dilate), limits,
                                                 degenerate=degenerate)
    save_npy(out / "eroded.npy", eroded)
    for r, masks in dilated.items():
        save_npy(out / f"m{r}.npy", masks)
    columns = QC_COLUMNS + [NOTE_COLUMN]
    if shape_prior is not None:
        values, shape = shape_qc_rows(stack, raw, shape_prior)
        columns = QC_COLUMNS + SHAPE_COLUMNS + [NOTE_COLUMN]
        qc_rows = [with_shape(row, v, f) for row, v, f in zip(qc_rows, values, shape)]
    write_csv(out / "qc.csv", columns, qc_rows)
    flagged = sum(row[4] != "ok" for row in qc_rows)
    fallbacks = sum(row[5] != "kept" for row in qc_rows)
    seconds = time.time() - start
    print(f"postprocess: {len(raw)} masks in {seconds:.1f} s; {flagged} flagged, "
          f"{fallbacks} fallback(s) -> {out}/eroded.npy, "
          + ", ".join(f"m{r}.npy" for r in args.dilate) + ", qc.csv")
    write_run_json(out, args, name="run_postprocess.json", seconds=seconds, flagged=flagged,
                   fallbacks=fallbacks)
    write_done(out, args, outputs, done=POSTPROCESS, flagged=flagged, fallbacks=fallbacks,
               extent=predicted.get("extent", UNRECORDED), raw_sha256=raw_sha256,
               **content_facts(out, [name for name in outputs if name != "run_postprocess.json"]))


def _previous_outputs(folder: Path) -> list[str]:
    """The m<r>.npy files the previous finished run in `folder` wrote (other radii than this
    run's would otherwise stay beside the new masks); only plain m<r>.npy names are taken. No
    file is hashed (`files=()`): the record's list is all this needs, even beside an edited mask."""
    try:
        outputs = read_done(folder, POSTPROCESS, files=()).get("outputs", [])
    except IncompleteRunError:
        return []
    return [name for name in outputs if isinstance(name, str) and re.fullmatch(r"m\d+\.npy", name)]


if __name__ == "__main__":
    main()
