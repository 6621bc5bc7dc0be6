"""cxrseg.predict on a folder of radiographs with a folder --out: per image the raw lung mask, the
study's m<r> masks (M-15, M-50) at the image's own size and, on request, the masked images and a
boundary overlay for viewing; one qc.csv.

Layout of --out (docs/DESIGN.md, "Masks of a folder of images"):
  raw/<stem>.png          the lung mask, 0/255, the image's size
  m<r>/<stem>.png         eroded by --erode (5) then dilated by r (15, 50), the radii in pixels of
                          the pipeline's 512-px images scaled to the image's longer side
                          (cxrseg.study_masks.scale_radius), by cxrseg.postprocess's rule (an
                          empty mask falls back to the whole image)
  masked_m<r>/<stem>.png  --masked: the image, everything outside m<r> set to 0
  overlay/<stem>.png      --overlay: RGB, the image with the boundaries of the lung mask (green)
                          and of each m<r> (yellow, orange, red, ...)
  qc.csv                  cxrseg.postprocess's QC per image (and the shape QC when the segmenter
                          folder has shape_prior.json), the image's size and the radii used
  sha256.csv              `file, sha256` of every PNG above, hashed from the bytes as written
                          (fileio.FILE_HASHES); done_predict.json vouches for it by content, and
                          readers (cxrcls.predict --masks) check each mask they read against it
  index.csv, prompts.csv, run_predict.json, done_predict.json (written last)

Before it writes a mask the run lists every file it will write in started_predict.json (removed
once done_predict.json is written); a later run first removes the files listed by the folder's
done_predict.json and started_predict.json, so a killed run's masks never mix with the next run's.

Images of any size and format cxrstats.foundation.imageio reads (PNG, JPEG, 16-bit PNG, BMP, TIFF,
DICOM) may sit side by side; they are read one batch at a time, so memory does not grow with the
folder. A file that cannot be read (corrupt, a compressed DICOM without its decoder) is named on
stderr with the reason and skipped; done_predict.json lists it under `skipped`.
"""
from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cxrstats.foundation.progress import Progress
from cxrstats.foundation.fileio import (FILE_HASHES, begin_run, claim_folder, content_facts,
                                        file_sha256, write_csv, write_done, write_file_hashes,
                                        write_run_json)

from .anatomy import clean_mask
from .pairs import image_files
from .degenerate import degenerate_reason
from .engine import checkpoint_extent, checkpoint_id, encode, load_model, segment
from cxrstats.foundation.imageio import image_stem, read_gray, write_png
from .morphology import boundary, cutout
from .postprocess import NOTE_COLUMN, QC_COLUMNS, QCLimits, check_radii, mask_row, with_shape
from .predict import add_image, check_empty, refuse_overlap, warn_degenerate
from .prompts import Prior
from .records import (PREDICT, PREDICT_STARTED, PROMPT_COLUMNS, index_rows_sha256,
                      previous_predict_outputs, write_predict_started)
from .segmenter import Resolved
from .shape_qc import SHAPE_COLUMNS, ShapePrior, shape_qc_rows
from .study_masks import DILATE_RADII, ERODE_RADIUS, scale_radius

LUNG_COLOUR = (0, 255, 0)
MASK_COLOURS = ((255, 255, 0), (255, 128, 0), (255, 0, 0), (255, 0, 255), (0, 255, 255))
OVERLAY_THICKNESS = 2   # boundary width in pixels of a 512-px image, scaled like the radii
FIXED_OUTPUTS = ("qc.csv", "index.csv", "prompts.csv", FILE_HASHES, "run_predict.json")


class FolderRun:
    """One prediction into a folder: settings, the files it has written so far and its QC."""

    def __init__(self, args, resolved: Resolved, out: Path):
        self.args, self.out = args, out
        self.erode = ERODE_RADIUS if args.erode is None else args.erode
        self.dilate = list(DILATE_RADII if args.dilate is None else args.dilate)
        self.shape_prior = ShapePrior.load(resolved.shape_prior) if resolved.shape_prior else None
        self.limits = QCLimits()
        self.outputs: list[str] = []
        self.hashes: dict[str, str] = {}   # each PNG written -> sha256 of its bytes
        self.qc_rows: list[tuple] = []
        self.index_rows: list[tuple] = []
        self.prompt_rows: list[list] = []
        self.empty: list[str] = []
        self.degenerate: list[dict] = []
        self.skipped: list[dict] = []
        self.digest = hashlib.sha256()

    @property
    def qc_columns(self) -> list[str]:
        shape = SHAPE_COLUMNS if self.shape_prior else []
        return [*QC_COLUMNS, *shape, "width", "height", "erode_px",
                *(f"m{r}_px" for r in self.dilate), NOTE_COLUMN]

    def folders(self) -> list[str]:
        """The sub-folders this run writes, in the order of the layout."""
        masked = [f"masked_m{r}" for r in self.dilate] if self.args.masked else []
        return ["raw", *(f"m{r}" for r in self.dilate), *masked,
                *(["overlay"] if self.args.overlay else [])]

    def save_png(self, folder: str, stem: str, array: np.ndarray) -> None:
        name = f"{folder}/{stem}.png"
        self.hashes[name] = write_png(self.out / name, array)
        self.outputs.append(name)

    def add(self, name: str, image: np.ndarray, raw: np.ndarray, first_box, box) -> None:
        """Write one image's masks (and views) and record its QC, index and prompt rows."""
        row, stem = len(self.index_rows), image_stem(name)
        reason = degenerate_reason(image)
        if reason:
            self.degenerate.append({"row": row, "image": name, "reason": reason})
        if not raw.any():
            self.empty.append(name)
        erode = scale_radius(self.erode, image.shape)
        radii = [scale_radius(r, image.shape) for r in self.dilate]
        _, dilated, qc = mask_row(row, name, raw, erode, radii, self.limits, reason)
        if self.shape_prior is not None:
            values, flags = shape_qc_rows([image], raw[None], self.shape_prior)
            qc = with_shape(qc, values[0], flags[0])
        h, w = image.shape
        self.qc_rows.append((*qc[:-1], w, h, erode, *radii, qc[-1]))
        self.save_png("raw", stem, raw * 255)
        for r, mask in zip(self.dilate, dilated):
            self.save_png(f"m{r}", stem, mask * 255)
            if self.args.masked:
                self.save_png(f"masked_m{r}", stem, cutout(image, mask))
        if self.args.overlay:
            self.save_png("overlay", stem, overlay_view(image, raw, dilated))
        self.index_rows.append((row, name))
        self.prompt_rows.append([row, name, *(f"{v:.1f}" for v in first_box),
                                 *(f"{v:.1f}" for v in box)])
        add_image(self.digest, name, image)


def overlay_view(image: np.ndarray, raw: np.ndarray, dilated: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8: the gray image with the boundary of the lung mask and of each m<r>."""
    thickness = max(1, scale_radius(OVERLAY_THICKNESS, image.shape))
    rgb = np.repeat(image[..., None], 3, axis=2)
    colours = [LUNG_COLOUR, *(MASK_COLOURS[i % len(MASK_COLOURS)] for i in range(len(dilated)))]
    for mask, colour in reversed(list(zip([raw, *dilated], colours))):  # the lung's drawn last
        rgb[boundary(mask, thickness)] = colour
    return rgb


def readable_batches(files: dict[str, Path], size: int,
                     skipped: list[dict]) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Batches of (file name, (H, W) uint8 image) of `files`, read in order; a file that cannot
    be read is named on stderr and appended to `skipped` ({image, reason})."""
    batch = []
    for path in files.values():
        try:
            image = read_gray(path)
        except (ValueError, OSError) as error:
            reason = str(error).removeprefix(f"{path}: ")
            skipped.append({"image": path.name, "reason": reason})
            print(f"predict: skipped {path}: {reason}", file=sys.stderr, flush=True)
            continue
        batch.append((path.name, image))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def segment_folder(args, resolved: Resolved, device, started: float, precision: str) -> None:
    """Segment every image of the folder args.images into the folder args.out (layout above)."""
    out = Path(args.out)
    if args.shard is not None:
        raise ValueError("--shard needs a .npy image stack and a .npy --out")
    if args.index is not None:
        raise ValueError("--index names the rows of a .npy stack; a folder needs none")
    check_radii(args.dilate or [])
    files = image_files(Path(args.images))
    refuse_overlap(out, args.images, None)
    prior = Prior.load(args.prior)
    model = load_model(args.checkpoint, args.config, args.seed).to(device)
    run = FolderRun(args, resolved, out)
    begin_run(out, [*FIXED_OUTPUTS, *previous_predict_outputs(out)], done=PREDICT)
    write_predict_started(out, [*(f"{folder}/{stem}.png" for stem in files
                                  for folder in run.folders()), *FIXED_OUTPUTS])
    for name in run.folders():      # a sub-folder linked to the user's own files is refused
        claim_folder(out / name)

    progress = Progress(len(files), "predict", "files")
    for batch in readable_batches(files, args.batch_size, run.skipped):
        images = [image for _, image in batch]
        embeddings = encode(model, images, device, args.batch_size, precision=precision)
        first = [prior.box_for(image) for image in images]
        _, probs, boxes = segment(model, embeddings, images, device, args.prompt, prior,
                                  refine=args.refine, threshold=args.threshold,
                                  batch_size=args.batch_size, precision=precision)
        for (name, image), prob, first_box, box in zip(batch, probs, first, boxes):
            raw = clean_mask(prob.numpy() >= args.threshold, args.fill_holes, args.keep_largest)
            run.add(name, image, raw, first_box, box)
        progress.update(len(run.index_rows) + len(run.skipped))
    finish(run, files, resolved, device, started, precision)


def finish(run: FolderRun, files: dict[str, Path], resolved: Resolved, device,
           started: float, precision: str) -> None:
    """Refuse a run without a usable mask, warn, write the tables and, last, done_predict.json."""
    args, out, n = run.args, run.out, len(run.index_rows)
    if n == 0:
        raise ValueError(f"{args.images}: none of the {len(files)} image files could be read "
                         "(each is named above); the run is not marked finished")
    warn_degenerate(run.degenerate, n)
    check_empty(run.empty, n, args, "their m<r> masks are the whole image")
    write_csv(out / "qc.csv", run.qc_columns, run.qc_rows)
    write_csv(out / "index.csv", ["row", "image"], run.index_rows)
    write_csv(out / "prompts.csv", PROMPT_COLUMNS, run.prompt_rows)
    write_file_hashes(out, run.hashes)
    seconds = time.time() - started
    flagged = sum(row[4] != "ok" for row in run.qc_rows)
    print(f"predict: {n} images in {seconds:.1f} s ({n / seconds:.2f}/s), threshold "
          f"{args.threshold:.2f}, {len(run.skipped)} skipped, {len(run.empty)} empty mask(s), "
          f"{flagged} flagged in qc.csv -> {out}/{{{','.join(run.folders())}}}")
    facts = {"checkpoint_id": checkpoint_id(args.checkpoint, args.seed),
             "extent": checkpoint_extent(args.checkpoint),
             "threshold": args.threshold, "prior_sha256": file_sha256(args.prior),
             "images_sha256": run.digest.hexdigest(),
             "index_sha256": index_rows_sha256(run.index_rows), "total_images": n,
             "images": n, "empty": len(run.empty), "degenerate": run.degenerate,
             "skipped": run.skipped, "erode": run.erode, "dilate": run.dilate,
             "flagged": flagged, "settings": resolved.sources, "precision": precision,
             **content_facts(out, [FILE_HASHES])}
    write_run_json(out, args, name="run_predict.json", seconds=seconds, device=str(device),
                   threshold=args.threshold, images=n, skipped=len(run.skipped),
                   precision=precision)
    write_done(out, args, [*run.outputs, *FIXED_OUTPUTS], done=PREDICT, **facts)
    (out / PREDICT_STARTED).unlink()
