"""Apply a finished classifier run to a folder of radiographs -> one CSV: per image the
probabilities of the five findings and of No Finding, and the labels from the run's validation
thresholds.

    python -m cxrcls.predict --run work/demo/runs/densenet121_m15/split0 --images DIR \\
        --masks MASKS/m15 --out predictions.csv

Each image is prepared as the run's test images were: decoded by the toolkit's one reader and
resized to the side S of the image cache the run was trained on
(cxrstats.foundation.imageio.read_gray and cxrcls.cache.resize_gray, as cxrcls.cache.load_image; S
from that cache, WORK/cache/images.npy, whose completion record must be the one the run's done.json
names), made into the run's input (its
--eval-input, by default its --train-input: original, overlay or m<r>) and resized to its
--image-size (cxrcls.training.to_model_input). A masked input (m<r>, overlay) needs --masks: an
m<r>/ folder (raw/ for overlay) of a finished `make segment` (cxrseg.predict) output folder, whose
done_predict.json lists its masks (one per image, by file stem, of the image's own size; files it
does not list are not read), and whose sha256.csv, which done_predict.json vouches for, holds the
sha256 of each: a mask is checked against it as it is read (the bytes decoded are the bytes
hashed) and refused when it differs (edited, swapped, or left from another run), as is a folder
without sha256.csv (made by an older version: its masks cannot be checked, so make segment is run
again); each mask is resized to S by nearest neighbour. They must be masks
like the run's own (WORK/masks' records, the ones the run's done.json names): the same lung
extent, erosion and dilation radii in pixels of S (make segment's are in pixels of a 512-px side,
scaled to each image), holes filled or not and largest pieces kept alike; otherwise refused,
naming both records and the make segment flags that give the run's masks (`compare_masks`). Masks
of another segmenter (checkpoint, prior, threshold, prompting) are named on stderr, not refused:
new images are segmented with whichever segmenter one has. best.pt is read with
torch.load(weights_only=True) through cxrstats.foundation.checkpoints.load_checkpoint.

Output columns: `image`, `prob_<label>` for the six labels in the study's order (No Finding =
1 - max of the five, cxrstats.study.label_scores), then `label_<label>` (1 when the score is at
least the run's threshold for that label in thresholds.csv). A file that cannot be read is named on
stderr and left out; a missing mask or one of another size is refused, naming the image. The CSV
is written at the end, atomically; an existing --out is replaced only when it is such a CSV.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrcls.cache import resize_gray
from cxrcls.inputs import mask_file
from cxrcls.labels import FINDINGS, LABELS
from cxrcls.models import build_model
from cxrcls.train import DONE
from cxrcls.training import sigmoid, to_model_input
from cxrseg.pairs import image_files, read_mask
from cxrseg.records import POSTPROCESS, PREDICT, check_made_from_current_raw
from cxrseg.study_masks import PIPELINE_SIZE, pipeline_radius, scale_radius
from cxrstats.foundation.imageio import image_stem, read_gray
from cxrstats.foundation.input_names import mask_radius
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, IncompleteRunError, VouchedFiles,
                                        changed_identity, input_identity, load_npy, read_done,
                                        vouched_files, write_csv)
from cxrstats.foundation.progress import Progress
from cxrstats.study import label_scores
from cxrstats.foundation.checkpoints import load_checkpoint
from cxrstats.foundation.device import (add_precision_argument, precision_autocast, prepare_device,
                                        resolve_precision)
from cxrstats.results import (by_mask_bytes, changed_mask_files, input_record_path,
                              recorded_extent)
from cxrstats.runs import read_thresholds

COLUMNS = ["image", *(f"prob_{label}" for label in LABELS), *(f"label_{label}" for label in LABELS)]
# What shapes a mask the classifier sees, refused when it differs from the run's masks: erosion and
# dilation radii (pixels of the run's S-px images; None for raw masks) and the clean-up of
# cxrseg.anatomy.clean_mask. The segmenter that made the masks is named when it differs.
SHAPE = ("erode", "dilate", "fill_holes", "keep_largest")
NO_RADII = {"erode": None, "dilate": None}
SEGMENTER = ("checkpoint_id", "prior_sha256", "threshold", "prompt", "refine")
SEGMENT = "mask prediction (make segment)"   # the stage that makes --masks, in messages


@dataclass(frozen=True)
class MaskRecord:
    """Lung masks as their cxrseg.predict / cxrseg.postprocess records state them."""
    extent: str                   # lung extent: field, full, none or unrecorded
    shape: dict                   # SHAPE -> value (None: not recorded, or no radius for raw masks)
    segmenter: dict               # SEGMENTER -> value
    source: str                   # the record(s) read, for messages


def cleaning(*records: dict) -> dict:
    """The clean-up of masks cleaned by the stage of each record in turn (`fill_holes`,
    `keep_largest` arguments): holes filled when any stage filled them, the fewest largest pieces
    any stage kept (0: all); None when a record does not state it."""
    fills = [r.get("arguments", {}).get("fill_holes") for r in records]
    keeps = [r.get("arguments", {}).get("keep_largest") for r in records]
    return {"fill_holes": None if None in fills else any(fills),
            "keep_largest": None if None in keeps else min([k for k in keeps if k] or [0])}


def segmenter_of(record: dict) -> dict:
    """SEGMENTER of a cxrseg.predict record: its facts, and its prompting arguments."""
    arguments = record.get("arguments", {})
    return {name: record.get(name, arguments.get(name)) for name in SEGMENTER}


@dataclass
class FinishedRunModel:
    """What predicting with a finished run needs: its model and how its inputs were made."""
    folder: Path
    model: torch.nn.Module
    kind: str                     # input: original, overlay or m<r>
    cache_size: int               # S, the side of the cache it was trained on
    image_size: int | None        # --image-size (None: S)
    thickness: int                # --overlay-thickness
    thresholds: np.ndarray        # (6,) in LABELS order
    channels_last: bool
    precision: str                # fp32 or bf16, as resolved for this device
    masks: MaskRecord | None      # the masks it was trained on; None: no masks


def work_folders(folder: Path, record: dict) -> list[Path]:
    """Where the run's work folder may be: the one it lies in (runs/<setting>/split<k>), the one
    it recorded (--work). Absolute, not resolved: a `runs/` linked to another disk still lies in
    its work folder."""
    return list(dict.fromkeys([Path(os.path.abspath(folder)).parents[2],
                               Path(record["arguments"].get("work", ""))]))


def input_record(folder: Path, record: dict, name: str, what: str) -> tuple[Path, dict]:
    """(work folder, completion record) of the run's input `name` ("cache",
    "masks/done_postprocess.json": cxrstats.results.input_record_path) in one of its
    `work_folders`: the record that is the input the run's done.json names (its recorded
    identity: arguments hash, and content id where recorded; `changed_identity`; a mask record
    by the bytes of the mask files the run read instead of its arguments,
    `cxrstats.results.by_mask_bytes`), any when it names none; FileNotFoundError naming the run
    and the folders searched otherwise."""
    expected = record.get("inputs", {}).get(name)
    works = work_folders(folder, record)
    for work in works:
        path = input_record_path(work, name, f"{folder / DONE}: inputs")
        try:  # a mask record's facts, not its mask files, are read: none is hashed here
            found = read_done(path.parent, path.name, what=what,
                              files=() if name.startswith("masks/") else None)
        except IncompleteRunError:
            continue
        if expected is None or same_input(work, folder, record, name, expected, found):
            return work, found
    raise FileNotFoundError(f"{folder}: the {what} it was trained on ({name} recorded as "
                            f"{input_identity(expected)}) was not found in "
                            f"{', '.join(map(str, works))}")


def same_input(work: Path, folder: Path, record: dict, name: str, expected, found: dict) -> bool:
    """Whether `found`, the record of input `name` in `work`, is the one the run (`record`, its
    done.json) recorded as `expected`."""
    change = changed_identity(expected, found)
    mask_sha256 = record.get("mask_sha256")
    if change == "arguments" and by_mask_bytes(name, mask_sha256):
        return changed_mask_files(work, folder, mask_sha256) is None
    return change is None


def cache_size_of(folder: Path, record: dict) -> int:
    """The side S of the image cache the run was trained on: WORK/cache/images.npy of its
    `input_record` "cache"."""
    try:
        work, _ = input_record(folder, record, "cache", "image cache")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; give --cache-size S, the side of that cache") from None
    return int(load_npy(work / "cache" / "images.npy", mmap=True).shape[-1])


def trained_masks(folder: Path, record: dict, kind: str) -> MaskRecord | None:
    """What the masks of the run's input `kind` were, as their records in WORK/masks state it (the
    one the run's done.json names, and for m<r> the prediction it was made from); None for an
    input without masks."""
    if mask_file(kind) is None:
        return None
    _, done = mask_file(kind)
    work, found = input_record(folder, record, f"masks/{done}", "lung masks")
    masks = work / "masks"
    if done == PREDICT:                   # overlay: the raw masks as predicted
        return MaskRecord(recorded_extent(found), {**NO_RADII, **cleaning(found)},
                          segmenter_of(found), str(masks / PREDICT))
    check_made_from_current_raw(masks, found)
    predicted = read_done(masks, PREDICT, what="mask prediction")
    shape = {"erode": found["arguments"].get("erode"), "dilate": mask_radius(kind),
             **cleaning(predicted, found)}
    return MaskRecord(recorded_extent(found), shape, segmenter_of(predicted),
                      f"{masks / PREDICT}, {masks / POSTPROCESS}")


def open_run(folder: str | Path, device: torch.device, cache_size: int | None = None,
             precision: str = "fp32") -> FinishedRunModel:
    """A finished run (done.json) with best.pt loaded onto `device`, in eval mode."""
    folder = Path(folder)
    record = read_done(folder, DONE, what="training run (python -m cxrcls.train)")
    args = record["arguments"]
    checkpoint = load_checkpoint(folder / "best.pt")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{folder / 'best.pt'}: not a cxrcls.train checkpoint ({{'model': ...}})")
    if checkpoint.get("arch", args["arch"]) != args["arch"]:
        raise ValueError(f"{folder / 'best.pt'}: holds a {checkpoint['arch']}, but the run's "
                         f"record says {args['arch']}")
    model = build_model(args["arch"], "none")
    model.load_state_dict(checkpoint["model"])
    channels_last = not args.get("no_channels_last", False)
    model.to(device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    kind = args.get("eval_input") or args["train_input"]
    return FinishedRunModel(folder, model, kind, cache_size or cache_size_of(folder, record),
                            args.get("image_size"), args.get("overlay_thickness", 2),
                            read_thresholds(folder / "thresholds.csv"), channels_last,
                            precision, trained_masks(folder, record, kind))


@dataclass(frozen=True)
class MaskFolder:
    """The masks of a cxrseg.predict output folder that its records vouch for: stem -> the mask's
    path inside that folder (`m15/a.png`), each read through `vouched` (checked by content)."""
    files: dict[str, str]
    vouched: VouchedFiles

    def __contains__(self, stem: str) -> bool:
        return stem in self.files

    def path(self, stem: str) -> Path:
        return self.vouched.folder / self.files[stem]

    def read(self, stem: str) -> np.ndarray:
        """(H, W) 0/1 mask of `stem`, decoded from the bytes checked against sha256.csv (read
        once); IncompleteRunError naming the file when they are not the bytes make segment
        wrote."""
        return read_mask(self.path(stem), self.vouched.read_bytes(self.files[stem]))


def mask_to_cache(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) 0/1 mask -> (size, size) uint8 0/1, nearest neighbour (the image's resize is
    bilinear; a mask stays 0/1)."""
    if mask.shape == (size, size):
        return mask.astype(np.uint8)
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
    return (np.asarray(resized) > 127).astype(np.uint8)


def check_masks(images: dict[str, Path], masks: Path | None, run: FinishedRunModel
                ) -> MaskFolder | None:
    """The masks of the run's input (`mask_folder`), None for an input without
    masks; refused before any work when the input needs masks and none are given, or an image
    that can be read has no mask (an unreadable one is left out later anyway)."""
    kind = run.kind
    if mask_file(kind) is None:
        if masks is not None:
            raise ValueError(f"--masks: the run's input {kind!r} uses no masks; leave --masks out")
        return None
    if masks is None:
        raise ValueError(f"the run's input {kind!r} needs lung masks: give --masks, the "
                         f"{mask_folder_name(kind)}/ folder of `make segment` (or "
                         "cxrseg.predict) run on these images")
    found = mask_folder(masks, run)
    for stem, path in images.items():
        if stem not in found and readable(path):
            raise ValueError(f"--masks: no mask for image {path.name} (stem {stem!r}) in "
                             f"{masks.parent / PREDICT}; segment this folder again (make segment)")
    return found


def mask_folder_name(kind: str) -> str:
    """The folder of a cxrseg.predict output folder holding the masks of input `kind`: m<r> for
    m<r>, raw for overlay."""
    return "raw" if kind == "overlay" else kind


def mask_folder(folder: Path, run: FinishedRunModel) -> MaskFolder:
    """The masks of `folder`, the raw/ (overlay) or an m<r>/ folder of a finished cxrseg.predict
    output folder (its done_predict.json lists the files and vouches for sha256.csv, their
    sha256), whose masks are those the run was trained on (`compare_masks`); ValueError naming the
    folder otherwise. Files the record does not list are not read."""
    fits = folder.name == "raw" if run.kind == "overlay" else mask_radius(folder.name) is not None
    if not fits:
        raise ValueError(f"--masks {folder}: holds {folder.name}/ masks, but the run's input "
                         f"{run.kind!r} needs the {mask_folder_name(run.kind)}/ folder of a "
                         "cxrseg.predict output folder")
    try:  # sha256.csv is hashed by vouched_files, from the bytes it reads
        record = read_done(folder.parent, PREDICT, what=SEGMENT, files=())
        vouched = vouched_files(folder.parent, record, PREDICT, what=SEGMENT)
    except IncompleteRunError as error:
        raise ValueError(f"--masks {folder}: not the masks of a finished cxrseg.predict run "
                         f"({error})") from None
    listed = {image_stem(name): name for name in record.get("outputs", [])
              if isinstance(name, str) and Path(name).parent == Path(folder.name)}
    if not listed:
        raise ValueError(f"--masks {folder}: {folder.parent / PREDICT} lists no {folder.name}/ "
                         f"masks (radii made: {record.get('dilate')})")
    compare_masks(folder, segmented_masks(folder, record, run.cache_size), run.masks,
                  run.cache_size)
    return MaskFolder(listed, vouched)


def segmented_masks(folder: Path, record: dict, size: int) -> MaskRecord:
    """What the masks of `folder` (raw/ or m<r>/ of a cxrseg.predict output folder, `record` its
    done_predict.json) are for the run: radii in pixels of an image of the run's side `size`, as
    cxrseg.predict scales them (scale_radius)."""
    radius = mask_radius(folder.name)
    radii = NO_RADII if radius is None else {
        "erode": None if record.get("erode") is None else scale_radius(record["erode"],
                                                                       (size, size)),
        "dilate": scale_radius(radius, (size, size))}
    return MaskRecord(recorded_extent(record), {**radii, **cleaning(record)},
                      segmenter_of(record), str(folder.parent / PREDICT))


def compare_masks(folder: Path, found: MaskRecord, trained: MaskRecord, size: int) -> None:
    """The one comparison of the masks given (`found`) with those the run was trained on: another
    lung extent or SHAPE is refused, naming both records and both values; another segmenter is
    named on stderr (new images are segmented by whichever segmenter one has)."""
    if found.extent != trained.extent:
        raise ValueError(f"--masks {folder}: masks of lung extent {found.extent} "
                         f"({found.source}), but the run was trained on masks of extent "
                         f"{trained.extent} ({trained.source}); segment the images with a "
                         "segmenter of that extent")
    differ = [name for name in SHAPE if found.shape[name] != trained.shape[name]]
    if differ:
        raise ValueError(f"--masks {folder}: masks of {settings(found.shape, differ)} "
                         f"({found.source}), but the run was trained on masks of "
                         f"{settings(trained.shape, differ)} ({trained.source}); radii in "
                         f"pixels of the run's {size}-px images. {remedy(trained.shape, size)}")
    other = [name for name in SEGMENTER if found.segmenter[name] != trained.segmenter[name]]
    if other:
        print(f"predict: note: --masks {folder} were made by another segmenter than the run's "
              f"masks ({found.source} vs {trained.source}): "
              + "; ".join(f"{name} {found.segmenter[name]} vs {trained.segmenter[name]}"
                          for name in other), file=sys.stderr, flush=True)


def settings(shape: dict, names: list[str]) -> str:
    """`names` of a SHAPE dict in words: 'erode 5 px, fill_holes True'."""
    unit = {"erode": " px", "dilate": " px"}
    return ", ".join(f"{name} not recorded" if shape[name] is None
                     else f"{name} {shape[name]}{unit.get(name, '')}" for name in names)


def remedy(shape: dict, size: int) -> str:
    """What to do about masks unlike the run's (of `shape`, for its images of side `size`): the
    cxrseg.predict (make segment) flags that make such masks, and the folder to give."""
    raw = shape["dilate"] is None
    missing = [name for name in SHAPE if shape[name] is None and not (raw and name in NO_RADII)]
    if missing:
        return (f"The run's mask records do not state {', '.join(missing)}: no masks can be "
                "matched to them")
    flags = ["--fill-holes" if shape["fill_holes"] else "--no-fill-holes",
             f"--keep-largest {shape['keep_largest']}"]
    if raw:
        return f"Segment the images again with {' '.join(flags)} and give its raw/ folder"
    erode, dilate = pipeline_radius(shape["erode"], size), pipeline_radius(shape["dilate"], size)
    if erode is None or dilate is None:
        return (f"cxrseg.predict's radii (pixels of a {PIPELINE_SIZE}-px side, scaled to each "
                f"image) cannot make these for {size}-px images")
    return (f"Segment the images again with --erode {erode} --dilate {dilate} {' '.join(flags)} "
            f"(make segment SEGMENT_ARGS=...) and give its m{dilate}/ folder")


def readable(path: Path) -> bool:
    try:
        read_gray(path)
    except (ValueError, OSError):
        return False
    return True


class MaskMismatch(ValueError):
    """A mask that does not fit its image: refused, not skipped like an unreadable image."""


def prepared(path: Path, masks: MaskFolder | None,
             size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One image as the cache holds it, (S, S) uint8, and its mask from `masks` as (S, S) 0/1,
    or None without masks; ValueError for an unreadable image, MaskMismatch for a missing mask or
    one of another size, IncompleteRunError for a mask not as make segment wrote it."""
    gray = read_gray(path)
    mask = None
    if masks is not None:
        stem = image_stem(path)
        if stem not in masks:
            raise MaskMismatch(f"--masks: no mask for image {path.name}")
        mask_path = masks.path(stem)
        mask = masks.read(stem)
        if mask.shape != gray.shape:
            raise MaskMismatch(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs "
                               f"from image {path} size {gray.shape[1]}x{gray.shape[0]}; use "
                               "masks made for these images")
        mask = mask_to_cache(mask, size)
    return resize_gray(gray, size), mask


@torch.no_grad()
def predict_batch(run: FinishedRunModel, images: list[np.ndarray], masks: list | None,
                  device: torch.device) -> np.ndarray:
    """(B, 5) float32 probabilities of (S, S) uint8 images (and masks), as training predicts."""
    x = to_model_input(np.stack(images), None if masks is None else np.stack(masks), run.kind,
                       device, run.image_size, run.thickness, run.channels_last)
    with precision_autocast(device, run.precision):
        logits = run.model(x).float().cpu().numpy()
    return sigmoid(logits)


def predict_folder(run: FinishedRunModel, images: dict[str, Path], masks: MaskFolder | None,
                   device: torch.device, batch_size: int) -> tuple[list[str], np.ndarray]:
    """(image names, (n, 5) probabilities) of the readable images, in file order; unreadable
    files are named on stderr."""
    names, probs, batch = [], [], []
    progress = Progress(len(images), "predict", "files")
    for i, path in enumerate(images.values(), start=1):
        try:
            batch.append((path.name, *prepared(path, masks, run.cache_size)))
        except MaskMismatch:
            raise
        except (ValueError, OSError) as error:
            print(f"predict: skipped {path}: {str(error).removeprefix(f'{path}: ')}",
                  file=sys.stderr, flush=True)
        if batch and (len(batch) == batch_size or i == len(images)):
            probs.append(predict_batch(run, [b[1] for b in batch],
                                       None if masks is None else [b[2] for b in batch], device))
            names += [b[0] for b in batch]
            batch = []
        progress.update(i)
    if not names:
        raise ValueError(f"none of the {len(images)} image files could be read")
    return names, np.concatenate(probs)


def check_out(out: Path) -> None:
    """Refuse an --out that is a folder, or a file this command did not write (its header)."""
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give a file name such as predictions.csv")
    if out.exists():
        with open(out, encoding="utf-8", errors="replace") as f:
            header = f.readline().strip()
        if header != ",".join(COLUMNS):
            raise ValueError(f"--out {out}: exists and is not a predictions file of "
                             "cxrcls.predict; nothing was changed. Give a new file name")


def rows_of(names: list[str], probs: np.ndarray, thresholds: np.ndarray) -> list[list]:
    """CSV rows: image, the six scores, the six 0/1 labels (score >= threshold)."""
    scores = label_scores(probs)
    labels = (scores >= thresholds).astype(int)
    return [[name, *(f"{v:.9g}" for v in s), *lab] for name, s, lab in zip(names, scores, labels)]


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrcls.predict", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  make segment IMAGES=~/my_cxrs OUT=~/my_masks\n"
               "  python -m cxrcls.predict --run work/demo/runs/densenet121_m15/split0 "
               "--images ~/my_cxrs --masks ~/my_masks/m15 --out predictions.csv")
    parser.add_argument("--run", required=True,
                        help="a finished run folder (WORK/runs/<arch>_<input>/split<k>)")
    parser.add_argument("--images", required=True, help="folder of radiographs")
    parser.add_argument("--masks", default=None,
                        help="folder of lung masks by image stem, for a masked input (make "
                             "segment's OUT/m<r> for an m<r> run, OUT/raw for overlay)")
    parser.add_argument("--out", required=True, help="the CSV to write (predictions.csv)")
    parser.add_argument("--cache-size", type=int_range(1), default=None,
                        help="side S of the cache the run was trained on (default: read from "
                             "that cache)")
    parser.add_argument("--batch-size", type=int_range(1), default=16, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:i")
    add_precision_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        check_out(out)
        device = prepare_device(args.device)
        run = open_run(args.run, device, args.cache_size,
                       resolve_precision(args.precision, device))
        images = image_files(Path(args.images))
        masks = check_masks(images, Path(args.masks) if args.masks else None, run)
        names, probs = predict_folder(run, images, masks, device, args.batch_size)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    write_csv(out, COLUMNS, rows_of(names, probs, run.thresholds))
    positives = ", ".join(f"{label} {n}" for label, n in
                          zip(LABELS, (label_scores(probs) >= run.thresholds).sum(0)))
    print(f"predict: {len(names)} images with {run.folder} ({run.kind}, {len(FINDINGS)} findings) "
          f"-> {out}; positive: {positives}")


if __name__ == "__main__":
    main()
